#!/usr/bin/env python3
"""Generate the learner's stubs in lessons/ from the reference solutions in solutions/.

A solution file marks what the learner writes:

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: one thread per score ... */
    ...the solution...
    /* END SOLUTION */

In the stub the region becomes a TODO comment that carries the hint and a rough line count,
followed by the stub statement (if any), so that host functions report "not implemented yet"
instead of running an empty kernel. Files without regions (headers) are copied as they are.
Lesson READMEs live only in lessons/ and are not touched.

    tools/maintenance/gen_stubs.py                       write lessons/ from solutions/
    tools/maintenance/gen_stubs.py --out DIR             write the stubs somewhere else (the build tree)
    tools/maintenance/gen_stubs.py --check               exit 1 (and show a diff) if lessons/ differs
"""
import argparse
import difflib
import hashlib
import json
import os
import re
import sys

SOURCE_SUFFIXES = (".c", ".cu", ".h", ".cuh")
# copied as they are, and checked by the grader like the header: the lesson's descriptor
CONTRACT_FILES = ("lesson.json",)
BEGIN = re.compile(r'^(\s*)/\* BEGIN SOLUTION(?: stub="(.*)")? \*/\s*$')
END = re.compile(r"^\s*/\* END SOLUTION \*/\s*$")
HINT_START = re.compile(r"^\s*/\* HINT: ?(.*)$")


class StubError(Exception):
    pass


def stub_text(text, path="<text>"):
    """Return the stub version of a solution file's text."""
    out, lines, n = [], text.split("\n"), 0
    while n < len(lines):
        line = lines[n]
        m = BEGIN.match(line)
        if not m:
            if "BEGIN SOLUTION" in line or END.match(line):
                raise StubError(f"{path}:{n + 1}: malformed or unmatched solution marker")
            out.append(line)
            n += 1
            continue
        indent, stub = m.group(1), m.group(2)
        start = n
        n += 1
        hint = []
        if n < len(lines) and HINT_START.match(lines[n]):
            body = HINT_START.match(lines[n]).group(1)
            while True:
                done = body.rstrip().endswith("*/")
                hint.append(body.rstrip()[:-2].rstrip() if done else body.rstrip())
                n += 1
                if done:
                    break
                if n >= len(lines):
                    raise StubError(f"{path}:{start + 1}: unterminated HINT comment")
                body = re.sub(r"^\s*\* ?", "", lines[n])
        code_lines = 0
        while n < len(lines) and not END.match(lines[n]):
            if "BEGIN SOLUTION" in lines[n]:
                raise StubError(f"{path}:{n + 1}: nested BEGIN SOLUTION")
            if lines[n].strip():
                code_lines += 1
            n += 1
        if n >= len(lines):
            raise StubError(f"{path}:{start + 1}: BEGIN SOLUTION without END SOLUTION")
        n += 1  # skip END
        about = max(5, int(round(code_lines / 5.0)) * 5)
        head = f"TODO (about {about} lines)"
        if hint:
            out.append(f"{indent}/* {head}: {hint[0]}")
            for h in hint[1:]:
                out.append(f"{indent} * {h}".rstrip())
            out[-1] += " */"
        else:
            out.append(f"{indent}/* {head} */")
        if stub:
            out.append(f"{indent}{stub}")
    return "\n".join(out)


def lesson_files(solutions):
    """Yield (relative path, absolute path) of every source file under solutions/NN_name/."""
    for lesson in sorted(os.listdir(solutions)):
        ldir = os.path.join(solutions, lesson)
        if not (os.path.isdir(ldir) and re.match(r"^\d\d_", lesson)):
            continue
        for name in sorted(os.listdir(ldir)):
            if name.endswith(SOURCE_SUFFIXES) or name in CONTRACT_FILES:
                yield os.path.join(lesson, name), os.path.join(ldir, name)


def generate(solutions):
    result = {}
    for rel, path in lesson_files(solutions):
        with open(path, encoding="utf-8") as f:
            result[rel] = stub_text(f.read(), rel)
    return result


def manifest(solutions, stubs):
    """What the grader checks a lesson folder against (tests/lesson_manifest.json): per lesson, the file
    names, the SHA-256 of each header and of the descriptor as learners get them, the API functions the header declares and
    which source file defines each of them."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "grading"))
    from audit import declared_functions  # noqa: E402
    out = {}
    for rel, text in stubs.items():
        lesson, name = os.path.split(rel)
        entry = out.setdefault(lesson, {"files": [], "headers": {}, "contract": {}, "api": [], "defined_in": {}})
        entry["files"].append(name)
        if name in CONTRACT_FILES:
            entry["contract"][name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if name.endswith(".h"):
            entry["headers"][name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
            entry["api"] = sorted(set(entry["api"]) | declared_functions(text))
    for lesson, entry in out.items():
        for name in entry["files"]:
            if name.endswith((".c", ".cu")):
                with open(os.path.join(solutions, lesson, name), encoding="utf-8") as f:
                    src = f.read()
                for fn in entry["api"]:
                    if re.search(r"\b%s\s*\([^;{]*\)\s*\{" % re.escape(fn), src):
                        entry["defined_in"][fn] = name
        entry["files"].sort()
    return json.dumps(out, indent=1, sort_keys=True) + "\n"


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--solutions", default=os.path.join(root, "solutions"))
    ap.add_argument("--out", default=os.path.join(root, "lessons"), help="where to write (default lessons/)")
    ap.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = ap.parse_args()
    try:
        stubs = generate(args.solutions)
    except StubError as e:
        print(f"gen_stubs: {e}", file=sys.stderr)
        return 2
    if args.check:
        differ = 0
        for rel, text in stubs.items():
            path = os.path.join(args.out, rel)
            have = open(path, encoding="utf-8").read() if os.path.exists(path) else None
            if have != text:
                differ += 1
                print(f"gen_stubs: {path} is not what tools/maintenance/gen_stubs.py generates from solutions/{rel}")
                diff = difflib.unified_diff((have or "").splitlines(), text.splitlines(), f"committed/{rel}",
                                            f"generated/{rel}", lineterm="")
                print("\n".join(list(diff)[:60]))
        man_path = os.path.join(root, "tests", "lesson_manifest.json")
        have = open(man_path, encoding="utf-8").read() if os.path.exists(man_path) else None
        if have != manifest(args.solutions, stubs):
            differ += 1
            print(f"gen_stubs: {man_path} is out of date")
        if differ:
            print(f"gen_stubs: {differ} stub file(s) out of date; run tools/maintenance/gen_stubs.py and commit lessons/ "
                  f"and tests/lesson_manifest.json")
            return 1
        print(f"gen_stubs: all {len(stubs)} stub files match solutions/")
        return 0
    if os.path.abspath(args.out) == os.path.join(root, "lessons"):
        man_path = os.path.join(root, "tests", "lesson_manifest.json")
        text = manifest(args.solutions, stubs)
        if not os.path.exists(man_path) or open(man_path, encoding="utf-8").read() != text:
            with open(man_path, "w", encoding="utf-8") as f:
                f.write(text)
    for rel, text in stubs.items():
        path = os.path.join(args.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if old != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
