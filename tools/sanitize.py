#!/usr/bin/env python3
"""Run a test binary's GPU tests under NVIDIA compute-sanitizer.

    sanitize.py --tool memcheck  BINARY [--filter 'cuda_part/*']      must be clean
    sanitize.py --tool racecheck BINARY --expect-errors                must report a hazard

Exit 0 when the result is as expected, 1 otherwise, 77 (skip) when there is no GPU or no
compute-sanitizer. Criterion runs each test in a child process, so the sanitizer follows all
processes (--target-processes all).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

SKIP = 77


def find_sanitizer():
    exe = shutil.which("compute-sanitizer")
    if exe:
        return exe
    for base in (os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"):
        cand = os.path.join(base, "compute-sanitizer", "compute-sanitizer") if base else ""
        if cand and os.access(cand, os.X_OK):
            return cand
        cand = os.path.join(base, "bin", "compute-sanitizer") if base else ""
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", choices=["memcheck", "racecheck", "synccheck", "initcheck"], required=True)
    ap.add_argument("--filter", default="cuda_part/*")
    ap.add_argument("--expect-errors", action="store_true", help="the binary is known to be wrong")
    ap.add_argument("binary")
    args = ap.parse_args()
    if shutil.which("nvidia-smi") is None or subprocess.run(["nvidia-smi"], capture_output=True).returncode != 0:
        print("sanitize: no CUDA device: skipped")
        return SKIP
    exe = find_sanitizer()
    if not exe:
        print("sanitize: compute-sanitizer not found (CUDA toolkit's compute-sanitizer/): skipped")
        return SKIP
    cmd = [exe, "--tool", args.tool, "--target-processes", "all", "--error-exitcode", "3",
           args.binary, "--jobs", "1", "--filter", args.filter]
    if args.tool == "racecheck":
        cmd[3:3] = ["--racecheck-report", "hazard"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    # every child process prints its own summary; add up the errors they report
    errors = sum(int(n) for n in re.findall(r"ERROR SUMMARY: (\d+) error", out))
    hazards = sum(int(n) for n in re.findall(r"RACECHECK SUMMARY: (\d+) hazard", out))
    found = errors + hazards
    tests_failed = re.search(r"Failing: ([1-9]\d*)", out) is not None
    name = os.path.basename(args.binary)
    if args.expect_errors:
        if found or proc.returncode == 3:
            print(f"sanitize: {args.tool} caught {name} as expected ({errors} errors, {hazards} hazards)")
            return 0
        print(out[-3000:])
        print(f"sanitize: {args.tool} found nothing wrong in the known-wrong {name}")
        return 1
    summaries = len(re.findall(r"(ERROR|RACECHECK) SUMMARY", out))
    tested = sum(int(n) for n in re.findall(r"Synthesis: Tested: (\d+)", out))
    if found or proc.returncode != 0 or tests_failed:
        print(out[-6000:])
        print(f"sanitize: {args.tool} on {name}: {errors} errors, {hazards} hazards, exit {proc.returncode}")
        return 1
    if summaries == 0 or tested == 0:
        print(out[-3000:])
        print(f"sanitize: {args.tool} on {name}: the sanitizer did not report on any test process "
              f"({summaries} summaries, {tested} tests): nothing was checked")
        return 1
    print(f"sanitize: {args.tool} on {name} ({args.filter}): {tested} tests, {summaries} processes checked, clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
