#!/usr/bin/env python3
"""cluster_protocol.py - the bookkeeping and ring protocol of tools/bench/window_cluster.cuh, transcribed
and run under random orders of events, to check them before a GPU runs them.

    python3 tools/bench/cluster_protocol.py [--cases 300] [--seed 1] [--cluster 2|4] [--shared-stages S]

The kernel in question serves C neighbouring windows of 8 positions (C = 2 or 4) with the C blocks of a
cluster: a tile that two or more of the windows chose is read once and multicast into the rings of
those that chose it. Its bookkeeping (each union block's mask of the unions that hold it, the cluster's
number gidx of a shared block, the private numbers p, each shared entry's next one in its stage and
the parity of its turn there) is written here step by step as the kernel's threads compute it, and the
blocks' warps, copies and releases are stepped in a random order. The waits are the kernel's: a warp
passes when its stage's number is its entry's and the barrier's phase of its parity has completed.
Each case checks:

  - every block gives a shared block the same gidx and the same mask, and the mask is exactly the
    unions that hold it (a multicast writes one stage and one barrier offset in each block of it);
  - every warp finds, when its wait returns, the block it expects in that stage (no copy overwrote a
    stage that a user still reads, and no wait returned on an earlier or later phase);
  - a copy lands only in a stage its block armed for it, and each shared block is issued exactly once;
  - every warp finishes: no order of events leaves the blocks waiting on each other (deadlock).

Lists as the benchmark draws them (the three forced blocks and chance picks), with short lists early
in the sequence, padded lists, repeated entries and windows past the end (no positions) mixed in. A
model of the protocol, not of the hardware: it sees orders of events, not their timing.
"""
import argparse
import random
import sys

RING = 7
KEYS = 128  # sort keys per window: 8 lists of 16
# known-wrong versions of the protocol, for the tool tests (tools/maintenance/test_tools.py): each must fail a check
#   first_issues   the first block to release a shared block issues its copy (not the one completing the mask)
#   early_refill   a stage is refilled when one user is left, not none
#   own_order      the last block numbers the shared blocks in descending order (the rings disagree)
#   no_parity      the parity of a shared entry's turn is left at 0
#   lone_mask      a shared block's mask is the block's own bit and the lowest other holder's only
MUTATION = None
WARPS = 8
N_SEL = 16


def draw_window(rng, candidates, active_warps=WARPS):
    """The lists of one window (a list per warp; [] for a warp past the end)."""
    lists = []
    for w in range(WARPS):
        if w >= active_warps:
            lists.append([])
            continue
        c = max(1, candidates + rng.randrange(-1, 2))
        if c <= N_SEL:
            lst = list(range(c))
        else:
            chosen = {0, c - 1, c - 2}
            while len(chosen) < N_SEL:
                chosen.add(rng.randrange(c))
            lst = sorted(chosen)
        r = rng.random()
        if r < 0.05 and len(lst) > 3:
            lst = lst[: rng.randrange(3, len(lst))]  # padded with -1 (the rest of the entries)
        elif r < 0.10 and len(lst) > 1:
            lst[rng.randrange(1, len(lst))] = lst[0]  # a repeated entry: counted twice, as the header says
            lst.sort()
        lists.append(lst)
    return lists


def build_union(lists):
    """The committed kernel's union: blk (ascending), users per union block, each warp's sequence of
    union indices (ascending, a repeated entry twice)."""
    entries = sorted((j, w * N_SEL + e) for w, lst in enumerate(lists) for e, j in enumerate(lst))
    blk, users = [], []
    uid_of = {}
    for j, slot in entries:
        if not blk or blk[-1] != j:
            blk.append(j)
            users.append(0)
        users[-1] += 1
        uid_of[slot] = len(blk) - 1
    seqs = [sorted(uid_of[w * N_SEL + e] for e in range(len(lst))) for w, lst in enumerate(lists)]
    return blk, users, seqs


def lower_bound(blk, n, want):
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if blk[mid] < want:
            lo = mid + 1
        else:
            hi = mid
    return lo


def match(unions, rank, k_sh, k_priv):
    """Steps (1)-(5) of the kernel's match, for block `rank`: code[u] = ("s", gidx, mask, parity) or
    ("p", p), priv_u, nxt, first_of, np."""
    C = len(unions)
    nus = [len(u) for u in unions]
    allblk = [u + [None] * (KEYS - len(u)) for u in unions]
    # (2) every union's blocks: the mask of unions holding them, canonical = shared and first to hold
    flag = [[0] * KEYS for _ in range(C)]
    for c in range(C):
        for x in range(nus[c]):
            want, m = allblk[c][x], 0
            for c2 in range(C):
                lo = x if c2 == c else lower_bound(allblk[c2], nus[c2], want)
                if lo < nus[c2] and allblk[c2][lo] == want:
                    m |= 1 << c2
            if MUTATION == "lone_mask" and bin(m).count("1") > 2:
                low_other = min(c2 for c2 in range(C) if m >> c2 & 1 and c2 != c)
                m = 1 << c | 1 << low_other
            canonical = bin(m).count("1") >= 2 and m & ((1 << c) - 1) == 0
            flag[c][x] = m | (0x80 if canonical else 0)
    # (3) pc[c][x]: canonical shared blocks of union c before x
    pc = []
    for c in range(C):
        run, row = 0, []
        for x in range(KEYS):
            row.append(run)
            run += 1 if flag[c][x] & 0x80 else 0
        row.append(run)
        pc.append(row)
    # (4) this union's entries
    code, priv_u, shared_flags, gidxs, masks = [], {}, [], [], []
    for x in range(nus[rank]):
        msk = flag[rank][x] & 15
        shd = bin(msk).count("1") >= 2
        gidx = 0
        if shd:
            want = allblk[rank][x]
            for c2 in range(C):
                gidx += pc[c2][lower_bound(allblk[c2], nus[c2], want)]
        shared_flags.append(shd)
        gidxs.append(gidx)
        masks.append(msk)
    if MUTATION == "own_order" and rank == C - 1:
        total = sum(pc[c][KEYS] for c in range(C))
        gidxs = [total - 1 - g if shd else g for g, shd in zip(gidxs, shared_flags)]
    np_ = 0
    for x in range(nus[rank]):
        s = sum(shared_flags[:x])  # the ballot prefix and the counts of the warps before
        p = x - s
        if shared_flags[x]:
            code.append(["s", gidxs[x], masks[x], 0])
        else:
            code.append(["p", p])
            priv_u[p] = x
            np_ = p + 1
    # (5) per stage: next shared entry of the stage, the stage's first, the parity of each turn
    nxt, first_of = {}, {}
    for st in range(k_sh):
        mine = [u for u in range(nus[rank]) if code[u][0] == "s" and code[u][1] % k_sh == st]
        for turn, u in enumerate(mine):
            if turn & 1 and MUTATION != "no_parity":
                code[u][3] = 1
            nxt[u] = mine[turn + 1] if turn + 1 < len(mine) else None
        if mine:
            first_of[st] = mine[0]
    w_parity, w_nxt, w_first = step5_warp(code, k_sh)  # the kernel's ballots must give the same
    shared_u = [u for u in range(len(code)) if code[u][0] == "s"]
    if (w_first != first_of or {u: w_nxt.get(u, "unset") for u in shared_u} != {u: nxt[u] for u in shared_u}
            or (MUTATION != "no_parity" and any(w_parity[u] != code[u][3] for u in shared_u))):
        raise Fail("step (5) by ballots differs from the direct walk (block %d)" % rank)
    return code, priv_u, nxt, first_of, np_


def step5_warp(code, k_sh):
    """Step (5) as warp 0 executes it: 32 entries at a time, a ballot of the stage's shared entries;
    each lane links its entry to the next set bit above it, lane 0 links the chunk's first to the last
    of the chunk before (or records it as the stage's first) and ends the chain. Returns (parity, nxt,
    first_of) as step (5) leaves them."""
    nu = len(code)
    parity, nxt, first_of = {}, {}, {}
    for st in range(k_sh):
        run, last = 0, -1
        for x0 in range(0, nu, 32):
            mine = [x0 + lane < nu and code[x0 + lane][0] == "s" and code[x0 + lane][1] % k_sh == st
                    for lane in range(32)]
            bal = sum(1 << lane for lane in range(32) if mine[lane])
            for lane in range(32):
                if not mine[lane]:
                    continue
                u = x0 + lane
                below = bin(bal & ((1 << lane) - 1)).count("1")
                parity[u] = (run + below) & 1
                above = bal & ~((2 << lane) - 1) & 0xffffffff
                if above:
                    nxt[u] = x0 + (above & -above).bit_length() - 1
            if bal:
                if last >= 0:
                    nxt[last] = x0 + (bal & -bal).bit_length() - 1
                else:
                    first_of[st] = x0 + (bal & -bal).bit_length() - 1
                last = x0 + bal.bit_length() - 1
                run += bin(bal).count("1")
        if last >= 0:
            nxt[last] = None
    return parity, nxt, first_of


class Stage:
    def __init__(self):
        self.completed = 0   # phases completed
        self.armed = False   # the expect-tx arrival of the current phase is in
        self.landed = False  # the copy's bytes of the current phase are in
        self.content = None  # the block whose bytes sit in the stage
        self.slot = -1       # the number (p or gidx) it holds or awaits
        self.left = 0
        self.in_use = 0      # warps between their barrier wait and their release

    def maybe_complete(self):
        if self.armed and self.landed:
            self.completed += 1
            self.armed = self.landed = False


class Fail(Exception):
    pass


def run_case(rng, windows, shared_stages):
    C = len(windows)
    k_sh, k_priv = shared_stages, RING - shared_stages
    blocks = []
    for r in range(C):
        blk, users, seqs = build_union(windows[r])
        blocks.append({"blk": blk, "users": users, "seqs": seqs})
    unions = [b["blk"] for b in blocks]
    holders = {}
    for r in range(C):
        for j in unions[r]:
            holders[j] = holders.get(j, 0) | 1 << r
    gidx_block = {}
    for r in range(C):
        me = blocks[r]
        me["code"], me["priv_u"], me["nxt"], me["first_of"], me["np"] = match(unions, r, k_sh, k_priv)
        me["stages"] = [Stage() for _ in range(RING)]
        for u, c in enumerate(me["code"]):
            j = me["blk"][u]
            if c[0] == "s":
                if c[2] != holders[j]:
                    raise Fail("block %d gives block %d the mask %s, held by %s" % (r, j, bin(c[2]), bin(holders[j])))
                if gidx_block.setdefault(c[1], j) != j:
                    raise Fail("gidx %d is block %d in one block, %d in another" % (c[1], gidx_block[c[1]], j))
            elif bin(holders[j]).count("1") != 1:
                raise Fail("block %d takes block %d as private, held by %s" % (r, j, bin(holders[j])))
    turns = {}         # gidx -> bits set (block 0's table)
    in_flight = []     # copies: (destination block, stage, number, content)
    issued_shared = set()

    def arm(r, st, u, idx):
        stg = blocks[r]["stages"][st]
        if stg.left != 0 or stg.in_use:
            raise Fail("block %d re-arms stage %d while %d users remain" % (r, st, stg.left + stg.in_use))
        stg.left = blocks[r]["users"][u]
        stg.slot = idx
        stg.armed = True

    def issue_private(r, p):
        st, u = p % k_priv, blocks[r]["priv_u"][p]
        arm(r, st, u, p)
        in_flight.append((r, st, p, blocks[r]["blk"][u]))

    def issue_shared(r, u):
        _, gidx, mask, _ = blocks[r]["code"][u]
        st = k_priv + gidx % k_sh
        arm(r, st, u, gidx)
        old = turns.get(gidx, 0)
        turns[gidx] = old | 1 << r
        go = old == 0 if MUTATION == "first_issues" else (old | 1 << r) == mask
        if go:
            if gidx in issued_shared:
                raise Fail("shared block %d issued twice" % gidx)
            issued_shared.add(gidx)
            for dst in range(C):
                if mask >> dst & 1:
                    in_flight.append((dst, st, gidx, blocks[r]["blk"][u]))

    # the prologue of each block (thread 0), the blocks in a random order
    for r in rng.sample(range(C), C):
        for p in range(min(blocks[r]["np"], k_priv)):
            issue_private(r, p)
        for st in range(k_sh):
            if st in blocks[r]["first_of"]:
                issue_shared(r, blocks[r]["first_of"][st])

    warps = [{"r": r, "w": w, "k": 0, "state": "wait"} for r in range(C) for w in range(WARPS) if blocks[r]["seqs"][w]]

    def where(r, u):
        c = blocks[r]["code"][u]
        if c[0] == "s":
            return True, c[1], k_priv + c[1] % k_sh, c[3]
        return False, c[1], c[1] % k_priv, (c[1] // k_priv) & 1

    steps = 0
    while True:
        steps += 1
        if steps > 10 ** 6:
            raise Fail("no end after 10^6 steps")
        actions = [("land", ci) for ci in range(len(in_flight))]
        for wi, wp in enumerate(warps):
            if wp["state"] == "done":
                continue
            r = wp["r"]
            u = blocks[r]["seqs"][wp["w"]][wp["k"]]
            shd, idx, st, parity = where(r, u)
            stg = blocks[r]["stages"][st]
            if wp["state"] == "wait":
                # lane 0 polls slot == idx; mbarrier.try_wait.parity returns once the phase of that
                # parity has completed, i.e. the barrier's current phase has the other parity
                if stg.slot == idx and stg.completed % 2 != parity:
                    actions.append(("pass", wi))
            else:
                actions.append(("release", wi))
        if not actions:
            if all(wp["state"] == "done" for wp in warps):
                break
            stuck = [(wp["r"], wp["w"], wp["k"]) for wp in warps if wp["state"] != "done"]
            raise Fail("deadlock: warps (block, warp, entry) %s wait, nothing in flight" % stuck[:6])
        kind, x = rng.choice(actions)
        if kind == "land":
            r, st, idx, content = in_flight.pop(x)
            stg = blocks[r]["stages"][st]
            if not stg.armed or stg.slot != idx:
                raise Fail("a copy for number %d lands in block %d stage %d, armed %s for %d"
                           % (idx, r, st, stg.armed, stg.slot))
            if stg.in_use:
                raise Fail("a copy lands in block %d stage %d while %d warps read it" % (r, st, stg.in_use))
            stg.content, stg.landed = content, True
            stg.maybe_complete()
            continue
        wp = warps[x]
        r = wp["r"]
        u = blocks[r]["seqs"][wp["w"]][wp["k"]]
        shd, idx, st, parity = where(r, u)
        stg = blocks[r]["stages"][st]
        if kind == "pass":
            if stg.content != blocks[r]["blk"][u] or stg.armed:
                raise Fail("block %d warp %d expects block %d in stage %d, finds %s (armed: %s)"
                           % (r, wp["w"], blocks[r]["blk"][u], st, stg.content, stg.armed))
            stg.in_use += 1
            wp["state"] = "computing"
            continue
        stg.in_use -= 1
        stg.left -= 1
        if stg.left == (1 if MUTATION == "early_refill" else 0):  # the last use in this block: refill
            if shd and blocks[r]["nxt"][u] is not None:
                issue_shared(r, blocks[r]["nxt"][u])
            elif not shd and idx + k_priv < blocks[r]["np"]:
                issue_private(r, idx + k_priv)
        wp["k"] += 1
        wp["state"] = "done" if wp["k"] == len(blocks[r]["seqs"][wp["w"]]) else "wait"
    if len(issued_shared) != len(gidx_block):
        raise Fail("%d of %d shared blocks issued" % (len(issued_shared), len(gidx_block)))
    return len(holders), sum(len(u) for u in unions)


def run(cases, seed, shared_stages, cluster=2, out=None):
    rng = random.Random(seed)
    distinct = total = 0
    for case in range(cases):
        candidates = rng.choice([1, 2, 3, 5, 16, 17, 40, 200, 1024])
        windows = [draw_window(rng, candidates) for _ in range(cluster)]
        active = WARPS
        if rng.random() < 0.2:  # the last windows of the sequence: fewer positions, or none
            active = rng.randrange(0, WARPS)
            windows[-1] = draw_window(rng, candidates, active)
        rng.shuffle(windows)
        try:
            nd, nu = run_case(rng, windows, shared_stages)
        except Fail as e:
            raise Fail("case %d (seed %d, %d windows, %d candidates, %d active warps at the end): %s"
                       % (case, seed, cluster, candidates, active, e))
        distinct += nd
        total += nu
    if out:
        print("%d cases, clusters of %d, %d shared stages: all checks hold; L2 serves %.2f of the tiles the "
              "blocks receive (on these draws)" % (cases, cluster, shared_stages, distinct / max(total, 1)), file=out)
    return distinct, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cluster", type=int, choices=(2, 4), default=2)
    ap.add_argument("--shared-stages", type=int, default=None, help="default: 2 with clusters of 2, 4 with 4")
    a = ap.parse_args()
    stages = a.shared_stages if a.shared_stages is not None else (2 if a.cluster == 2 else 4)
    if not 1 <= stages < RING:
        ap.error("--shared-stages: 1 .. %d" % (RING - 1))
    try:
        run(a.cases, a.seed, stages, a.cluster, sys.stdout)
    except Fail as e:
        print("cluster_protocol.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
