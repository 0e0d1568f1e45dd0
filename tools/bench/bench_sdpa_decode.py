#!/usr/bin/env python3
"""Time PyTorch's scaled_dot_product_attention on lesson 11's decode shapes, for the course's decoding bar.

The bar of lesson 11 is "decoding at the bandwidth of the best vendor kernel", measured on the same GPU in the
same call. This script times torch.nn.functional.scaled_dot_product_attention with one backend at a time
(FLASH_ATTENTION: FlashAttention-2; CUDNN_ATTENTION: cuDNN) on the shapes of the benchmark's lesson 11 rows
(`build/bin/bench --lesson 11`: one query per sequence against a cache of L = 65536 tokens, B = 1 and 64,
H = 64, G = 4, D = 128, bf16), so that one GPU call can put them beside decode_dense:

  python3 tools/bench/bench_sdpa_decode.py --csv /tmp/sdpa_decode.csv
  build/bin/bench --lesson 11 --csv /tmp/decode.csv

Layout: the cache is stored as the course stores it, k, v [B, L, G, D] and q [B, 1, H, D], and handed to SDPA as
the transposed views [B, G, L, D] and [B, H, 1, D] (no copy). GQA: enable_gqa=True where the backend takes it;
a backend that refuses it gets K and V repeated to H heads once, outside the timing (then it reads H/G times the
bytes, and the row says "repeated"). The decode is not causal in SDPA's sense: SDPA's is_causal aligns the
mask top-left, which would give the one query key 0 alone; a decoding query sees every key of its cache.

Timing: CUDA events, the median of --reps runs, each after a 256 MB write that flushes the L2, after --warmup
untimed runs. GB/s counts the K and V bytes of the cache read once (2 * B * L * G * D * 2), as the benchmark
does; TFLOP/s counts 4 D per (query head, key). Each backend's output is checked once against an fp32 reference
(bf16 tolerance 2e-2 + 2e-2 |ref|). Exit 77 without a CUDA device.
"""
import argparse
import math
import sys


def time_ms(fn, warmup, reps):
    import torch
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        flush.zero_()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def reference(q, k, v, groups):
    """fp32 attention of each query over its whole cache: q [B, H, 1, D], k, v [B, G, L, D]."""
    import torch
    out = []
    for b in range(q.shape[0]):  # one sequence at a time: the fp32 scores of a batch of 64 would not fit
        kb = k[b].float().repeat_interleave(groups, dim=0)
        vb = v[b].float().repeat_interleave(groups, dim=0)
        s = torch.matmul(q[b].float(), kb.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        out.append(torch.matmul(torch.softmax(s, dim=-1), vb))
    return torch.stack(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--B", default="1,64", help="comma-separated batch sizes (default 1,64)")
    ap.add_argument("--L", default="65536", help="comma-separated cache lengths (default 65536)")
    ap.add_argument("--H", type=int, default=64)
    ap.add_argument("--G", type=int, default=4)
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--backends", default="flash,cudnn", help="flash, cudnn (default both)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-check", action="store_true", help="time only")
    ap.add_argument("--csv", help="append device,backend,gqa,B,L,H,G,D,ms,gbs,tflops,check rows")
    args = ap.parse_args()
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F
    if not torch.cuda.is_available():
        print("bench_sdpa_decode: no CUDA device", file=sys.stderr)
        return 77
    names = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    backends = [x.strip() for x in args.backends.split(",") if x.strip()]
    for name in backends:
        if name not in names:
            ap.error(f"unknown backend {name!r}: flash or cudnn")
    H, G, D = args.H, args.G, args.D
    if H % G:
        ap.error("H must be a multiple of G")
    dev = torch.cuda.get_device_name()
    print(f"{dev}; torch {torch.__version__}; cuDNN {torch.backends.cudnn.version()}")
    print(f"decode: one query per sequence, H={H} G={G} D={D}, bf16; median of {args.reps} runs after "
          f"{args.warmup} warm-up, L2 flushed before each")
    rows, failures = [], 0
    gen = torch.Generator(device="cuda")
    for L in [int(x) for x in args.L.split(",")]:
        for B in [int(x) for x in args.B.split(",")]:
            gen.manual_seed(args.seed)
            q_store = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16, generator=gen)
            k_store = torch.randn(B, L, G, D, device="cuda", dtype=torch.bfloat16, generator=gen)
            v_store = torch.randn(B, L, G, D, device="cuda", dtype=torch.bfloat16, generator=gen)
            q, k, v = q_store.transpose(1, 2), k_store.transpose(1, 2), v_store.transpose(1, 2)
            kv_bytes = 2.0 * B * L * G * D * 2
            flops = 4.0 * D * B * H * L
            ref = None if args.no_check else reference(q, k, v, H // G)
            for name in backends:
                gqa, kk, vv = "native", k, v
                def run(kk_, vv_, gqa_):
                    return F.scaled_dot_product_attention(q, kk_, vv_, is_causal=False, enable_gqa=gqa_)
                with sdpa_kernel(names[name]):
                    try:
                        out = run(k, v, True)
                        torch.cuda.synchronize()
                    except RuntimeError:
                        gqa = "repeated"  # the backend refuses GQA: K and V repeated to H heads, untimed
                        kk = k.repeat_interleave(H // G, dim=1)
                        vv = v.repeat_interleave(H // G, dim=1)
                        try:
                            out = run(kk, vv, False)
                            torch.cuda.synchronize()
                        except RuntimeError as e:
                            print(f"{name:6s} B={B:3d} L={L}: not available here ({str(e).splitlines()[0]})")
                            continue
                    check = "-"
                    if ref is not None:
                        bad = ((out.float() - ref).abs() > 2e-2 + 2e-2 * ref.abs()).sum().item()
                        check = "ok" if bad == 0 and torch.isfinite(out).all().item() else f"FAILED ({bad} elements)"
                        failures += check != "ok"
                    ms = time_ms(lambda: run(kk, vv, gqa == "native"), args.warmup, args.reps)
                gbs, tflops = kv_bytes / (ms * 1e-3) / 1e9, flops / (ms * 1e-3) / 1e12
                print(f"{name:6s} B={B:3d} L={L} ({gqa} GQA): {ms * 1e3:10.1f} us  {gbs:8.1f} GB/s of K/V  "
                      f"{tflops:6.2f} TFLOP/s  check {check}")
                rows.append((dev, name, gqa, B, L, H, G, D, ms, gbs, tflops, check))
            del q_store, k_store, v_store, q, k, v, ref
            torch.cuda.empty_cache()
    if args.csv:
        import csv
        import os
        new = not os.path.exists(args.csv)
        with open(args.csv, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["device", "backend", "gqa", "B", "L", "H", "G", "D", "ms", "gbs", "tflops", "check"])
            for r in rows:
                w.writerow([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], f"{r[8]:.6f}", f"{r[9]:.1f}",
                            f"{r[10]:.3f}", r[11]])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
