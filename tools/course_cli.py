#!/usr/bin/env python3
"""Helpers of ./course: a build with condensed progress, and ctest with a short summary.

    course_cli.py build BUILD_DIR [--target T ...] [--log FILE] [--jobs J]
        cmake --build with one progress line every 10% (the full output goes to the log, by default
        BUILD_DIR/build.log); a failing build prints its first errors, then where the log is.
    course_cli.py ctest BUILD_DIR [--no-gpu] [--verbose] [--log FILE] [-- CTEST_ARGS...]
        runs ctest, writes its full output to the log (default BUILD_DIR/test.log), prints failures
        as they happen and a progress line every 10%, then a summary per kind of test (reference
        solutions, stubs, known-wrong variants, maintainer checks, ...) that says how many were
        skipped and why, then ctest's own closing line ("100% tests passed, 0 tests failed out of N";
        CMake 4 leaves out "0 tests failed" when none did).
        --verbose prints ctest's whole output as well. Exit status: ctest's.

Normally run through ./course (build, test, bench), not by hand.
"""
import argparse
import os
import re
import subprocess
import sys
import time

PREFIX = "[course] "


def say(msg, stream=None):
    stream = stream or sys.stderr
    print(PREFIX + msg, file=stream, flush=True)


# ------------------------------------------------------------------ build progress

PERCENT = re.compile(r"^\[\s*(\d+)%\]\s*(.*)$")
OBJECT = re.compile(r"^Building \S+ object (?:\S+/)?CMakeFiles/([^/]+)\.dir/\S*?([^/\s]+?)\.o$")
LINKING = re.compile(r"^Linking \S+ (?:static library|executable|shared library) (\S+)")


class BuildProgress:
    """Turns the lines of `cmake --build` (Makefile generator) into one line per `step` percent.

    feed(line) returns the progress text to print, or None. Nothing is printed for a build that
    only checks targets ("Built target ..."): the first compile or link line starts the report."""

    def __init__(self, step=10, heartbeat=60.0, clock=time.monotonic):
        self.step = step
        self.shown = -1
        self.working = False
        self.current = None  # what is being built, in words
        self.pct = 0
        self.heartbeat = heartbeat  # also a line when this many seconds passed and the work changed
        self.clock = clock
        self.last_time = clock()
        self.last_text = None

    def feed(self, line):
        msg = self._feed(line)
        now = self.clock()
        if msg is None and self.working and self.current != self.last_text and now - self.last_time >= self.heartbeat:
            msg = f"build {self.pct:3d}%  {self.current}"
        if msg is not None:
            self.last_time, self.last_text = now, self.current
        return msg

    def _feed(self, line):
        m = PERCENT.match(line.rstrip("\n"))
        if not m:
            return None
        pct, rest = int(m.group(1)), m.group(2).strip()
        self.pct = max(self.pct, pct)
        o = OBJECT.match(rest)
        lk = LINKING.match(rest)
        if o:
            self.working = True
            self.current = f"compiling {o.group(1)} ({o.group(2)})"
        elif lk:
            self.working = True
            self.current = f"linking {os.path.basename(lk.group(1))}"
        if not self.working:
            return None
        bucket = pct // self.step * self.step
        if bucket <= self.shown:
            return None
        self.shown = bucket
        return f"build {pct:3d}%" + (f"  {self.current}" if self.current else "")


ERROR = re.compile(r"\berror\b\s*:|: error\b|\): error\b|undefined reference|CMake Error|fatal error"
                   r"|No rule to make target", re.I)
MAKE_FAILED = re.compile(r"^g?make(\[\d+\])?: \*\*\*")


def first_errors(lines, context=2, limit=30):
    """The first error messages of a build log: the lines from a little before the first compiler or
    linker error, up to `limit` lines, then make's lines that name the failed targets. Falls back
    to the last `limit` lines when no error line is recognised."""
    lines = [l.rstrip("\n") for l in lines]
    first = next((i for i, l in enumerate(lines) if ERROR.search(l) and not MAKE_FAILED.match(l)), None)
    if first is None:
        return lines[-limit:]
    start = max(0, first - context)
    # do not start in the middle of the previous progress line's neighbours: skip progress lines
    while start < first and PERCENT.match(lines[start]):
        start += 1
    out = [l for l in lines[start:] if not PERCENT.match(l) and not MAKE_FAILED.match(l)][:limit]
    failed = [l for l in lines if MAKE_FAILED.match(l)]
    return out + failed[:4]


def run_build(build_dir, targets=(), jobs=None, log_path=None, quiet=False, show_errors=True):
    """cmake --build with condensed progress; returns (exit status, the output's lines)."""
    jobs = jobs or os.cpu_count() or 2
    log_path = log_path or os.path.join(build_dir, "build.log")
    cmd = ["cmake", "--build", build_dir, "-j", str(jobs)]
    for t in targets:
        cmd += ["--target", t]
    progress = BuildProgress()
    lines = []
    t0 = time.time()
    with open(log_path, "w") as log:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace") as proc:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                lines.append(line)
                msg = progress.feed(line)
                if msg and not quiet:
                    say(msg)
            rc = proc.wait()
    if rc != 0 and show_errors:
        say(f"build failed (exit {rc}); the first errors:")
        for l in first_errors(lines):
            print("    " + l, file=sys.stderr)
        say(f"full log: {log_path}")
    elif rc == 0 and progress.working and not quiet:
        say(f"build done in {time.time() - t0:.0f} s (log: {log_path})")
    return rc, lines


# ------------------------------------------------------------------ ctest summary

RESULT = re.compile(r"^\s*(\d+)/(\d+)\s+Test\s+#\s*\d+:\s+(\S+)\s+\.*\s*(\*\*\*)?(.*?)\s+([\d.]+)\s+sec\s*$")
# ctest's closing line: "100% tests passed, 0 tests failed out of N" (CMake 3), "100% tests passed out of
# N" when none failed (CMake 4)
CLOSING = re.compile(r"^\d+% tests passed(, \d+ tests? failed)? out of \d+")
CTEST_NOISE = re.compile(r"^(Internal ctest changing into directory|Test project |\s+Start\s+\d+: )")


def status_of(text):
    """ctest's status text -> 'passed', 'skipped' or 'failed'."""
    t = text.strip().lstrip("*")
    if t.startswith("Passed"):
        return "passed"
    if t.startswith("Skipped"):
        return "skipped"
    return "failed"


KINDS = [  # (prefix, title) in the order the summary prints them
    ("solutions.", "reference solutions"),
    ("selftest.stubs.", "stubs rejected"),
    ("selftest.wrong.", "known-wrong variants"),
    ("maintainer.", "maintainer checks"),
    ("common.", "harness checks"),
    ("sanitizer.", "sanitizer runs"),
    ("", "other tests"),
]


def kind_of(name):
    for prefix, title in KINDS:
        if name.startswith(prefix):
            return title
    return KINDS[-1][1]


def parse_last_test_log(text):
    """{test name: its output} from CTest's Testing/Temporary/LastTest.log."""
    out = {}
    for m in re.finditer(r"^\d+/\d+ Test: (\S+)\n.*?^Output:\n-+\n(.*?)<end of output>", text, re.M | re.S):
        out[m.group(1)] = m.group(2)
    return out


def skip_reason(output):
    """The last non-empty line of a skipped test's output (its reason), or ''."""
    lines = [l.strip() for l in (output or "").splitlines() if l.strip()]
    return lines[-1] if lines else ""


def summarize(results, no_gpu=False, outputs=None):
    """Summary lines for {name: status}. `outputs` ({name: output}) gives the reasons of skips."""
    outputs = outputs or {}
    lines = []
    by_kind = {}
    for name, st in results.items():
        by_kind.setdefault(kind_of(name), []).append((name, st))
    width = max((len(t) for _, t in KINDS), default=20) + 1
    for _, title in KINDS:
        tests = sorted(by_kind.get(title, []))
        if not tests:
            continue
        n = len(tests)
        passed = [t for t, s in tests if s == "passed"]
        failed = [t for t, s in tests if s == "failed"]
        skipped = [t for t, s in tests if s == "skipped"]
        if title == "reference solutions":
            text = f"{len(passed)}/{n} passed"
            if no_gpu and passed:
                text += " (their GPU tests skipped inside: no GPU)"
        elif title == "stubs rejected":
            text = f"{len(passed)}/{n} lessons (every graded test fails on the stubs)"
        elif title == "known-wrong variants":
            text = f"{len(passed)}/{n} rejected"
        else:
            text = f"{len(passed)}/{n} passed"
        if skipped:
            text += f", {len(skipped)} skipped" + (" (they need a GPU)" if no_gpu else "")
        if failed:
            verb = {"stubs rejected": "NOT rejected", "known-wrong variants": "NOT rejected (the tests miss them)"}
            text += f", {len(failed)} {verb.get(title, 'FAILED')}: " + ", ".join(failed)
        lines.append(f"  {title + ':':<{width}} {text}")
    skipped = sorted(t for t, s in results.items() if s == "skipped")
    if skipped:
        if no_gpu:
            lines.append(f"  {len(skipped)} of {len(results)} tests were skipped because there is no CUDA device here; "
                         "they run on a machine with a GPU (skipped is not passed).")
        else:
            lines.append(f"  {len(skipped)} of {len(results)} tests were skipped:")
            for t in skipped:
                reason = skip_reason(outputs.get(t))
                lines.append(f"    {t}" + (f": {reason}" if reason else ""))
    return lines


def run_ctest(build_dir, ctest_args, log_path=None, no_gpu=False, verbose=False, out=None):
    out = out or sys.stdout
    log_path = log_path or os.path.join(build_dir, "test.log")
    cmd = ["ctest", "--test-dir", build_dir, "--output-on-failure"] + list(ctest_args)
    results = {}
    closing, tail_lines = [], []
    shown_pct = 0
    in_failure = False
    after_closing = False
    with open(log_path, "w") as log:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace") as proc:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                raw = line.rstrip("\n")
                if verbose:
                    print(raw, file=out, flush=True)
                m = RESULT.match(raw)
                if m:
                    done, total, name, st = int(m.group(1)), int(m.group(2)), m.group(3), status_of(m.group(5))
                    results[name] = st
                    in_failure = st == "failed"
                    pct = 100 * done // max(total, 1) // 10 * 10
                    if pct > shown_pct and not verbose:
                        shown_pct = pct
                        nfail = sum(1 for s in results.values() if s == "failed")
                        say(f"tests {done}/{total} done" + (f", {nfail} failed" if nfail else ""), out)
                    if in_failure and not verbose:
                        print(raw, file=out, flush=True)
                    continue
                if CLOSING.match(raw):
                    closing.append(raw)
                    after_closing = True
                    in_failure = False
                    continue
                if after_closing:
                    tail_lines.append(raw)
                    continue
                if CTEST_NOISE.match(raw):
                    in_failure = False
                    continue
                if in_failure and not verbose:
                    print(raw, file=out, flush=True)  # --output-on-failure: the failed test's output
                elif not verbose and raw.strip() and not results:
                    print(raw, file=out, flush=True)  # before any test: ctest's own messages (errors)
            rc = proc.wait()
    outputs = {}
    last = os.path.join(build_dir, "Testing", "Temporary", "LastTest.log")
    if os.path.exists(last):
        with open(last, errors="replace") as f:
            outputs = parse_last_test_log(f.read())
    if results:
        print("", file=out)
        say("summary", out)
        for l in summarize(results, no_gpu=no_gpu, outputs=outputs):
            print(l, file=out)
        print(f"  ctest's full output: {log_path}; every test's output: {last}", file=out)
    if not verbose:
        # ctest's closing lines: the pass line and the time, and the list of failed tests (the list of
        # skipped ones is in the summary above and in the log)
        print("", file=out)
        for l in closing:
            print(l, file=out)
        keep, section = [], None
        for l in tail_lines:
            if l.startswith("The following tests did not run"):
                section = "skip"
                continue
            if l.startswith("The following tests FAILED") or l.startswith("Errors while running CTest"):
                section = "show"
            elif l.startswith("Total Test time"):
                section = None
            if section != "skip" and (l.strip() or keep):
                keep.append(l)
            if section == "skip" and not l.strip():
                section = None
        for l in keep:
            print(l, file=out)
    out.flush()
    return rc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="cmake --build with condensed progress")
    b.add_argument("build_dir")
    b.add_argument("--target", action="append", default=[])
    b.add_argument("--log")
    b.add_argument("--jobs", type=int)
    c = sub.add_parser("ctest", help="ctest with a short summary")
    c.add_argument("build_dir")
    c.add_argument("--log")
    c.add_argument("--no-gpu", action="store_true", help="there is no CUDA device here (explains the skips)")
    c.add_argument("--verbose", action="store_true", help="print ctest's whole output too")
    argv = list(sys.argv[1:] if argv is None else argv)
    ctest_args = []
    if "--" in argv:
        at = argv.index("--")
        argv, ctest_args = argv[:at], argv[at + 1:]
    args = ap.parse_args(argv)
    if args.cmd == "build":
        rc, _ = run_build(args.build_dir, args.target, args.jobs, args.log)
        return rc
    return run_ctest(args.build_dir, ctest_args, args.log, args.no_gpu, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
