#!/usr/bin/env python3
"""window_model.py - a small event model of lesson 09's window kernel: what its ring can deliver.

    python3 tools/bench/window_model.py [--latency US] [--compute US] [--stages R] [--windows K]

One block: 8 warps, one position each, 16 blocks per list (the three forced ones, 0, cur and cur - 1,
and chance picks among the t / 64 + 1 candidates, as the benchmark's random lists), the window's
union of blocks sent through a ring of R stages in ascending order (union tile u into stage u % R,
as the kernel does). A tile lands `latency` µs after it is issued; a warp computes each of its tiles
in `compute` µs, in union order, and a stage is issued again when every warp that chose its tile has
computed it. Two cases:

  separate  one window per block, the ring filling at the start and draining at the end (the kernel
            as it is; its prologue, about 3.7 µs per window on the H200, comes on top)
  streamed  a persistent block: the windows' unions one after the other through the same ring, each
            warp going on to its position of the next window as soon as it is done

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


def run_ring(windows, stages, latency, compute):
    """Time until every warp is done, the windows' unions streamed through one ring in order."""
    seqs = [[] for _ in windows[0]]
    users = []
    for lists in windows:
        union = sorted(set().union(*lists))
        index = {blk: len(users) + k for k, blk in enumerate(union)}
        users += [0] * len(union)
        for w, lst in enumerate(lists):
            for blk in lst:
                seqs[w].append(index[blk])
                users[index[blk]] += 1
    total = len(users)
    landed = {u: latency for u in range(min(stages, total))}
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
            landed[u + stages] = done + latency  # the last user refills the stage
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
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    # a window's positions see t / 64 + 1 blocks, t uniform over the sequence
    windows = [window_lists(rng.randrange(1, 1025), rng) for _ in range(a.windows)]
    separate = sum(run_ring([w], a.stages, a.latency, a.compute) for w in windows) / len(windows)
    streamed = run_ring(windows, a.stages, a.latency, a.compute) / len(windows)
    for name, us in (("separate (+3.7 µs prologue)", separate + 3.7), ("streamed", streamed)):
        print("%-28s %5.1f µs per window, %5.2f ms at N = 65536" % (name, us, us * WINDOWS_AT_64K / SMS / 1e3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
