#!/usr/bin/env python3
"""Grade the course: build each lesson's tests against lessons/ (default) or solutions/, run them,
and print a score table per lesson; write a Gradescope results.json.

    tools/grade.py                         grade lessons/ (your work), every lesson
    tools/grade.py solutions               grade the reference solutions
    tools/grade.py --lesson 01 --lesson 02 only these lessons
    tools/grade.py --results out.json      where to write the Gradescope results (default results.json)
    tools/grade.py --lesson 01 --require cuda_part
                                           exit 1 unless that part earned full points (GitHub Classroom)

Normally run through ./course grade, which also configures the build. Points per part are the
fraction of that part's tests that pass; the speed part is scored by the ratio to the lesson's
target (full at or above it, linear down to 0 at half of it). A part that could not run here
(no GPU) shows as skipped, not as passed, and earns no points.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Points per lesson and part. speed = 0: timed and reported, not graded.
POINTS = {
    "01": {"c_part": 40, "cuda_part": 60, "speed": 0},
    "02": {"c_part": 30, "cuda_part": 50, "speed": 20},
    "03": {"c_part": 20, "cuda_part": 50, "speed": 30},
    "04": {"c_part": 20, "cuda_part": 50, "speed": 30},
    "05": {"c_part": 20, "cuda_part": 50, "speed": 30},
    "06": {"c_part": 20, "cuda_part": 50, "speed": 30},
    "07": {"c_part": 20, "cuda_part": 50, "speed": 30},
    "08": {"c_part": 30, "cuda_part": 70, "speed": 0},
    "09": {"c_part": 20, "cuda_part": 50, "speed": 30},
}
PART_TITLES = {"c_part": "C part", "cuda_part": "CUDA part", "speed": "speed", "errors": "argument checks"}


def lessons_available(tree):
    out = []
    for name in sorted(os.listdir(os.path.join(ROOT, tree))):
        m = re.match(r"^(\d\d)_", name)
        if m and m.group(1) in POINTS:
            out.append((m.group(1), name))
    return out


def build(build_dir, target):
    jobs = str(os.cpu_count() or 2)
    proc = subprocess.run(["cmake", "--build", build_dir, "--target", target, "-j", jobs], capture_output=True,
                          text=True)
    return proc.returncode == 0, proc.stdout + proc.stderr


def run_tests(binary):
    """Run one test binary; return (tests, speed reports, raw output)."""
    with tempfile.TemporaryDirectory() as tmp:
        json_path, report_path = os.path.join(tmp, "r.json"), os.path.join(tmp, "speed.jsonl")
        env = dict(os.environ, ATTN_REPORT=report_path)
        proc = subprocess.run([binary, "--jobs", "1", "--ascii", "--short-filename", f"--json={json_path}"], capture_output=True,
                              text=True, env=env)
        tests = []
        if os.path.exists(json_path):
            with open(json_path) as f:
                for suite in json.load(f).get("test_suites", []):
                    for t in suite.get("tests", []):
                        tests.append((suite["name"], t["name"], t["status"], t.get("messages", [])))
        speed = []
        if os.path.exists(report_path):
            with open(report_path) as f:
                speed = [json.loads(line) for line in f if line.strip()]
    return tests, speed, proc.stdout + proc.stderr


def score_parts(tests, speed, points):
    """Points per part from the test results: {part: {state, passed, total, points, max, ...}}."""
    tests = [t[:3] if len(t) > 3 else t for t in tests]
    parts = {}
    for part, max_points in points.items():
        mine = [t for t in tests if t[0] == part]
        ran = [t for t in mine if t[2] != "SKIPPED"]
        passed = sum(1 for t in ran if t[2] == "PASSED")
        info = {"max": max_points, "passed": passed, "total": len(ran), "points": 0.0, "state": "graded",
                "failing": [f"{t[0]}/{t[1]}" for t in ran if t[2] != "PASSED"]}
        if not mine:
            info["state"] = "missing"
        elif not ran:
            info["state"] = "skipped"
        elif part == "speed":
            # each speed test that ran scores against its own target; one that failed before it
            # could report (wrong output, an error) scores 0
            best = sum(s.get("score", 0.0) for s in speed) / len(ran)
            info["ratios"] = [(s.get("ratio", 0.0), s.get("target", 0.0)) for s in speed]
            if max_points == 0:
                info["state"] = "reported"
            else:
                info["points"] = round(max_points * min(best, 1.0), 2)
        else:
            info["points"] = round(max_points * passed / len(ran), 2)
        parts[part] = info
    return parts


def first_messages(tests, limit=3, width=600):
    out = []
    for suite, name, status, messages in tests:
        if status in ("FAILED", "ERRORED") and len(out) < limit:
            msg = " ".join(" ".join(messages).split()) or ("the test crashed" if status == "ERRORED" else "")
            out.append(f"{suite}/{name}: {msg[:width]}{'...' if len(msg) > width else ''}")
    return out


def format_part(part, info):
    title = PART_TITLES[part]
    mx = info["max"] or "-"
    if info["state"] == "skipped":
        return f"  {title:<12} {'-':>8}   skipped (no CUDA device)            {'-':>6} / {mx}"
    if info["state"] == "missing":
        return f"  {title:<12} {'-':>8}   no tests                            {'-':>6} / {mx}"
    tests = f"{info['passed']}/{info['total']}"
    if part == "speed":
        ratios = info.get("ratios") or []
        if not ratios:
            result = "not timed (the speed test failed first)"
        elif info["state"] == "reported":
            result = ", ".join(f"{r:.2f}x" for r, _ in ratios) + " (reported only)"
        else:
            result = ", ".join(f"{r:.2f}x of {t:g}x" for r, t in ratios)
    else:
        result = "all passed" if info["passed"] == info["total"] else f"{info['total'] - info['passed']} failing"
    pts = f"{info['points']:6.1f}" if info["state"] != "reported" else f"{'-':>6}"
    return f"  {title:<12} {tests:>8}   {result:<35} {pts} / {mx}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree", nargs="?", default="lessons", choices=["lessons", "solutions"])
    ap.add_argument("--lesson", action="append", help="lesson number, e.g. 01 (repeatable)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--results", default="results.json", help="Gradescope results file")
    ap.add_argument("--require", choices=["c_part", "cuda_part", "speed"],
                    help="exit 1 unless this part earned full points in every graded lesson")
    args = ap.parse_args()

    lessons = lessons_available(args.tree)
    if args.lesson:
        wanted = {f"{int(x):02d}" for x in args.lesson}
        lessons = [item for item in lessons if item[0] in wanted]
        if not lessons:
            sys.exit(f"grade: no lesson {', '.join(sorted(wanted))} in {args.tree}/")
    if not os.path.exists(os.path.join(args.build_dir, "CMakeCache.txt")):
        sys.exit(f"grade: {args.build_dir} is not configured; run ./course grade (it configures the build)")

    gs_tests, total, total_max, skipped_max, require_ok = [], 0.0, 0, 0, True
    print(f"Grading {args.tree}/")
    for num, name in lessons:
        target = f"test_{num}_{args.tree}"
        ok, log = build(args.build_dir, target)
        print(f"\nLesson {num} {name[3:]}")
        if not ok:
            errors = [line for line in log.splitlines()
                      if "error" in line.lower() and not line.lstrip().startswith(("gmake", "make", "ninja"))][:8]
            print("  does not compile: every part scores 0. First errors:")
            for line in errors:
                print("    " + line.strip()[:200])
            for part, mx in POINTS[num].items():
                if mx:
                    total_max += mx
                    gs_tests.append({"name": f"Lesson {num} {PART_TITLES[part]}", "score": 0, "max_score": mx,
                                     "status": "failed", "output": "does not compile:\n" + "\n".join(errors)})
            require_ok = False
            continue
        tests, speed, output = run_tests(os.path.join(args.build_dir, "bin", target))
        if not tests:
            print("  the test binary reported nothing; its output:\n" + output[-2000:])
            require_ok = False
            continue
        parts = score_parts(tests, speed, POINTS[num])
        print(f"  {'part':<12} {'tests':>8}   {'result':<35} {'points':>6}")
        lesson_pts, lesson_max, lesson_skipped = 0.0, 0, 0
        for part, info in parts.items():
            print(format_part(part, info))
            if info["state"] == "skipped":
                lesson_skipped += info["max"]
            elif info["max"]:
                lesson_pts += info["points"]
                lesson_max += info["max"]
            if args.require == part and (info["state"] != "graded" or info["points"] < info["max"]):
                require_ok = False
            if info["max"] and info["state"] != "missing":
                out = "skipped: no CUDA device on this machine" if info["state"] == "skipped" else \
                    "\n".join(m for m in first_messages([t for t in tests if t[0] == part], limit=5)) or "all passed"
                gs_tests.append({"name": f"Lesson {num} {PART_TITLES[part]}", "score": info["points"],
                                 "max_score": info["max"],
                                 "status": "passed" if info["points"] >= info["max"] else "failed",
                                 "output": out})
        checks = [t for t in tests if t[0] == "errors"]
        if checks and any(t[2] == "FAILED" for t in checks):
            print("  (argument checks fail: the given validation code was changed?)")
        note = f", {lesson_skipped} skipped" if lesson_skipped else ""
        print(f"  {'total':<12} {'':>8}   {'':<35} {lesson_pts:6.1f} / {lesson_max}{note}")
        for line in first_messages(tests):
            print("  FAIL " + line)
        total += lesson_pts
        total_max += lesson_max
        skipped_max += lesson_skipped

    note = f" ({skipped_max} points skipped: no CUDA device)" if skipped_max else ""
    print(f"\nTotal: {total:.1f} / {total_max}{note}")
    with open(args.results, "w") as f:
        json.dump({"score": round(total, 2), "output": f"{args.tree}/: {total:.1f} / {total_max}{note}",
                   "tests": gs_tests}, f, indent=2)
    print(f"Gradescope results: {args.results}")
    if args.require:
        return 0 if require_ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
