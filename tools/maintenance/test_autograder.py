#!/usr/bin/env python3
"""End-to-end test of the Gradescope autograder in autograder/ (setup.sh and run_autograder).

Makes a fake /autograder tree in a temporary folder: source/ (a copy of this checkout's tracked
files plus untracked files that git does not ignore), submission/ and results/. Runs setup.sh
(building only lesson 01) and then run_autograder on several submissions:

  - where the files are found: a whole clone, a lessons/ folder, a loose NN_name/ folder, loose
    files; a changed header, an extra file and a symbolic link are never copied; a lesson with two
    .cu files and a .cuh (lesson 08) has them all copied (copy-only runs)
  - a solved lesson 01 (the solutions' .c/.cu files as a student's lessons/): full points in the
    C part; the CUDA part skipped without a GPU, full points with one
  - the stubs (lessons/01 as handed out): 0 points
  - a .c file that does not compile: 0 points and the compiler's error in the output
  - no course checkout at all: a results.json with score 0 and the reason
  - a submission that #includes the reference solution: 0 points (setup.sh hid the solutions)

Grading is restricted to lesson 01 (ATTN_GRADE_ARGS) to keep it to a few minutes on 2 cores.
Exit status: 0 pass, 1 fail, 77 skipped (nvcc, cmake, Criterion or git missing).
Set ATTN_KEEP_TMP=1 to keep the temporary folder.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LESSON = "01_naive_attention"
SKIP = 77
FAILURES = []


def say(msg):
    print(f"[test_autograder] {msg}", flush=True)


def check(cond, msg):
    if cond:
        print(f"  ok    {msg}", flush=True)
    else:
        print(f"  FAIL  {msg}", flush=True)
        FAILURES.append(msg)
    return cond


def prerequisites():
    missing = []
    if not shutil.which("nvcc") and not os.access("/usr/local/cuda/bin/nvcc", os.X_OK):
        missing.append("nvcc")
    for tool in ("cmake", "git", "make"):
        if not shutil.which(tool):
            missing.append(tool)
    prefixes = ["/usr", "/usr/local"] + [p for p in os.environ.get("CMAKE_PREFIX_PATH", "").split(":") if p]
    if not any(os.path.isfile(os.path.join(p, "include", "criterion", "criterion.h")) for p in prefixes):
        missing.append("Criterion")
    if not os.path.isdir(os.path.join(ROOT, ".git")) and not os.path.isfile(os.path.join(ROOT, ".git")):
        missing.append("a git checkout")
    return missing


def has_gpu():
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def copy_checkout(dest):
    """The course's tracked files plus untracked-but-not-ignored ones (work in progress)."""
    names = set()
    for extra in ([], ["--others", "--exclude-standard"]):
        out = subprocess.run(["git", "ls-files", "-z"] + extra, cwd=ROOT, capture_output=True, check=True).stdout
        names.update(n for n in out.decode().split("\0") if n)
    for name in sorted(names):
        src = os.path.join(ROOT, name)
        if not os.path.lexists(src) or os.path.isdir(src):
            continue  # deleted in the working tree, or a submodule
        dst = os.path.join(dest, name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)


def reset_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def run(cmd, env, log, timeout=1800):
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", timeout=timeout)
    with open(log, "w") as f:
        f.write(proc.stdout)
    say(f"  {os.path.basename(cmd[-1])}: exit {proc.returncode} in {time.time() - t0:.0f} s (log: {log})")
    return proc


class Autograder:
    def __init__(self, tmp, gpu):
        self.tmp = tmp
        self.root = os.path.join(tmp, "autograder")
        self.source = os.path.join(self.root, "source")
        self.submission = os.path.join(self.root, "submission")
        self.results = os.path.join(self.root, "results", "results.json")
        self.pristine = os.path.join(tmp, "pristine_lessons")
        self.gpu = gpu
        self.runs = 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATTN_") and k != "AUTOGRADER_ROOT"}
        env["AUTOGRADER_ROOT"] = self.root
        if not env.get("PATH", "").startswith("/usr/local/cuda/bin") and os.path.isdir("/usr/local/cuda/bin"):
            env["PATH"] = "/usr/local/cuda/bin:" + env.get("PATH", "")
        self.env = env

    def make(self):
        copy_checkout(self.source)
        shutil.copytree(os.path.join(self.source, "lessons"), self.pristine)
        # Gradescope copies run_autograder from the zip's root to /autograder/run_autograder
        shutil.copy2(os.path.join(self.source, "autograder", "run_autograder"), os.path.join(self.root, "run_autograder"))
        os.makedirs(self.submission)
        os.makedirs(os.path.dirname(self.results))

    def setup(self):
        env = dict(self.env, ATTN_SETUP_LESSONS="01")
        if not self.gpu:
            env["ATTN_CUDA_ARCH"] = "90"  # nothing runs on a GPU here: one architecture, faster
        return run(["bash", os.path.join(self.source, "autograder", "setup.sh")], env,
                   os.path.join(self.tmp, "setup.log"))

    def grade(self, name, copy_only=False, grade_args="", env_extra=None):
        """Restore the course's lessons/ (a fresh container), then run run_autograder."""
        shutil.rmtree(os.path.join(self.source, "lessons"))
        shutil.copytree(self.pristine, os.path.join(self.source, "lessons"), copy_function=shutil.copyfile)
        if os.path.exists(self.results):
            os.remove(self.results)
        env = dict(self.env)
        if copy_only:
            env["ATTN_AUTOGRADER_COPY_ONLY"] = "1"
        if grade_args:
            env["ATTN_GRADE_ARGS"] = grade_args
        env.update(env_extra or {})
        say(f"run_autograder: {name}")
        run(["sh", os.path.join(self.root, "run_autograder")], env, os.path.join(self.tmp, f"run_{name}.log"))
        try:
            with open(self.results) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            check(False, f"{name}: results.json exists and is valid JSON ({e})")
            return None
        check(isinstance(data, dict) and "score" in data, f"{name}: results.json is valid, with a score")
        return data

    def course_file(self, f):
        return os.path.join(self.source, "lessons", LESSON, f)


def tests_by_name(data):
    return {t.get("name"): t for t in data.get("tests", [])} if data else {}


def main():
    missing = prerequisites()
    if missing:
        say(f"skipped: missing {', '.join(missing)}")
        return SKIP
    gpu = has_gpu()
    tmp = tempfile.mkdtemp(prefix="attn_autograder_")
    say(f"fake autograder in {tmp} ({'with' if gpu else 'without'} a GPU)")
    ag = Autograder(tmp, gpu)
    t_start = time.time()
    try:
        ag.make()
        sol_dir = os.path.join(ag.source, "solutions", LESSON)
        learner_files = sorted(f for f in os.listdir(os.path.join(ag.pristine, LESSON)) if f.endswith((".c", ".cu")))
        header = [f for f in os.listdir(os.path.join(ag.pristine, LESSON)) if f.endswith(".h")][0]
        solution = {f: read(os.path.join(sol_dir, f)) for f in learner_files}
        stub = {f: read(os.path.join(ag.pristine, LESSON, f)) for f in learner_files}
        check(learner_files and all(solution[f] != stub[f] for f in learner_files),
              f"lesson 01 has learner files {learner_files} whose stubs differ from the solutions")

        def put_solution(folder, with_header=True):
            for f in learner_files:
                write(os.path.join(folder, f), solution[f].decode())
            if with_header:
                shutil.copyfile(os.path.join(ag.pristine, LESSON, header), os.path.join(folder, header))
                shutil.copyfile(os.path.join(ag.pristine, LESSON, "README.md"), os.path.join(folder, "README.md"))

        def copied_solution(name):
            return check(all(read(ag.course_file(f)) == solution[f] for f in learner_files),
                         f"{name}: the solution files were copied into the course")

        # ---------------------------------------------------------------- before set-up
        say("no course checkout: a results file with score 0 and the reason")
        empty_root = os.path.join(tmp, "empty_root")
        os.makedirs(empty_root)
        env = dict(ag.env, AUTOGRADER_ROOT=empty_root)
        run(["sh", os.path.join(ag.root, "run_autograder")], env, os.path.join(tmp, "run_no_course.log"))
        try:
            with open(os.path.join(empty_root, "results", "results.json")) as f:
                data = json.load(f)
            check(data.get("score") == 0 and "no course checkout" in data.get("output", ""),
                  "no course: score 0 and the reason in the output")
        except (OSError, ValueError) as e:
            check(False, f"no course: results.json written ({e})")

        # ---------------------------------------------------------------- where files are found
        reset_dir(ag.submission)
        clone = os.path.join(ag.submission, "course-main")
        put_solution(os.path.join(clone, "lessons", LESSON))
        for f in learner_files:  # a decoy: solutions/ in a clone is never used
            write(os.path.join(clone, "solutions", LESSON, f), "#error not this one\n")
        write(os.path.join(clone, "course"), "#!/bin/sh\n")
        data = ag.grade("layout_clone", copy_only=True)
        copied_solution("whole clone in a folder")

        reset_dir(ag.submission)
        put_solution(os.path.join(ag.submission, "lessons", LESSON))
        ag.grade("layout_lessons", copy_only=True)
        copied_solution("lessons/ folder")

        reset_dir(ag.submission)
        put_solution(os.path.join(ag.submission, LESSON), with_header=False)
        ag.grade("layout_loose_folder", copy_only=True)
        copied_solution("loose lesson folder")

        reset_dir(ag.submission)
        put_solution(ag.submission, with_header=False)
        ag.grade("layout_loose_files", copy_only=True)
        copied_solution("loose files")

        say("a changed header, an extra file and a symbolic link are not copied")
        reset_dir(ag.submission)
        folder = os.path.join(ag.submission, "lessons", LESSON)
        put_solution(folder)
        with open(os.path.join(folder, header), "a") as f:
            f.write("\n#define I_CHANGED_THE_CONTRACT 1\n")
        write(os.path.join(folder, "helper.c"), "int helper(void) { return 1; }\n")
        write(os.path.join(folder, "notes.txt"), "my notes\n")
        data = ag.grade("header_extra", copy_only=True)
        copied_solution("changed header and extra file")
        check(read(ag.course_file(header)) == read(os.path.join(ag.pristine, LESSON, header)),
              "changed header: the course's header is unchanged")
        check(not os.path.exists(ag.course_file("helper.c")) and not os.path.exists(ag.course_file("notes.txt")),
              "extra files: not copied into the course")
        out = (data or {}).get("output", "")
        check(f"changed {os.path.join('lessons', LESSON, header)}" in out and "extra file" in out and "helper.c" in out,
              "changed header and extra file: both named in the output")

        say("a lesson with two .cu files and a .cuh both include (lesson 08): all of them are copied")
        reset_dir(ag.submission)
        two = "08_topn_selection"
        two_files = sorted(f for f in os.listdir(os.path.join(ag.pristine, two)) if f.endswith((".c", ".cu", ".cuh")))
        check(sum(f.endswith(".cu") for f in two_files) == 2 and any(f.endswith(".cuh") for f in two_files),
              f"lesson 08 has two .cu files and a .cuh ({two_files})")
        two_solution = {f: read(os.path.join(ag.source, "solutions", two, f)) for f in two_files}
        for f in two_files:
            write(os.path.join(ag.submission, "lessons", two, f), two_solution[f].decode())
        ag.grade("two_cu_files", copy_only=True)
        check(all(read(os.path.join(ag.source, "lessons", two, f)) == two_solution[f] for f in two_files),
              "two .cu files and a .cuh: every one copied into the course")
        check(set(os.listdir(os.path.join(ag.source, "lessons", LESSON))) == set(os.listdir(os.path.join(ag.pristine, LESSON))),
              "the course's lesson folder holds exactly its own files")

        reset_dir(ag.submission)
        folder = os.path.join(ag.submission, "lessons", LESSON)
        os.makedirs(folder)
        for f in learner_files:
            os.symlink(os.path.join(sol_dir, f), os.path.join(folder, f))
        data = ag.grade("symlink", copy_only=True)
        check(all(read(ag.course_file(f)) == stub[f] for f in learner_files),
              "symbolic links: not followed, the stubs stay")
        check("symbolic link" in (data or {}).get("output", ""), "symbolic links: named in the output")

        reset_dir(ag.submission)
        write(os.path.join(ag.submission, "answer.txt"), "hello\n")
        data = ag.grade("nothing", copy_only=True)
        check("No lesson files were found" in (data or {}).get("output", ""), "no lesson files: said so in the output")

        # ---------------------------------------------------------------- set-up (the image build)
        say("setup.sh (configure, build the harness and lesson 01: a few minutes)")
        proc = ag.setup()
        if not check(proc.returncode == 0, "setup.sh succeeds"):
            print(proc.stdout[-3000:])
            return 1
        check(all(read(os.path.join(sol_dir, f)) != solution[f] for f in learner_files),
              "setup.sh: the solutions' code is no longer in the autograder's checkout")
        cuh = os.path.join("08_topn_selection", "topn_common.cuh")  # holds code the learner writes
        check(read(os.path.join(ag.source, "solutions", cuh)) == read(os.path.join(ag.pristine, cuh)),
              "setup.sh: a lesson's .cuh is replaced by its stub too")
        grade_args = "--lesson 01"
        with open(os.path.join(ag.source, "tools", "grading", "grade.py")) as f:
            if "--no-sanitize" in f.read():
                grade_args += " --no-sanitize"

        # ---------------------------------------------------------------- graded submissions
        reset_dir(ag.submission)
        put_solution(os.path.join(ag.submission, "lessons", LESSON))
        data = ag.grade("solved", grade_args=grade_args)
        tests = tests_by_name(data)
        c, cuda = tests.get("Lesson 01 C part"), tests.get("Lesson 01 CUDA part")
        check(c is not None and cuda is not None, f"solved: one test per part (got {sorted(tests)})")
        check(not any(re.match(r"Lesson \d\d ", n) and not n.startswith("Lesson 01 ") for n in tests),
              "solved: only lesson 01 graded")
        if c:
            check(c.get("max_score") == 40 and c.get("score") == 40, f"solved: C part 40 / 40 (got {c.get('score')})")
        if cuda:
            if gpu:
                check(cuda.get("score") == cuda.get("max_score") == 60,
                      f"solved: CUDA part 60 / 60 on this GPU (got {cuda.get('score')})")
            else:
                check(cuda.get("score") == 0 and "skipped" in cuda.get("output", ""),
                      "solved: CUDA part skipped without a GPU")
        check("Graded files:" in (data or {}).get("output", ""), "solved: the output lists the graded files")

        reset_dir(ag.submission)
        shutil.copytree(os.path.join(ag.pristine, LESSON), os.path.join(ag.submission, "lessons", LESSON))
        data = ag.grade("stubs", grade_args=grade_args)
        tests = tests_by_name(data)
        c, cuda = tests.get("Lesson 01 C part"), tests.get("Lesson 01 CUDA part")
        check(c is not None and cuda is not None, f"stubs: one test per part (got {sorted(tests)})")
        check(data is not None and data.get("score") == 0, f"stubs: score 0 (got {(data or {}).get('score')})")
        if c:
            check(c.get("score") == 0 and c.get("status") == "failed", "stubs: C part 0 points, failed")
        if cuda:
            check(cuda.get("score") == 0, "stubs: CUDA part 0 points")

        reset_dir(ag.submission)
        put_solution(os.path.join(ag.submission, "lessons", LESSON))
        c_file = [f for f in learner_files if f.endswith(".c")][0]
        with open(os.path.join(ag.submission, "lessons", LESSON, c_file), "a") as f:
            f.write("\nthis line does not compile\n")
        data = ag.grade("compile_error", grade_args=grade_args)
        tests = tests_by_name(data)
        c, cuda = tests.get("Lesson 01 C part"), tests.get("Lesson 01 CUDA part")
        check(c is not None and c.get("score") == 0 and re.search("compile|build", c.get("output", "")) is not None,
              "does not compile: the C part gets 0 and says so")
        # the parts are graded apart: the C file that does not compile costs the C part only, and the
        # untouched CUDA solution keeps its points where a GPU can run it (without one it is skipped)
        want = 60 if gpu else 0
        check(cuda is not None and cuda.get("score") == want,
              f"does not compile: the CUDA part still gets {want} (got {(cuda or {}).get('score')})")
        check(data is not None and data.get("score") == want,
              f"does not compile: score {want} in all (got {(data or {}).get('score')})")

        say("a submission that includes the reference solution gets nothing from it")
        reset_dir(ag.submission)
        for f in learner_files:
            write(os.path.join(ag.submission, "lessons", LESSON, f), f'#include "../../solutions/{LESSON}/{f}"\n')
        data = ag.grade("include_solution", grade_args=grade_args)
        check(data is not None and data.get("score") == 0,
              f"including solutions/: score 0 (got {(data or {}).get('score')})")
    finally:
        say(f"{time.time() - t_start:.0f} s in all")
        if FAILURES or os.environ.get("ATTN_KEEP_TMP"):
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        say(f"{len(FAILURES)} check(s) failed:")
        for f in FAILURES:
            print("  " + f)
        return 1
    say("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
