#!/usr/bin/env python3
"""Unit tests of the course's own tools (run by CTest as maintainer.tools; stdlib only, plus
matplotlib for the plotting tests, which are skipped without it)."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for sub in ("grading", "maintenance", "bench"):
    sys.path.insert(0, os.path.join(TOOLS, sub))
import audit  # noqa: E402
import gen_stubs  # noqa: E402
import grade  # noqa: E402

SOLUTION = """int f(int x)
{
    if (x < 0) return -1;
    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: double it,
     * then add one. */
    int y = 2 * x;
    return y + 1;
    /* END SOLUTION */
}
__global__ void k(float *p)
{
    /* BEGIN SOLUTION */
    p[0] = 1.0f;
    /* END SOLUTION */
}
"""


class StubGenerator(unittest.TestCase):
    def test_region_becomes_todo_with_hint_and_stub(self):
        out = gen_stubs.stub_text(SOLUTION)
        self.assertIn("/* TODO (about 5 lines): double it,\n     * then add one. */", out)
        self.assertIn("    return ATTN_ERR_NOT_IMPLEMENTED;\n}", out)
        self.assertNotIn("2 * x", out)
        self.assertNotIn("p[0] = 1.0f", out)
        self.assertIn("if (x < 0) return -1;", out)  # code outside regions is kept

    def test_kernel_region_without_stub_statement(self):
        out = gen_stubs.stub_text(SOLUTION)
        self.assertIn("{\n    /* TODO (about 5 lines) */\n}", out)

    def test_malformed_markers_are_errors(self):
        for bad in ["/* BEGIN SOLUTION */\nx;\n", "x;\n/* END SOLUTION */\n",
                    "/* BEGIN SOLUTION */\n/* BEGIN SOLUTION */\n/* END SOLUTION */\n"]:
            with self.assertRaises(gen_stubs.StubError):
                gen_stubs.stub_text(bad)

    def test_file_without_regions_is_copied(self):
        self.assertEqual(gen_stubs.stub_text("int a;\n"), "int a;\n")


class Grader(unittest.TestCase):
    def test_part_points_are_proportional_and_skips_are_not_points(self):
        tests = [("c_part", "a", "PASSED"), ("c_part", "b", "FAILED"), ("cuda_part", "x", "SKIPPED")]
        parts = grade.score_parts(tests, [], {"c_part": 30, "cuda_part": 50, "speed": 20})
        self.assertEqual(parts["c_part"]["points"], 15.0)
        self.assertEqual(parts["cuda_part"]["state"], "skipped")
        self.assertEqual(parts["cuda_part"]["points"], 0.0)

    def test_speed_part_uses_the_reported_score(self):
        tests = [("speed", "s", "FAILED")]
        speed = [{"lesson": "02", "name": "s", "ratio": 3.0, "target": 4.0, "score": 0.5}]
        parts = grade.score_parts(tests, speed, {"speed": 20})
        self.assertEqual(parts["speed"]["points"], 10.0)

    def test_two_speed_tests_average_and_a_silent_failure_scores_zero(self):
        tests = [("speed", "a", "PASSED"), ("speed", "b", "FAILED")]
        speed = [{"name": "a", "ratio": 9.0, "target": 8.0, "score": 1.0}]
        parts = grade.score_parts(tests, speed, {"speed": 30})
        self.assertEqual(parts["speed"]["points"], 15.0)


class Verdicts(unittest.TestCase):
    def test_the_report_is_read_as_it_is(self):
        # the test binary never loads the lesson's code (it runs in a runner process), so Criterion's
        # report is the verdict: passed, failed and skipped stand as reported
        report = {"test_suites": [{"name": "c_part", "tests": [
            {"name": "a", "status": "PASSED"}, {"name": "b", "status": "SKIPPED"},
            {"name": "c", "status": "FAILED", "messages": ["x"]}]}]}
        tests = grade.report_tests(report)
        self.assertEqual([t[2] for t in tests], ["PASSED", "SKIPPED", "FAILED"])
        self.assertEqual(tests[2][3], ["x"])

    def test_parts_decided_before_the_tests_score_zero(self):
        tests = [("c_part", "a", "PASSED"), ("cuda_part", "x", "PASSED"), ("speed", "s", "SKIPPED")]
        parts = grade.score_parts(tests, [], {"c_part": 20, "cuda_part": 50, "speed": 30},
                                  {"cuda_part": ("refused", "uses exit"), "speed": ("refused", "uses exit")})
        self.assertEqual(parts["c_part"]["points"], 20.0)
        self.assertEqual((parts["cuda_part"]["state"], parts["cuda_part"]["points"]), ("refused", 0.0))
        self.assertEqual((parts["speed"]["state"], parts["speed"]["skip_note"]), ("skipped", "refused"))


class TwoCudaFiles(unittest.TestCase):
    """A lesson with two .cu files (lessons 08 and 09: the general kernel and an optional fast path,
    with a .cuh both include): the manifest, the stand-ins, what a file that does not compile costs,
    the descriptor's list of optional files, and where the audit finds the solutions' objects."""

    HEADER = """#include "attn.h"
int l_cpu(const float *q);
int l_cuda(const uint16_t *q, cudaStream_t stream);
int l_fast_cuda(const uint16_t *q, cudaStream_t stream);
"""

    def lesson_tree(self, tmp):
        les = os.path.join(tmp, "solutions", "42_two")
        os.makedirs(les)
        files = {"two.h": self.HEADER,
                 "two.c": "int l_cpu(const float *q)\n{\n    return 0;\n}\n",
                 "two.cu": "#include \"two_common.cuh\"\nint l_cuda(const uint16_t *q, cudaStream_t stream)\n{\n"
                           "    int st = l_fast_cuda(q, stream);\n    return st;\n}\n",
                 "two_fast.cu": "#include \"two_common.cuh\"\nint l_fast_cuda(const uint16_t *q, cudaStream_t stream)\n{\n"
                                "    /* BEGIN SOLUTION stub=\"return ATTN_ERR_NOT_IMPLEMENTED;\" */\n    return 0;\n"
                                "    /* END SOLUTION */\n}\n",
                 "two_common.cuh": "static inline int helper(void)\n{\n    /* BEGIN SOLUTION stub=\"return 1;\" */\n"
                                   "    return 0;\n    /* END SOLUTION */\n}\n"}
        for name, text in files.items():
            with open(os.path.join(les, name), "w") as f:
                f.write(text)
        return os.path.join(tmp, "solutions")

    def test_manifest_maps_each_function_to_its_file_and_lists_the_cuh(self):
        import json
        with tempfile.TemporaryDirectory() as tmp:
            sol = self.lesson_tree(tmp)
            stubs = gen_stubs.generate(sol)
            entry = json.loads(gen_stubs.manifest(sol, stubs))["42_two"]
        self.assertEqual(entry["files"], ["two.c", "two.cu", "two.h", "two_common.cuh", "two_fast.cu"])
        self.assertEqual(list(entry["headers"]), ["two.h"])  # the .cuh is the learner's, not the contract
        self.assertEqual(entry["defined_in"], {"l_cpu": "two.c", "l_cuda": "two.cu", "l_fast_cuda": "two_fast.cu"})
        self.assertIn("TODO", stubs[os.path.join("42_two", "two_common.cuh")])  # its regions become TODOs

    def test_stand_in_of_the_second_cu_file_defines_its_function_only(self):
        entry = {"headers": {"two.h": "x"}, "defined_in": {"l_cpu": "two.c", "l_cuda": "two.cu",
                                                            "l_fast_cuda": "two_fast.cu"},
                 "_protos": {"two.h": audit.prototypes(self.HEADER)}}
        text = grade.stand_in(entry, "two_fast.cu", "does not compile")
        self.assertIn("int l_fast_cuda(const uint16_t *q, cudaStream_t stream)\n{ return ATTN_ERR_NOT_IMPLEMENTED; }",
                      text)
        self.assertNotIn("l_cuda(", text.replace("l_fast_cuda(", ""))

    def test_an_optional_file_that_does_not_compile_costs_nothing(self):
        notes, messages = grade.compile_failures({"two_fast.cu": ["two_fast.cu(3): error: x"]}, {"two_fast.cu"})
        self.assertEqual(notes, {})
        self.assertIn("graded without it", messages[0])
        self.assertIn("two_fast.cu(3): error: x", messages[1])
        parts = grade.score_parts([("cuda_part", "a", "PASSED")], [], {"cuda_part": 50}, notes)
        self.assertEqual(parts["cuda_part"]["points"], 50.0)

    def test_the_general_file_or_a_c_file_that_does_not_compile_costs_its_parts(self):
        notes, messages = grade.compile_failures({"two.cu": ["e"], "two.c": ["two.c does not define l_cpu (x)"]},
                                                 {"two_fast.cu"})
        self.assertEqual(set(notes), {"c_part", "cuda_part", "speed"})
        self.assertEqual(notes["cuda_part"], ("does not compile", "two.cu does not compile"))
        self.assertTrue(any("its tests cannot link" in m for m in messages))
        # both .cu files broken (a .cuh both include): the general one decides
        notes, _ = grade.compile_failures({"two.cu": ["e"], "two_fast.cu": ["e"]}, {"two_fast.cu"})
        self.assertEqual(set(notes), {"cuda_part", "speed"})

    def test_the_descriptors_name_their_optional_files(self):
        import lessons
        for name in lessons.lesson_names():
            d = lessons.descriptor(name)
            for f in d["optional"]:
                self.assertTrue(os.path.exists(os.path.join(os.path.dirname(TOOLS), "solutions", name, f)), f)
        self.assertEqual(lessons.descriptor("09_selected_attention")["optional"], ["selected_window.cu"])
        self.assertEqual(lessons.descriptor("08_topn_selection")["optional"], ["topn_select_g16.cu"])

    def test_the_audit_finds_the_solutions_objects_in_their_object_libraries(self):
        with tempfile.TemporaryDirectory() as tmp:
            for d, name in (("solobj_42_two_cu.dir", "two.cu.o"), ("solobj_42_two_fast_cu.dir", "two_fast.cu.o"),
                            ("stubs_42.dir", "two.cu.o")):
                os.makedirs(os.path.join(tmp, "CMakeFiles", d, "x"))
                open(os.path.join(tmp, "CMakeFiles", d, "x", name), "w").close()
            self.assertEqual(sorted(audit.lesson_objects(tmp, "solutions", "42")), ["two.cu", "two_fast.cu"])
            self.assertEqual(sorted(audit.lesson_objects(tmp, "stubs", "42")), ["two.cu"])


HEADER = """/* a header */
#include "attn.h"
#ifdef __cplusplus
extern "C" {
#endif
/* a comment with f(x); inside */
int lesson_cpu(const attn_shape *shape, const float *q, float *o);
size_t lesson_bytes(const attn_shape *shape);
static inline int helper(int x) { return x; }
typedef int (*fn_t)(int);
int lesson_cuda(const attn_shape *shape, const uint16_t *q, uint16_t *o, cudaStream_t stream);
#ifdef __cplusplus
}
#endif
"""


class Sanitizer(unittest.TestCase):
    """tools/grading/sanitize.py against a stand-in compute-sanitizer (a shell script on PATH): it must stop at
    the first report and kill what it started, and time out on a run that never ends."""

    def run_sanitize(self, script, *args):
        with tempfile.TemporaryDirectory() as d:
            for name, body in (("compute-sanitizer", script), ("nvidia-smi", "exit 0\n")):
                path = os.path.join(d, name)
                with open(path, "w") as f:
                    f.write("#!/bin/sh\n" + body)
                os.chmod(path, 0o755)
            env = dict(os.environ, PATH=d + os.pathsep + os.environ["PATH"])
            pid_file = os.path.join(d, "child.pid")
            env["CHILD_PID_FILE"] = pid_file
            san = os.path.join(TOOLS, "grading", "sanitize.py")
            proc = subprocess.run([sys.executable, san, *args, "test_binary"], capture_output=True, text=True,
                                  env=env, timeout=60)
            child = None
            if os.path.exists(pid_file):
                with open(pid_file) as f:
                    child = int(f.read().strip() or 0)
            return proc, child

    def alive(self, pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
            return f.read().split(")")[-1].split()[0] != "Z"

    def test_stops_at_the_first_race_and_kills_the_test_processes(self):
        script = ('sleep 300 & echo $! > "$CHILD_PID_FILE"\n'
                  'echo "========= COMPUTE-SANITIZER"\n'
                  'echo "========= Error: Race reported between Write access at 0x10 in kernel(int)"\n'
                  'sleep 300\n')
        start = time.monotonic()
        proc, child = self.run_sanitize(script, "--tool", "racecheck", "--expect-errors")
        self.assertEqual(proc.returncode, 0, proc.stdout)
        self.assertIn("Race reported", proc.stdout)
        self.assertLess(time.monotonic() - start, 30)
        self.assertIsNotNone(child)
        time.sleep(0.2)
        self.assertFalse(self.alive(child), "the test process started by the sanitizer was left running")

    def test_a_report_fails_a_run_that_must_be_clean(self):
        script = ('echo "========= Invalid __global__ read of size 4 bytes"\nsleep 300\n')
        proc, _ = self.run_sanitize(script, "--tool", "memcheck")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("stopped at the first report", proc.stdout)

    def test_a_clean_run_passes(self):
        script = ('echo "[====] Synthesis: Tested: 3 | Passing: 3 | Failing: 0 | Crashing: 0"\n'
                  'echo "========= ERROR SUMMARY: 0 errors"\n')
        proc, _ = self.run_sanitize(script, "--tool", "memcheck")
        self.assertEqual(proc.returncode, 0, proc.stdout)
        self.assertIn("clean", proc.stdout)

    def test_skip_kernel_reaches_the_sanitizer_and_the_grader_never_skips(self):
        # the stand-in prints its arguments and reports an error, so sanitize.py shows its output
        script = ('echo "args: $*"\n'
                  'echo "[====] Synthesis: Tested: 1 | Passing: 1 | Failing: 0 | Crashing: 0"\n'
                  'echo "========= ERROR SUMMARY: 1 error"\n')
        proc, _ = self.run_sanitize(script, "--tool", "memcheck", "--skip-kernel", "reference_kernel")
        self.assertEqual(proc.returncode, 1, proc.stdout)
        self.assertIn("--kernel-name-exclude kns=reference_kernel", proc.stdout)
        proc, _ = self.run_sanitize(script, "--tool", "memcheck")
        self.assertIn("args: ", proc.stdout)
        self.assertNotIn("--kernel-name-exclude", proc.stdout)
        # the grader checks learner code: it must not skip any kernel (a learner could name one to match)
        with open(os.path.join(TOOLS, "grading", "grade.py")) as f:
            self.assertNotIn("skip-kernel", f.read())

    def test_a_run_that_does_not_end_times_out(self):
        proc, _ = self.run_sanitize("sleep 300\n", "--tool", "racecheck", "--expect-errors", "--timeout", "1")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("did not finish within 1 s", proc.stdout)


class MemcheckEntries(unittest.TestCase):
    """CMakeLists.txt makes one memcheck entry per CUDA test from the lines that start with
    `ATTN_TEST(cuda_part, NAME`: a CUDA test declared any other way would escape memcheck unseen."""

    def test_every_cuda_test_is_declared_the_way_cmake_reads_it(self):
        import re
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        declared = re.compile(r"\b(?:Test|ParameterizedTest|ATTN_TEST|ATTN_PTEST)\s*\(\s*cuda_part\s*,")
        cmake_reads = re.compile(r"^ATTN_TEST\(cuda_part, *[A-Za-z0-9_]+")
        sys.path.insert(0, TOOLS)
        import lessons
        tests_dir = os.path.join(root, "tests")
        seen = []
        for name in sorted(os.listdir(tests_dir)):
            if not re.match(r"test_\d\d_.*\.c$", name):
                continue
            with open(os.path.join(tests_dir, name)) as f:
                lines = f.read().splitlines()
            found = [ln for ln in lines if declared.search(ln)]
            self.assertTrue(found, "%s: no CUDA test" % name)
            for ln in found:
                self.assertRegex(ln, cmake_reads, "%s: a CUDA test CMake's memcheck entries do not see" % name)
            seen.append(name[len("test_"):-len(".c")])
        self.assertEqual(seen, lessons.lesson_names(root), "every lesson's test file, and only those, was read")
        with open(os.path.join(root, "CMakeLists.txt")) as f:
            self.assertIn('REGEX "^ATTN_TEST\\\\(cuda_part, *[A-Za-z0-9_]+")', f.read())


class SanitizerFilters(unittest.TestCase):
    """The descriptors' compute-sanitizer filters (sanitize.grade: one filter or a list; sanitize.racecheck):
    each must name CUDA tests that exist (a filter that matches nothing makes sanitize.py fail, and with it
    every CUDA part), every lesson must name the test that walks every kernel and path,
    cuda_part/sanitizer_paths, under both tools and define it, and grade.py must run each filter of a list
    under both tools."""

    def setUp(self):
        sys.path.insert(0, TOOLS)
        import lessons
        self.lessons = lessons
        self.root = os.path.dirname(TOOLS)

    def cuda_tests(self, num):
        import re
        names = set()
        for f in os.listdir(os.path.join(self.root, "tests")):
            if re.match(rf"test_{num}_.*\.c$", f):
                with open(os.path.join(self.root, "tests", f)) as fh:
                    names |= set(re.findall(r"^ATTN_TEST\(cuda_part, *([A-Za-z0-9_]+)", fh.read(), re.M))
        return names

    def test_every_filter_names_existing_cuda_tests(self):
        import fnmatch
        descs = self.lessons.descriptors(self.root)
        self.assertEqual(sorted(descs), [name[:2] for name in self.lessons.lesson_names(self.root)])
        self.assertTrue(descs, "no lesson found")
        for num, d in descs.items():
            tests = {f"cuda_part/{n}" for n in self.cuda_tests(num)}
            filters = self.lessons.grade_filters(d) + [d["sanitize"].get("racecheck", "cuda_part/*")]
            for filt in filters:
                self.assertTrue(fnmatch.filter(tests, filt), f"lesson {num}: the sanitizer filter {filt!r} matches no CUDA test")
            self.assertIn("cuda_part/sanitizer_paths", tests, f"lesson {num}: no ATTN_TEST(cuda_part, sanitizer_paths)")
            self.assertEqual(self.lessons.grade_filters(d), ["cuda_part/sanitizer_paths"], f"lesson {num}")
            self.assertEqual(d["sanitize"].get("racecheck"), "cuda_part/sanitizer_paths", f"lesson {num}")

    def test_grade_filters_take_one_filter_or_a_list(self):
        self.assertEqual(self.lessons.grade_filters({"sanitize": {"grade": "cuda_part/a"}}), ["cuda_part/a"])
        self.assertEqual(self.lessons.grade_filters({"sanitize": {"grade": ["cuda_part/a", "cuda_part/b"]}}),
                         ["cuda_part/a", "cuda_part/b"])
        self.assertEqual(self.lessons.grade_filters({}), ["cuda_part/*"])
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "solutions", "01_x"))
            os.makedirs(os.path.join(d, "tests"))
            open(os.path.join(d, "tests", "test_01_x.c"), "w").close()
            for bad in ([], [""], [3], 5, {"a": 1}):
                with open(os.path.join(d, "solutions", "01_x", "lesson.json"), "w") as f:
                    f.write('{"points": {"c_part": 1, "cuda_part": 1, "speed": 0}, "sanitize": {"grade": %s}}'
                            % __import__("json").dumps(bad))
                with self.assertRaises(ValueError, msg=repr(bad)):
                    self.lessons.descriptor("01_x", d)

    def test_grade_runs_every_filter_under_both_tools(self):
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, "calls")
            script = ('echo "$*" >> "%s"\n'
                      'echo "[====] Synthesis: Tested: 1 | Passing: 1 | Failing: 0 | Crashing: 0"\n'
                      'echo "========= ERROR SUMMARY: 0 errors"\n' % log)
            for name, body in (("compute-sanitizer", script), ("nvidia-smi", "exit 0\n")):
                path = os.path.join(d, name)
                with open(path, "w") as f:
                    f.write("#!/bin/sh\n" + body)
                os.chmod(path, 0o755)
            old_path = os.environ["PATH"]
            os.environ["PATH"] = d + os.pathsep + old_path
            try:
                self.assertIsNone(grade.sanitize("test_binary", "01", timeout=30,
                                                 filters=["cuda_part/a", "cuda_part/b"]))
            finally:
                os.environ["PATH"] = old_path
            with open(log) as f:
                calls = f.read().splitlines()
            for tool in ("memcheck", "racecheck"):
                for filt in ("cuda_part/a", "cuda_part/b"):
                    self.assertTrue(any(f"--tool {tool}" in c and f"--filter {filt}" in c for c in calls),
                                    f"{tool} on {filt} did not run: {calls}")


@unittest.skipIf(shutil.which("bash") is None, "bash is needed")
class GpuVerify(unittest.TestCase):
    """tools/maintenance/gpu_verify.sh without a GPU: its syntax, every step documented (in its own help and
    in docs/MAINTAINERS.md's table), and what DRY_RUN=1 prints for the steps that support it: `public` (the
    public checkouts optional), and `session` (the plan, in order, each step under a time limit)."""

    SCRIPT = os.path.join(TOOLS, "maintenance", "gpu_verify.sh")

    def run_script(self, *args, **env):
        with tempfile.TemporaryDirectory() as out:
            full = dict(os.environ, OUT=out, DRY_RUN="1", ATTN_BUILD_DIR="bgpu")
            for k in ("FLA_DIR", "XL_DIR", "MDY_DIR", "SESSION_GRADE"):
                full.pop(k, None)
            full.update(env)
            proc = subprocess.run(["bash", self.SCRIPT, *args], capture_output=True, text=True, env=full, timeout=60)
        return proc.returncode, proc.stdout + proc.stderr

    def steps(self):
        import re
        with open(self.SCRIPT) as f:
            text = f.read()
        body = text[text.index('case "$step" in'):]
        return [m for m in re.findall(r"^  ([a-z_]+)\)$", body, re.M)]

    def test_syntax(self):
        self.assertEqual(subprocess.run(["bash", "-n", self.SCRIPT]).returncode, 0)

    def test_every_step_is_documented(self):
        steps = self.steps()
        self.assertIn("session", steps)
        self.assertIn("public", steps)
        rc, help_text = self.run_script("help")
        self.assertEqual(rc, 2)
        with open(os.path.join(os.path.dirname(TOOLS), "docs", "MAINTAINERS.md")) as f:
            doc = f.read()
        section = doc[doc.index("## Verifying on a GPU machine"):doc.index("## Calibrating speed targets")]
        for step in steps:
            self.assertIn(f"gpu_verify.sh {step} ", help_text, f"the script's help does not describe {step}")
            self.assertIn(f"| `{step}", section, f"docs/MAINTAINERS.md's table has no row for {step}")

    def test_public_runs_the_course_rows_then_the_public_scripts(self):
        rc, out = self.run_script("public")
        self.assertEqual(rc, 0, out)
        lines = [ln for ln in out.splitlines() if ln.startswith("+ ")]
        self.assertIn("bench --lesson 10 --keep-going --csv", lines[0])
        self.assertIn("bench --lesson 11 --keep-going --csv", lines[1])
        self.assertIn("bench_sdpa_decode.py --csv", lines[2])
        self.assertIn("FLA_DIR is not set", out)
        self.assertIn("bench_public_nsa.py and bench_triton_nsa.py skipped", out)
        with tempfile.TemporaryDirectory() as fla:
            rc, out = self.run_script("public", FLA_DIR=fla, XL_DIR=os.path.join(fla, "missing"))
        self.assertEqual(rc, 0, out)
        lines = [ln for ln in out.splitlines() if ln.startswith("+ ")]
        self.assertIn("bench --lesson 10", lines[0])
        self.assertRegex(lines[1], r"bench_public_nsa\.py --fla \S+ --csv (\S+) --join \1 ")
        self.assertRegex(lines[2], r"bench_triton_nsa\.py --fla \S+ --csv ")
        self.assertIn("bench --lesson 11", lines[3])
        self.assertIn("bench_sdpa_decode.py", lines[4])
        self.assertIn("is not a folder: --xl skipped", out)
        with tempfile.TemporaryDirectory() as mdy:
            rc, out = self.run_script("public", MDY_DIR=mdy)
        self.assertEqual(rc, 0, out)
        lines = [ln for ln in out.splitlines() if ln.startswith("+ ")]
        self.assertRegex(lines[1], r"bench_public_nsa\.py --mdy \S+ --csv (\S+) --join \1 ")
        self.assertNotIn("bench_triton_nsa.py", out.split("bench_public_nsa.py --mdy")[1].split("bench --lesson 11")[0])

    def test_session_plan(self):
        rc, out = self.run_script("session", "570", SESSION_GRADE="02,11")
        self.assertEqual(rc, 0, out)
        starts = [ln.split()[2] for ln in out.splitlines() if ln.startswith("=== session: ")]
        self.assertEqual(starts, ["build", "solutions_01", "solutions_10_11", "public", "speed_04", "cheats", "grade",
                                  "solutions_rest", "stubs"])
        limits = [int(ln.split()[2]) for ln in out.splitlines() if ln.startswith("+ timeout ")]
        self.assertEqual(len(limits), len(starts))
        self.assertTrue(all(0 < t <= 570 for t in limits), limits)
        self.assertIn("-DCMAKE_CUDA_ARCHITECTURES=90", out)
        build = [ln for ln in out.splitlines() if ln.startswith("+ cmake --build")][0]
        self.assertIn("--target bench test_01_solutions test_01_stubs", build)
        self.assertNotIn("wrong", build)
        self.assertIn("grade.py solutions --build-dir bgpu --lesson 02 --lesson 11", out)
        self.assertRegex(out, r"ctest .*solutions\\\.\(02\|03\|04\|05\|06\|07\|08\|09\)")
        self.assertIn("--filter 'speed/*'", out)
        self.assertIn("=== session summary", out)

    def test_session_arguments(self):
        rc, out = self.run_script("session", "ten")
        self.assertEqual(rc, 2, out)
        self.assertIn("BUDGET is a number of seconds", out)
        rc, out = self.run_script("session", "20")  # 10 s left after the reserve: not even the build runs
        self.assertEqual(rc, 1, out)
        self.assertIn("build: not run", out)
        self.assertNotIn("=== session: solutions", out)


class Contracts(unittest.TestCase):
    def test_declared_functions_skip_comments_inline_and_typedefs(self):
        self.assertEqual(audit.declared_functions(HEADER), {"lesson_cpu", "lesson_bytes", "lesson_cuda"})

    def test_stand_in_defines_the_files_functions(self):
        entry = {"headers": {"l.h": "x"}, "defined_in": {"lesson_cpu": "l.c", "lesson_bytes": "l.c",
                                                          "lesson_cuda": "l.cu"},
                 "_protos": {"l.h": audit.prototypes(HEADER)}}
        text = grade.stand_in(entry, "l.c", "does not compile")
        self.assertIn('#include "l.h"', text)
        self.assertIn("int lesson_cpu(const attn_shape *shape, const float *q, float *o)\n{ return "
                      "ATTN_ERR_NOT_IMPLEMENTED; }", text)
        self.assertIn("size_t lesson_bytes(const attn_shape *shape)\n{ return 0; }", text)
        self.assertNotIn("lesson_cuda", text)


@unittest.skipIf(shutil.which("gcc") is None or shutil.which("nm") is None, "gcc and binutils are needed")
class Audit(unittest.TestCase):
    def compile(self, code):
        tmp = tempfile.mkdtemp()
        src, obj = os.path.join(tmp, "l.c"), os.path.join(tmp, "l.c.o")
        with open(src, "w") as f:
            f.write(code)
        subprocess.run(["gcc", "-O1", "-c", src, "-o", obj], check=True)
        return obj

    def rules(self, code):
        return [rule for rule, _ in audit.audit_object(self.compile(code), "l.c", {"lesson_cpu"},
                                                       audit.allowed_helpers())]

    def test_clean_code_passes(self):
        self.assertEqual(self.rules("#include <math.h>\nstatic float sq(float x) { return x * x; }\n"
                                    "int lesson_cpu(float *o) { o[0] = sqrtf(sq(o[1])); return 0; }\n"), [])

    def test_each_class_of_hole_is_refused(self):
        self.assertEqual(self.rules("#include <stdlib.h>\nint lesson_cpu(void) { exit(0); }\n"), ["calls"])
        self.assertEqual(self.rules("int helper(void) { return 1; }\nint lesson_cpu(void) { return helper(); }\n"),
                         ["defines"])
        self.assertEqual(self.rules("#include <stdio.h>\n__attribute__((constructor)) static void early(void) "
                                    "{ puts(\"early\"); }\n"
                                    "int lesson_cpu(void) { return 0; }\n"), ["ctors"])
        self.assertEqual(self.rules("int lesson_cpu(void) { __asm__ volatile(\"syscall\"); return 0; }\n"),
                         ["syscalls"])
        self.assertEqual(self.rules("int attn_oracle_forward(void);\nint lesson_cpu(void) "
                                    "{ return attn_oracle_forward(); }\n"), ["calls"])


try:
    import plot  # noqa: E402  (exits when matplotlib is missing)
except SystemExit:
    plot = None

BENCH_CSV = """device,kernel,B,M,N,H,G,D,causal,ms,tflops,gbs,peak_tflops,peak_gbs,frac_peak_flops,frac_peak_bw
"GPU (sm_90, 1 SM)",gqa_bf16,1,8192,8192,64,4,128,1,3.2,343,90,800,3000,0.43,0.03
"GPU (sm_90, 1 SM)",mask_bf16_k100,1,8192,8192,64,4,128,1,3.21,342,89,800,3000,0.43,0.03
"GPU (sm_90, 1 SM)",mask_bf16_k10,1,8192,8192,64,4,128,1,3.21,34,89,800,3000,0.04,0.03
"GPU (sm_90, 1 SM)",blocks_bf16_k100,1,8192,8192,64,4,128,1,3.08,356,93,800,3000,0.45,0.03
"GPU (sm_90, 1 SM)",blocks_bf16_k10,1,8192,8192,64,4,128,1,0.42,262,683,800,3000,0.33,0.23
"GPU (sm_90, 1 SM)",gqa_bf16,1,16384,16384,64,4,128,1,12.5,350,45,800,3000,0.44,0.02
"""


@unittest.skipIf(plot is None, "matplotlib is not installed")
class Plots(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.csv = os.path.join(self.dir.name, "bench.csv")
        with open(self.csv, "w") as f:
            f.write(BENCH_CSV)
        self.args = argparse.Namespace(out=self.dir.name, title=None)

    def tearDown(self):
        self.dir.cleanup()

    def png(self, name):
        path = os.path.join(self.dir.name, name)
        return os.path.isfile(path) and os.path.getsize(path) > 1000

    def test_default_figures(self):
        self.assertEqual(plot.plot_set(plot.read_rows(self.csv), "bench", self.args), 0)
        for kind in ("tflops", "time", "fraction"):
            self.assertTrue(self.png(f"bench_{kind}.png"), kind)

    def test_keep_figure_parses_the_percent_suffix(self):
        rows = plot.read_rows(self.csv)
        self.assertEqual(plot.KEEP_SUFFIX.match("blocks_bf16_k10").groups(), ("blocks_bf16", "10"))
        self.assertIsNone(plot.KEEP_SUFFIX.match("window_bf16_w512"))
        self.assertEqual(plot.plot_keep(rows, "bench", self.args), 0)  # N = 16k has no _k kernel: no panel
        self.assertTrue(self.png("bench_keep.png"))

    def test_nsa_figure(self):
        path = os.path.join(self.dir.name, "nsa.csv")
        with open(path, "w") as f:
            f.write("device,config,stage,N,ms,tflops\n")
            for config in ("mean", "paper"):
                for i, n in enumerate((8192, 16384, 32768, 65536)):
                    for stage in ("compress", "cmp_attention", "select", "cmp_plus_select", "selected_attention",
                                  "dense"):
                        f.write(f'"GPU (sm_90, 1 SM)",{config},{stage},{n},{0.1 * (i + 1) ** 2},100\n')
        self.assertEqual(plot.plot_nsa(plot.read_nsa_rows(path), "nsa", self.args), 0)
        self.assertTrue(self.png("nsa_time.png"))

    def test_nsa_figure_from_the_benchmark(self):
        # bench --suite nsa: the stage is the entry, rows without a configuration go into every panel
        path = os.path.join(self.dir.name, "suite.csv")
        header = ("device,lesson,entry,kernel,role,baseline,B,M,N,H,G,D,causal,window,keep,config,ms,tflops,gbs,"
                  "peak_tflops,peak_gbs,frac_peak_flops,frac_peak_bw,speedup,check\n")
        with open(path, "w") as f:
            f.write(header)
            for i, n in enumerate((8192, 65536)):
                for entry, config in (("frozen_flash_bf16", ""), ("window_bf16", ""), ("compress", "mean"),
                                      ("cmp_attention", "mean"), ("selected_attention", "paper")):
                    kernel = entry + (f"_{config}" if config else "")
                    f.write(f'"GPU (sm_90, 1 SM)",07,{entry},{kernel},solution,,1,{n},{n},64,4,128,1,,,{config},'
                            f'{0.1 * (i + 1) ** 2},100,,800,3000,0.1,,,ok\n')
        rows = plot.read_nsa_rows(path)
        self.assertEqual({r["stage"] for r in rows}, {"dense", "window_bf16", "compress", "cmp_attention",
                                                      "selected_attention"})
        self.assertEqual(plot.plot_nsa(rows, "suite", self.args), 0)
        self.assertTrue(self.png("suite_time.png"))
        self.assertEqual(plot.plot_set(plot.read_rows(path), "suite", self.args), 0)  # the general figures too
        self.assertTrue(self.png("suite_time.png"))

    def test_keep_figure_needs_keep_kernels(self):
        rows = [r for r in plot.read_rows(self.csv) if r["kernel"] == "gqa_bf16"]
        self.assertEqual(plot.plot_keep(rows, "dense", self.args), 1)
        self.assertFalse(self.png("dense_keep.png"))


if __name__ == "__main__":
    unittest.main()
