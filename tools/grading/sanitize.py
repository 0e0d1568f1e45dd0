#!/usr/bin/env python3
"""Run a test binary's GPU tests under NVIDIA compute-sanitizer.

    sanitize.py --tool memcheck  BINARY [--filter 'cuda_part/*']      must be clean
    sanitize.py --tool racecheck BINARY --expect-errors                must report a hazard

Exit 0 when the result is as expected, 1 otherwise, 77 (skip) when there is no GPU or no
compute-sanitizer. Criterion runs each test in a child process, so the sanitizer follows all
processes (--target-processes all).

The run stops at the first report (a race, an invalid access, an API error): one is enough for the
verdict, and a racy kernel can print hazards for many minutes (racecheck reports every one). It also
stops after --timeout seconds, which counts as a failure either way. Stopping kills the whole process
group (compute-sanitizer and the test processes it follows), so nothing is left running on the GPU.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

SKIP = 77
# a line of compute-sanitizer that reports a problem: an invalid access, an API error, a race (racecheck
# prints "Error: Race reported ..." or "Warning: Race reported ..."), or a summary that counts any (the
# banner, summaries of 0 and the "at ..." lines of a backtrace do not match)
REPORT = re.compile(r"^=+ +(Invalid |Program hit |Error: |ERROR: |.*Race reported|Barrier error|Uninitialized )"
                    r"|(ERROR|RACECHECK) SUMMARY: [1-9]")


def run_until_report(cmd, timeout):
    """Run cmd in its own process group and stop it (the whole group) at the first REPORT line or
    after timeout seconds. Returns (output, exit code or None when stopped, first report line or None,
    timed out)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    lines, first = [], []
    done = threading.Event()  # set at the first report, or when the output ends

    def read():
        for line in proc.stdout:
            lines.append(line)
            if not first and REPORT.search(line):
                first.append(line.rstrip("\n"))
                done.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    in_time = done.wait(timeout)
    stopped = bool(first) or not in_time
    if stopped:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    reader.join(5)
    return "".join(lines), (None if stopped else proc.returncode), (first[0] if first else None), not in_time


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
    ap.add_argument("--timeout", type=float, default=600, help="seconds before the run counts as failed")
    ap.add_argument("--skip-kernel", action="append", default=[], metavar="SUBSTRING",
                    help="run the kernels whose name contains SUBSTRING unchecked (the maintainers' runs over "
                         "the reference solutions skip the harness's fp32 reference kernel; never use it on a "
                         "learner's code, which could name its kernel to match)")
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
    for sub in args.skip_kernel:
        cmd[3:3] = ["--kernel-name-exclude", f"kns={sub}"]
    out, code, first, timed_out = run_until_report(cmd, args.timeout)
    # every child process prints its own summary; add up the errors they report
    errors = sum(int(n) for n in re.findall(r"ERROR SUMMARY: (\d+) error", out))
    hazards = sum(int(n) for n in re.findall(r"RACECHECK SUMMARY: (\d+) hazard", out))
    found = errors + hazards
    tests_failed = re.search(r"Failing: ([1-9]\d*)", out) is not None
    name = os.path.basename(args.binary)
    if timed_out:
        print(out[-3000:])
        print(f"sanitize: {args.tool} on {name} did not finish within {args.timeout:.0f} s (stopped)")
        return 1
    if args.expect_errors:
        if first or found or code == 3:
            print(f"sanitize: {args.tool} caught {name} as expected: {first or f'{errors} errors, {hazards} hazards'}")
            return 0
        print(out[-3000:])
        print(f"sanitize: {args.tool} found nothing wrong in the known-wrong {name}")
        return 1
    if first:
        print(out[-6000:])
        print(f"sanitize: {args.tool} on {name} reported a problem (stopped at the first report): {first}")
        return 1
    summaries = len(re.findall(r"(ERROR|RACECHECK) SUMMARY", out))
    tested = sum(int(n) for n in re.findall(r"Synthesis: Tested: (\d+)", out))
    if found or code != 0 or tests_failed:
        print(out[-6000:])
        print(f"sanitize: {args.tool} on {name}: {errors} errors, {hazards} hazards, exit {code}")
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
