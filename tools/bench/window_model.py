#!/usr/bin/env python3
"""window_model.py - a small event model of lesson 09's window kernel: what its ring can deliver.

    python3 tools/bench/window_model.py [--latency US] [--compute US] [--stages R] [--windows W]
                                        [--order ascending|rank] [--per-block K] [--positions-per-warp P]
                                        [--parts 1|2|4]

One block: 8 warps, one position each, 16 blocks per list (the three forced ones, 0, cur and cur - 1,
and chance picks among the t / 64 + 1 candidates, as the benchmark's random lists), the window's
union of blocks sent through a ring of R stages in ascending order (union tile u into stage u % R,
as the kernel does). A tile lands `latency` µs after it is issued; a warp computes each of its tiles
in `compute` µs, in union order, and a stage is issued again when every warp that chose its tile has
computed it. Three cases:

  separate  one window per block, the ring filling at the start and draining at the end (the kernel
            as it is; its prologue, about 3.7 µs per window on the H200, comes on top)
  K windows K windows per block (--per-block, the edit `stream` of window_variants.py): their unions
            one after the other through the ring, the prologue (taken as 1 + 0.1 (K - 1) times as
            long) paid once for the K
  streamed  a persistent block: the windows' unions one after the other through the same ring, each
            warp going on to its position of the next window as soon as it is done

--rate caps what L2 delivers: without it the model has no floor for the bytes it moves, and it
gives 11.98 ms for the kernel as it is; with --rate 10.8 (a multiprocessor's tiles landing at least
0.40 µs apart) it gives 12.46, against the 12.5 measured, and --compute 0 then gives the ring's own
floor (the variant n1a of window_profile.sh measures it).

--order rank sends a window's union in the order of each block's smallest list rank (the lowest
entry index among the lists that chose it; ties by block) instead of ascending (ATTN_WIN_ORDER=1 of
the edit `stream`); a warp walks its blocks in the ring's order either way.

--positions-per-warp 2 models ATTN_WIN_JOINT: a block of 8 warps serves 16 positions (warp w those of
lists w and w + 8), one union of all 16 lists, a warp walking both positions' tiles merged in ring
order and computing each of its entries (a tile both its positions chose costs it twice). The union of
16 lists is smaller per position (9.9 tiles at 64k against 11.2 for 8), and the prologue (a sort of
256 keys: 36 steps against 28) is taken as 1.2 times as long per block.

--parts 2 or 4 models the edit `split` (ATTN_WIN_SPLIT): each tile sent as 2 parts (K, V) or 4 (its
8 KB boxes), each in a stage of its own (the ring has parts x stages of them), a warp computing each
part in compute / parts µs and releasing it before it waits for the next.

It prints µs per window and the time at N = 65536 this implies on 132 multiprocessors (32768 windows
of the bar's shape; the kernel's measured 12.5 ms is 50 µs per window). Calibrated on the cycle
counters of docs/NSA_PERFORMANCE.md change 11 (compute about 1.0 µs per tile, data waits small):
latency 2.0 µs, compute 1.0 µs gives 46 + 3.7 µs, against 51.7 measured. A model: it leaves out the
two warps that share a scheduler, the copy engine's queue and L2's load, so use it to rank ideas, not
to predict milliseconds.
"""
import argparse
import random

WINDOWS_AT_64K = 65536 * 4 // 8  # (positions x kv groups) / positions per window
SMS = 132


def window_lists(candidates, rng, warps=8, n=16):
    """The 8 lists of one window whose positions see `candidates` blocks."""
    lists = []
    for _ in range(warps):
        if candidates <= n:
            lists.append(list(range(candidates)))
            continue
        chosen = {0, candidates - 1, candidates - 2}
        while len(chosen) < n:
            chosen.add(rng.randrange(candidates))
        lists.append(sorted(chosen))
    return lists


def union_order(lists, order="ascending"):
    """A window's union of blocks in the order the ring takes them."""
    if order == "ascending":
        return sorted(set().union(*lists))
    if order != "rank":
        raise ValueError("order: ascending or rank, not %r" % order)
    rank = {}
    for lst in lists:
        for e, blk in enumerate(lst):
            rank[blk] = min(rank.get(blk, e), e)
    return sorted(rank, key=lambda blk: (rank[blk], blk))


def run_ring(windows, stages, latency, compute, order="ascending", gap=0.0, ppw=1):
    """Time until every warp is done, the windows' unions streamed through one ring in order. With
    gap > 0 two tiles land at least gap µs apart (the multiprocessor's share of L2's rate). With ppw
    positions per warp, warp w serves lists w, w + W, ... of each window (W = lists / ppw warps)."""
    warps = len(windows[0]) // ppw
    seqs = [[] for _ in range(warps)]
    users = []
    for lists in windows:
        union = union_order(lists, order)
        index = {blk: len(users) + k for k, blk in enumerate(union)}
        users += [0] * len(union)
        for w in range(warps):  # a warp walks its entries in ring order
            for u in sorted(index[blk] for lst in lists[w::warps] for blk in lst):
                seqs[w].append(u)
                users[u] += 1
    total = len(users)
    landed = {u: latency + u * gap for u in range(min(stages, total))}
    last = max(landed.values(), default=0.0)
    pos = [0] * len(seqs)
    free_at = [0.0] * len(seqs)
    pending = {w for w in range(len(seqs)) if seqs[w]}
    end = 0.0
    while pending:
        start, w, u = min((max(free_at[w], landed[seqs[w][pos[w]]]), w, seqs[w][pos[w]])
                          for w in pending if seqs[w][pos[w]] in landed)
        done = start + compute
        free_at[w] = done
        users[u] -= 1
        if users[u] == 0 and u + stages < total:
            last = max(done + latency, last + gap)  # the last user refills the stage
            landed[u + stages] = last
        pos[w] += 1
        if pos[w] == len(seqs[w]):
            pending.discard(w)
            end = max(end, done)
    return end


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--latency", type=float, default=2.0, help="µs from issue to landing (default 2.0)")
    ap.add_argument("--compute", type=float, default=1.0, help="µs of one warp per tile (default 1.0)")
    ap.add_argument("--stages", type=int, default=7, help="ring stages (default 7)")
    ap.add_argument("--windows", type=int, default=200, help="windows drawn (default 200)")
    ap.add_argument("--order", choices=("ascending", "rank"), default="ascending",
                    help="the ring's order within a window (default ascending, as the kernel)")
    ap.add_argument("--per-block", type=int, default=2, help="K of the K-windows case (default 2)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="TB/s of tiles over the 132 multiprocessors; a multiprocessor's tiles then land at "
                         "least 32 KB / (rate / 132) apart (default 0: no limit; 10.8 gives the measured 12.5 ms)")
    ap.add_argument("--positions-per-warp", type=int, choices=(1, 2), default=1,
                    help="2: ATTN_WIN_JOINT, 16 positions per block in one union (default 1)")
    ap.add_argument("--parts", type=int, choices=(1, 2, 4), default=1,
                    help="stages per tile: 2 (K, V) or 4 (boxes) as the edit `split` (default 1)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if a.per_block < 1 or a.windows < a.per_block or a.stages < 1:
        ap.error("--per-block, --windows and --stages must be positive, --windows at least --per-block")
    rng = random.Random(a.seed)
    # a window's positions see t / 64 + 1 blocks, t uniform over the sequence
    ppw = a.positions_per_warp
    windows = [window_lists(rng.randrange(1, 1025), rng, warps=8 * ppw) for _ in range(a.windows)]
    parts = a.parts
    if parts > 1:  # block b becomes parts consecutive entries, each a stage of its own
        windows = [[sorted(parts * blk + x for blk in lst for x in range(parts)) for lst in lists] for lists in windows]
    gap = 32768 // parts * SMS / (a.rate * 1e12) * 1e6 if a.rate > 0 else 0.0  # µs between two parts' landing
    ring = lambda ws: run_ring(ws, a.stages * parts, a.latency, a.compute / parts, a.order, gap, ppw)
    prologue = 3.7 * (1.2 if ppw == 2 else 1.0)
    separate = sum(ring([w]) for w in windows) / len(windows)
    k = a.per_block
    groups = [windows[x:x + k] for x in range(0, len(windows) - len(windows) % k, k)]
    per_block = sum(ring(grp) for grp in groups) / (len(groups) * k) + prologue * (1 + 0.1 * (k - 1)) / k
    streamed = ring(windows) / len(windows)
    for name, us in (("separate (+%.1f µs prologue)" % prologue, separate + prologue),
                     ("%d windows per block" % k, per_block), ("streamed", streamed)):
        print("%-28s %5.1f µs per window, %5.2f ms at N = 65536" % (name, us, us * WINDOWS_AT_64K / ppw / SMS / 1e3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
