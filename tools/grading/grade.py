#!/usr/bin/env python3
"""Grade the course: check each lesson's files, build its tests against them, audit what the
learner's code defines and calls, run the tests (and compute-sanitizer on a GPU), and print a score
table per lesson; write a Gradescope results.json.

    tools/grading/grade.py                         grade lessons/ (your work), every lesson
    tools/grading/grade.py solutions               grade the reference solutions
    tools/grading/grade.py --lesson 01 --lesson 02 only these lessons
    tools/grading/grade.py --results out.json      where to write the Gradescope results (default results.json)
    tools/grading/grade.py --lesson 01 --require cuda_part
                                           exit 1 unless that part earned full points (GitHub Classroom)
    tools/grading/grade.py --all                   print every failing test, not only the first three
    tools/grading/grade.py --no-sanitize           skip the compute-sanitizer runs (they need a GPU anyway)

Normally run through ./course grade, which also configures the build. Points per part are the
fraction of that part's tests that pass; the speed part is scored by the ratio to the lesson's
target (full at or above it, linear down to 0 at half of it). A part that could not run here
(no GPU) shows as skipped, not as passed, and earns no points. What the grading trusts and why:
common/README.md.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import audit  # noqa: E402
import lessons as course_lessons  # noqa: E402
import sanitize as sanitize_tool  # noqa: E402

# Points per part, speed targets and sanitizer filters: each lesson's descriptor (lesson.json, read by
# tools/lessons.py). speed = 0: timed and reported, not graded.
PART_TITLES = {"c_part": "C part", "cuda_part": "CUDA part", "speed": "speed", "errors": "argument checks"}
# the parts each source file is graded in (a lesson's .cuh is compiled into its .cu files, and a
# .cu file that the lesson descriptor names optional costs nothing when it does not compile)
PARTS_OF = {".c": ("c_part",), ".cu": ("cuda_part", "speed")}
SHOWN_FAILURES = 3


def gpu_present():
    exe = shutil.which("nvidia-smi")
    return bool(exe) and subprocess.run([exe], capture_output=True).returncode == 0


def lessons_available(tree_dir):
    out = []
    if not os.path.isdir(tree_dir):
        return out
    for name in sorted(os.listdir(tree_dir)):
        m = re.match(r"^(\d\d)_", name)
        if m and name in course_lessons.lesson_names(ROOT) and os.path.isdir(os.path.join(tree_dir, name)):
            out.append((m.group(1), name))
    return out


def build(build_dir, target):
    jobs = str(os.cpu_count() or 2)
    proc = subprocess.run(["cmake", "--build", build_dir, "--target", target, "-j", jobs], capture_output=True,
                          text=True)
    return proc.returncode == 0, proc.stdout + proc.stderr


def error_lines(log, limit=8):
    lines = [line.strip() for line in log.splitlines()
             if re.search(r"\berror\b|undefined reference|multiple definition", line, re.I)
             and not line.lstrip().startswith(("gmake", "make", "ninja"))]
    return [line[:200] for line in lines[:limit]]


# ---------------------------------------------------------------- the graded copy

def stand_in(entry, source_name, why):
    """A file that defines the API functions `source_name` should define, each returning
    ATTN_ERR_NOT_IMPLEMENTED (or 0), so that the other part of the lesson can still be graded."""
    headers = sorted(entry["headers"])
    lines = [f"/* Written by tools/grading/grade.py in place of {source_name}, which {why}. */"]
    lines += [f'#include "{h}"' for h in headers]
    decls = {}
    for h in headers:
        decls.update(entry.get("_protos", {}).get(h, {}))
    for fn, file in sorted(entry["defined_in"].items()):
        if file != source_name or fn not in decls:
            continue
        decl = decls[fn]
        ret = decl[:decl.index(fn)].strip()
        body = "" if ret == "void" else (" return ATTN_ERR_NOT_IMPLEMENTED;" if ret == "int" else " return 0;")
        lines.append(f"{decl}\n{{{body} }}")
    return "\n".join(lines) + "\n"


def prepare_graded(build_dir, src_dir, name, entry, replace=None):
    """Write build/graded/<name>/: the header(s) and the .c/.cu files, each from the lesson folder or,
    when `replace` names it, a stand-in. Files are rewritten only when they change (make sees times)."""
    dst = os.path.join(build_dir, "graded", name)
    os.makedirs(dst, exist_ok=True)
    wanted = {}
    for f in entry["files"]:
        with open(os.path.join(src_dir, f), encoding="utf-8") as fh:
            wanted[f] = fh.read()
    for f, why in (replace or {}).items():
        wanted[f] = stand_in(entry, f, why)
    for f in os.listdir(dst):
        if f not in wanted:
            os.remove(os.path.join(dst, f))
    for f, text in wanted.items():
        path = os.path.join(dst, f)
        if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
    return dst


def files_that_do_not_compile(build_dir, graded_dir, entry):
    """{source file: first error lines} for each graded .c/.cu whose own compile command fails."""
    db = os.path.join(build_dir, "compile_commands.json")
    bad = {}
    if not os.path.exists(db):
        return bad
    with open(db) as f:
        commands = json.load(f)
    for cmd in commands:
        src = os.path.abspath(cmd["file"])
        if os.path.dirname(src) != os.path.abspath(graded_dir) or "CMakeFiles/graded_" not in cmd.get(
                "output", cmd["command"]):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            line = re.sub(r"-o\s+\S+", f"-o {os.path.join(tmp, 'x.o')}", cmd["command"])
            proc = subprocess.run(line, shell=True, cwd=cmd["directory"], capture_output=True, text=True)
        if proc.returncode != 0:
            bad[os.path.basename(src)] = error_lines(proc.stdout + proc.stderr) or [
                (proc.stdout + proc.stderr).strip()[-300:]]
    return bad


def compile_failures(bad, optional):
    """What the files in `bad` ({source file: first error lines}) that do not compile (or lack their API
    functions) cost: (notes {part: (state, message)}, messages). Each is replaced by its stand-in. A file
    the lesson descriptor names optional (a fast path that the lesson's other code calls first and serves
    itself when it answers ATTN_ERR_NOT_IMPLEMENTED, as its stand-in does) costs no part: the lesson is
    graded without it. A file the audit refuses costs its parts, optional or not (grade_lesson)."""
    notes, messages = {}, []
    for f, errs in sorted(bad.items()):
        if f in optional:
            what = "lacks its functions" if errs and "does not define" in errs[0] else "does not compile"
            messages.append(f"{f} {what}: graded without it (an optional fast path: its stand-in returns "
                            f"ATTN_ERR_NOT_IMPLEMENTED, and the lesson's general code serves every call); "
                            f"first errors:")
            messages += ["    " + e for e in errs[:6]]
            continue
        for p in PARTS_OF[os.path.splitext(f)[1]]:
            notes[p] = ("does not compile", f"{f} does not compile")
        if errs and "does not define" in errs[0]:
            messages.append(errs[0] + ": its tests cannot link")
        else:
            messages.append(f"{f} does not compile; first errors:")
            messages += ["    " + e for e in errs[:6]]
    return notes, messages


def files_missing_their_api(build_dir, num, entry):
    """{source file: [reason]} for each graded file that compiled but does not define the header's
    functions it should (a renamed or deleted function: the tests then fail to link)."""
    bad = {}
    objs = audit.lesson_objects(build_dir, "graded", num)
    for src, obj in objs.items():
        defined = {name for name, _ in audit.nm_symbols(obj)[0]}
        missing = sorted(fn for fn, f in entry["defined_in"].items() if f == src and fn not in defined)
        if missing:
            bad[src] = [f"{src} does not define {', '.join(missing)} (declared in the lesson header)"]
    return bad


# ---------------------------------------------------------------- running the tests

def report_tests(report):
    """(suite, name, status, messages) of every test in a Criterion JSON report. The report is written by
    Criterion's runner in the test binary, which never loads the lesson's code (it runs in a runner
    process of its own: common/grading/rpc.h), so its verdicts stand as they are."""
    tests = []
    for suite in report.get("test_suites", []):
        for t in suite.get("tests", []):
            tests.append((suite["name"], t["name"], t["status"], t.get("messages", [])))
    return tests


def run_tests(binary, extra_args=(), timeout=1800):
    """Run one test binary; return (tests, speed reports, protection line, raw output)."""
    with tempfile.TemporaryDirectory() as tmp:
        json_path = os.path.join(tmp, "r.json")
        report_path = os.path.join(tmp, "speed.jsonl")
        env = dict(os.environ, ATTN_REPORT=report_path)
        try:
            proc = subprocess.run([binary, "--jobs", "1", "--ascii", "--short-filename", f"--json={json_path}",
                                   *extra_args], capture_output=True, text=True, env=env, timeout=timeout)
            output = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            output = f"(stopped after {timeout} s)\n" + str(e.stdout or "") + str(e.stderr or "")
        report = {}
        if os.path.exists(json_path):
            try:
                with open(json_path) as f:
                    report = json.load(f)
            except json.JSONDecodeError:
                report = {}
        tests = report_tests(report)
        speed, protection = [], ""
        if os.path.exists(report_path):
            with open(report_path) as f:
                for line in f:
                    # written by the test binary's harness, after every timed call was checked
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if "protection" in item:
                        protection = protection or item["protection"]
                    else:
                        speed.append(item)
    return tests, speed, protection, output


def sanitize(binary, num, timeout=240, filters=None):
    """Run memcheck and racecheck on the lesson's sanitizer tests: each filter of its descriptor's
    sanitize.grade (or `filters`), one run per tool and filter. Returns None when clean, else the first lines
    of the first report. tools/grading/sanitize.py stops at the first report (a racy kernel can print
    hazards for minutes: racecheck reports every one) and after `timeout` seconds per run, which counts as
    a report; either way it kills compute-sanitizer and the test processes, so nothing of the learner's
    keeps running on the GPU while the next lesson is graded."""
    san = os.path.join(ROOT, "tools", "grading", "sanitize.py")
    if filters is None:
        name = next(n for n in course_lessons.lesson_names(ROOT) if n[:2] == num)
        filters = course_lessons.grade_filters(course_lessons.descriptor(name, ROOT))
    for tool in ("memcheck", "racecheck"):
        for filt in filters:
            try:
                proc = subprocess.run([sys.executable, san, "--tool", tool, "--filter", filt, "--timeout",
                                       str(timeout), binary], capture_output=True, text=True, timeout=timeout + 60)
            except subprocess.TimeoutExpired:
                return f"compute-sanitizer {tool} did not finish within {timeout} s on {filt}"
            if proc.returncode == 77:
                return None
            if proc.returncode != 0:
                lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
                reports = [ln for ln in lines if sanitize_tool.REPORT.search(ln)][:6]
                verdict = [ln for ln in lines if ln.startswith("sanitize:")][-1:]
                return (f"compute-sanitizer {tool} reported a problem on {filt}:\n" +
                        "\n".join((reports or lines[-6:]) + verdict))
    return None


# ---------------------------------------------------------------- scoring

def score_parts(tests, speed, points, notes=None):
    """Points per part from the test results: {part: {state, passed, total, points, max, ...}}.
    notes: {part: (state, message)} for parts decided before the tests ran (refused, does not compile,
    sanitizer report): they score 0 whatever their tests say."""
    tests = [t if len(t) > 3 else (*t, []) for t in tests]
    notes = notes or {}
    parts = {}
    for part, max_points in points.items():
        mine = [t for t in tests if t[0] == part]
        ran = [t for t in mine if t[2] != "SKIPPED"]
        passed = sum(1 for t in ran if t[2] == "PASSED")
        info = {"max": max_points, "passed": passed, "total": len(ran), "points": 0.0, "state": "graded",
                "failing": [f"{t[0]}/{t[1]}" for t in ran if t[2] != "PASSED"], "count": len(mine)}
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
        if part in notes:
            state, message = notes[part]
            info["note"] = message
            if info["state"] == "skipped":
                info["skip_note"] = state  # e.g. skipped here and also does not compile
            else:
                info["state"], info["points"] = state, 0.0
        parts[part] = info
    return parts


def failure_lines(tests, width=600):
    """One line per failing test; a message longer than `width` is cut (None: never, as --all asks)."""
    out = []
    for suite, name, status, messages in tests:
        if status in ("FAILED", "ERRORED"):
            msg = " ".join(" ".join(messages).split()) or ("the test crashed" if status == "ERRORED" else "")
            cut = width is not None and len(msg) > width
            out.append(f"{suite}/{name}: {msg[:width] if cut else msg}{'...' if cut else ''}")
    return out


def format_part(part, info, compiled):
    title = PART_TITLES[part]
    mx = info["max"] or "-"
    state = info["state"]
    if state == "skipped":
        extra = info.get("skip_note")
        why = f"skipped: no GPU; {extra}" if extra else ("skipped: no GPU; compiled OK" if compiled else "skipped: no GPU")
        return f"  {title:<12} {'-':>8}   {why:<38} {'-':>6} / {mx}"
    if state == "missing":
        return f"  {title:<12} {'-':>8}   {'no tests':<38} {'-':>6} / {mx}"
    if state in ("refused", "does not compile", "sanitizer"):
        label = {"refused": "refused by the audit (see below)", "does not compile": "does not compile (see below)",
                 "sanitizer": "compute-sanitizer report (below)"}[state]
        return f"  {title:<12} {'-':>8}   {label:<38} {0.0:6.1f} / {mx}"
    tests = f"{info['passed']}/{info['total']}"
    if part == "speed":
        ratios = info.get("ratios") or []
        if not ratios:
            result = "not timed (the speed test failed first)"
        elif state == "reported":
            result = ", ".join(f"{r:.2f}x" for r, _ in ratios) + " (reported only)"
        else:
            result = ", ".join(f"{r:.2f}x of {t:g}x" for r, t in ratios)
    else:
        result = "all passed" if info["passed"] == info["total"] else f"{info['total'] - info['passed']} failing"
    pts = f"{info['points']:6.1f}" if state != "reported" else f"{'-':>6}"
    return f"  {title:<12} {tests:>8}   {result:<38} {pts} / {mx}"


def grade_lesson(args, num, name, tree_dir, manifest, have_gpu, timing):
    """Grade one lesson. Returns (parts, messages, compiled_cu) or raises nothing. timing gets the
    seconds spent building and auditing ("build"), in the tests ("tests") and in compute-sanitizer
    ("sanitizer")."""
    t_start = time.monotonic()
    entry = dict(manifest[name])
    entry["_protos"] = {}
    src_dir = os.path.join(tree_dir, name)
    for h in entry["headers"]:
        path = os.path.join(src_dir, h)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                entry["_protos"][h] = audit.prototypes(f.read())
    messages = []
    desc = course_lessons.descriptor(name, ROOT)
    points, optional = desc["points"], set(desc["optional"])

    # 1. the folder: the unchanged header, no extra files. Nothing is built otherwise.
    folder = audit.check_files(src_dir, entry)
    if folder:
        msgs = [f"{d}" for _, d in folder]
        notes = {p: ("refused", "; ".join(msgs)) for p in points}
        return score_parts([], [], points, notes), ["refused: " + m for m in msgs], False

    # 2. build; a file that does not compile is replaced by a stand-in so the other part is graded
    replace, notes = {}, {}
    graded = prepare_graded(args.build_dir, src_dir, name, entry)
    target = f"test_{num}_graded"
    ok, log = build(args.build_dir, target)
    if not ok:
        bad = files_that_do_not_compile(args.build_dir, graded, entry)
        if not bad:
            bad = files_missing_their_api(args.build_dir, num, entry)
        if not bad:  # a link error of another kind, or no compile database: nothing can be graded
            notes = {p: ("does not compile", "the lesson does not build") for p in points}
            return score_parts([], [], points, notes), ["does not build:"] + error_lines(log), False
        for f in bad:
            replace[f] = "does not compile"
        notes, more = compile_failures(bad, optional)
        messages += more

    # 3. the audit of what the compiled code defines and calls
    for attempt in range(2):
        if replace:
            prepare_graded(args.build_dir, src_dir, name, entry, replace)
        ok, log = build(args.build_dir, target)
        if not ok:
            notes = {p: ("does not compile", "the lesson does not build") for p in points}
            return score_parts([], [], points, notes), messages + ["does not build:"] + error_lines(log), False
        objs = audit.lesson_objects(args.build_dir, "graded", num)
        result = audit.audit_lesson(args.build_dir, num, "graded", objects=objs)
        refused = {src: items for src, items in result["by_file"].items() if items and src not in replace}
        if refused and args.audit_lint:
            # the course's self-tests of the process boundary: what the audit finds is reported, and the
            # code is graded as it is
            messages += ["audit (lint only): " + line for line in audit.format_violations(
                {"lesson": name, "files": [], "by_file": refused})]
            break
        if not refused:
            break
        for src, items in refused.items():
            replace[src] = "the audit refused"
            for p in PARTS_OF[os.path.splitext(src)[1]]:
                notes[p] = ("refused", f"{src}: {items[0][1]}")
        messages += ["audit: " + line for line in audit.format_violations(
            {"lesson": name, "files": [], "by_file": refused})]

    # 4. the tests, then compute-sanitizer on the CUDA part
    binary = os.path.join(args.build_dir, "bin", target)
    t_tests = time.monotonic()
    timing["build"] = t_tests - t_start
    tests, speed, protection, output = run_tests(binary)
    timing["tests"] = time.monotonic() - t_tests
    if protection:
        messages.append("isolation: " + protection)
    if not tests:
        messages.append("the test binary reported nothing; its output:\n" + output[-2000:])
    # the CUDA part is whole (sanitized, "compiled OK") unless a .cu file that costs points was replaced
    cu_ok = not any(f.endswith(".cu") and not (f in optional and why == "does not compile")
                    for f, why in replace.items())
    if have_gpu and cu_ok and not args.no_sanitize and any(t[0] == "cuda_part" for t in tests):
        t_san = time.monotonic()
        report = sanitize(binary, num)
        timing["sanitizer"] = time.monotonic() - t_san
        if report:
            notes["cuda_part"] = ("sanitizer", report)
            notes["speed"] = ("sanitizer", report)
            messages.append(report)
    parts = score_parts(tests, speed, points, notes)
    if replace:
        # the argument checks of a stand-in are not the lesson's: their failures say nothing
        tests = [t for t in tests if t[0] != "errors"]
    fails = failure_lines(tests, None if args.all else 600)
    shown = fails if args.all else fails[:SHOWN_FAILURES]
    messages += ["FAIL " + line for line in shown]
    if len(fails) > len(shown):
        more = len(fails) - len(shown)
        messages.append(f"... and {more} more failing test{'s' if more > 1 else ''}: see them all with "
                        f"./course grade --lesson {num} --all (or {os.path.relpath(binary, ROOT)} --jobs 1)")
    if any(t[0] == "errors" and t[2] == "FAILED" for t in tests):
        messages.append("(argument checks fail: the given validation code was changed?)")
    for part, info in parts.items():
        info["failing_messages"] = [line for line in fails if line.startswith(part + "/")]
    return parts, messages, cu_ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree", nargs="?", default="lessons", choices=["lessons", "solutions"])
    ap.add_argument("--tree-dir", help="grade the lessons in this folder (holding NN_name/) instead")
    ap.add_argument("--lesson", action="append", help="lesson number, e.g. 01 (repeatable)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--results", default="results.json", help="Gradescope results file")
    ap.add_argument("--summary-json", help="also write the parts of every lesson here (for the self-tests)")
    ap.add_argument("--require", choices=["c_part", "cuda_part", "speed"],
                    help="exit 1 unless this part earned full points in every graded lesson")
    ap.add_argument("--all", action="store_true", help="print every failing test")
    ap.add_argument("--no-sanitize", action="store_true", help="do not run compute-sanitizer")
    ap.add_argument("--audit-lint", action="store_true",
                    help="(the course's self-tests) report what the audit refuses but grade the code anyway, "
                         "to show that the runner's isolation, not the audit, keeps the points")
    args = ap.parse_args()

    tree_dir = args.tree_dir or os.path.join(ROOT, args.tree)
    label = os.path.relpath(tree_dir, ROOT) if args.tree_dir else args.tree
    lessons = lessons_available(tree_dir)
    if args.lesson:
        wanted = {f"{int(x):02d}" for x in args.lesson}
        lessons = [item for item in lessons if item[0] in wanted]
        if not lessons:
            sys.exit(f"grade: no lesson {', '.join(sorted(wanted))} in {label}/")
    if not os.path.exists(os.path.join(args.build_dir, "CMakeCache.txt")):
        sys.exit(f"grade: {args.build_dir} is not configured; run ./course grade (it configures the build)")
    manifest = audit.load_manifest()
    have_gpu = gpu_present()

    gs_tests, total, total_max, skipped_max, require_ok, summary = [], 0.0, 0, 0, True, {}
    print(f"Grading {label}/" + ("" if have_gpu else "  (no CUDA device here: the CUDA and speed parts are "
                                                      "compiled but not run)"))
    for num, name in lessons:
        print(f"\nLesson {num} {name[3:]}", flush=True)
        timing = {}
        parts, messages, compiled = grade_lesson(args, num, name, tree_dir, manifest, have_gpu, timing)
        summary[num] = parts
        print(f"  {'part':<12} {'tests':>8}   {'result':<38} {'points':>6}")
        lesson_pts, lesson_max, lesson_skipped = 0.0, 0, 0
        for part, info in parts.items():
            print(format_part(part, info, compiled))
            if info["state"] == "skipped":
                lesson_skipped += info["max"]
            elif info["max"] and info["state"] != "missing":
                lesson_pts += info["points"]
                lesson_max += info["max"]
            if args.require == part and (info["state"] != "graded" or info["points"] < info["max"]):
                require_ok = False
            if info["max"] and info["state"] != "missing":
                if info["state"] == "skipped":
                    out = "skipped: no CUDA device on this machine" + (
                        f" ({info['skip_note']})" if info.get("skip_note") else " (compiled OK)")
                elif info.get("note"):
                    out = info["note"]
                else:
                    out = "\n".join(info["failing_messages"][:5]) or "all passed"
                gs_tests.append({"name": f"Lesson {num} {PART_TITLES[part]}", "score": info["points"],
                                 "max_score": info["max"],
                                 "status": "passed" if info["points"] >= info["max"] else "failed",
                                 "output": out})
        note = f", {lesson_skipped} skipped (no GPU)" if lesson_skipped else ""
        print(f"  {'total':<12} {'':>8}   {'':<38} {lesson_pts:6.1f} / {lesson_max}{note}")
        if timing:
            print("  time         " + ", ".join(f"{what} {timing[what]:.0f} s" for what in
                                               ("build", "tests", "sanitizer") if what in timing))
        for line in messages:
            print("  " + line)
        total += lesson_pts
        total_max += lesson_max
        skipped_max += lesson_skipped

    note = f" ({skipped_max} points skipped: no CUDA device)" if skipped_max else ""
    print(f"\nTotal: {total:.1f} / {total_max}{note}")
    with open(args.results, "w") as f:
        json.dump({"score": round(total, 2), "output": f"{label}/: {total:.1f} / {total_max}{note}",
                   "tests": gs_tests}, f, indent=2)
    print(f"Gradescope results: {args.results}")
    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump(summary, f, indent=1)
    if args.require:
        return 0 if require_ok else 1
    print("(the exit status is 0 whatever the score; --require PART exits 1 unless PART has full points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
