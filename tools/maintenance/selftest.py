#!/usr/bin/env python3
"""Test the tests: run a test binary built from stubs or from a known-wrong variant and check
that the tests reject it.

    selftest.py stubs BINARY                  every graded test (suites c_part, cuda_part, speed)
                                              must FAIL or be skipped; none may pass or crash;
                                              suite `errors` (argument checks, given code) may pass
    selftest.py wrong --suites S,.. BINARY    at least one test of the listed suites must fail
                                              (or crash); exit 77 (skip) if they were all skipped;
                                              only the listed suites run
    selftest.py cheat --lesson NN --loses P,.. --tree DIR --build-dir BUILD
                                              grade the lesson folder DIR/NN_name with tools/grading/grade.py
                                              (audit, runner isolation, checked timing, sanitizers):
                                              each listed part must lose points; exit 77 if a part
                                              could not be graded here (no GPU) and no defence fired

Exit 0 when the binary was rejected as it should be, 1 when the tests let it through, 77 when
nothing could be checked here (no GPU).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

GRADED = ("c_part", "cuda_part", "speed")
SKIP = 77


def run_tests(binary, suite=None):
    """Run the binary's tests (only those of `suite` when given) and return their results."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.json")
        cmd = [binary, "--jobs", "1", f"--json={out}"] + ([f"--filter={suite}/*"] if suite else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if not os.path.exists(out):
            print(proc.stdout, proc.stderr, sep="\n")
            sys.exit(f"selftest: {binary} wrote no JSON report (exit {proc.returncode})")
        with open(out) as f:
            report = json.load(f)
    tests = []
    for suite_report in report.get("test_suites", []):
        for t in suite_report.get("tests", []):
            tests.append((suite_report["name"], t["name"], t["status"], t.get("messages", [])))
    return proc, tests


def check_cheat(args):
    """Grade a cheat with the grader itself; every part in --loses must lose points."""
    grade = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "grading", "grade.py")
    name = os.path.basename(args.tree.rstrip("/"))
    with tempfile.TemporaryDirectory() as tmp:
        summary, results = os.path.join(tmp, "summary.json"), os.path.join(tmp, "results.json")
        extra = ["--audit-lint"] if args.audit == "lint" else []
        forbidden = [p.replace("{build}", os.path.abspath(args.build_dir)).replace("{tmp}", "/tmp")
                     for p in args.forbid.split(",") if p]
        for p in forbidden:
            if os.path.exists(p):
                os.remove(p)
        proc = subprocess.run([sys.executable, grade, "--tree-dir", args.tree, "--lesson", args.lesson,
                               "--build-dir", args.build_dir, "--summary-json", summary, "--results", results,
                               *extra],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(summary):
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            print(f"selftest: grading the cheat {name} failed (exit {proc.returncode})")
            return 1
        with open(summary) as f:
            parts = json.load(f)[args.lesson]
        reached = [p for p in forbidden if os.path.exists(p)]
        if reached:
            print(proc.stdout[-3000:])
            print(f"selftest: the cheat {name} created {', '.join(reached)}: the runner was not isolated")
            for p in reached:
                os.remove(p)
            return 1
    defended = ("refused", "does not compile", "sanitizer")
    caught, unchecked, missed = [], [], []
    for part in args.loses.split(","):
        info = parts.get(part, {})
        state = info.get("state")
        if state in defended or info.get("skip_note") in defended:
            caught.append(f"{part}: {state if state in defended else info.get('skip_note')}")
        elif state == "graded" and info.get("points", 0) < info.get("max", 0):
            caught.append(f"{part}: {info.get('points')} of {info.get('max')} points")
        elif state in ("skipped", "reported") or (state == "graded" and not info.get("max")):
            unchecked.append(part)
        else:
            missed.append(f"{part}: {state}, {info.get('points')} of {info.get('max')} points")
    if missed:
        print(proc.stdout[-4000:])
        print(f"selftest: the cheat {name} kept its points: " + "; ".join(missed))
        return 1
    if unchecked and not caught:
        print(f"selftest: the cheat {name} targets {', '.join(unchecked)}, which could not be graded here "
              f"(no GPU): nothing checked")
        return SKIP
    print(f"selftest: the cheat {name} lost its points: " + "; ".join(caught) +
          (f" ({', '.join(unchecked)} not graded here: no GPU)" if unchecked else ""))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["stubs", "wrong", "cheat"])
    ap.add_argument("binary", nargs="?")
    ap.add_argument("--suites", default="c_part,cuda_part")
    ap.add_argument("--lesson")
    ap.add_argument("--loses", default="")
    ap.add_argument("--tree")
    ap.add_argument("--build-dir")
    ap.add_argument("--audit", default="", help="cheats: 'lint' grades with the audit reported, not enforced")
    ap.add_argument("--forbid", default="", help="cheats: files ({build}/..., {tmp}/...) that must not exist "
                                                 "after grading")
    args = ap.parse_intermixed_args()
    if args.mode == "cheat":
        return check_cheat(args)
    if args.mode == "wrong":
        # Only the suites that must reject the variant run (one process each): a variant of the C part
        # does not spend GPU time on the CUDA and speed tests.
        tests = []
        for suite in args.suites.split(","):
            tests += run_tests(args.binary, suite)[1]
    else:
        _, tests = run_tests(args.binary)
    name = os.path.basename(args.binary)
    if not tests:
        print(f"selftest: {name} ran no test")
        return 1

    if args.mode == "stubs":
        bad = [(s, t, st) for s, t, st, _ in tests if s in GRADED and st not in ("FAILED", "SKIPPED")]
        failed = [(s, t) for s, t, st, _ in tests if s in GRADED and st == "FAILED"]
        for s, t, st in bad:
            print(f"selftest: stub test {s}/{t} was {st}, expected FAILED "
                  f"({'a stub must not crash' if st == 'ERRORED' else 'the test accepts an empty stub'})")
        if bad:
            return 1
        if not failed:
            print(f"selftest: no graded test of {name} ran (all skipped)")
            return SKIP
        skipped = sum(1 for s, _, st, _ in tests if s in GRADED and st == "SKIPPED")
        print(f"selftest: stubs rejected as expected: {len(failed)} graded tests failed, {skipped} skipped, "
              f"none passed or crashed")
        return 0

    suites = set(args.suites.split(","))
    mine = [(s, t, st) for s, t, st, _ in tests if s in suites]
    rejected = [(s, t, st) for s, t, st in mine if st in ("FAILED", "ERRORED")]
    if rejected:
        print(f"selftest: {name} rejected by " + ", ".join(f"{s}/{t} ({st})" for s, t, st in rejected))
        return 0
    if mine and all(st == "SKIPPED" for _, _, st in mine):
        print(f"selftest: {name}: every test of {sorted(suites)} was skipped (no GPU?): nothing checked")
        return SKIP
    print(f"selftest: the known-wrong variant {name} PASSED every test of {sorted(suites)}: the tests miss it")
    return 1


if __name__ == "__main__":
    sys.exit(main())
