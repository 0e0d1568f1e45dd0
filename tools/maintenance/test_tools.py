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
    def test_a_pass_without_its_completion_record_is_a_failure(self):
        report = {"test_suites": [{"name": "c_part", "tests": [
            {"name": "a", "status": "PASSED"}, {"name": "b", "status": "PASSED"},
            {"name": "c", "status": "FAILED", "messages": ["x"]}]}]}
        tests = grade.merge_verdicts(report, {"c_part/a"})
        self.assertEqual([t[2] for t in tests], ["PASSED", "FAILED", "FAILED"])
        self.assertIn("ended before", tests[1][3][0])

    def test_a_skip_without_its_skip_record_is_a_failure(self):
        # lesson code can make Criterion's runner record a skip (a message on its socket): only the
        # harness's own skips, recorded as "skip:suite/name" before they happen, count as skipped
        report = {"test_suites": [{"name": "cuda_part", "tests": [
            {"name": "a", "status": "SKIPPED"}, {"name": "b", "status": "SKIPPED"}]}]}
        tests = grade.merge_verdicts(report, {"skip:cuda_part/a", "cuda_part/b"})
        self.assertEqual([t[2] for t in tests], ["SKIPPED", "FAILED"])
        self.assertIn("did not skip it", tests[1][3][0])
        parts = grade.score_parts(tests, [], {"cuda_part": 50})
        self.assertEqual((parts["cuda_part"]["passed"], parts["cuda_part"]["total"]), (0, 1))

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
        tests_dir = os.path.join(root, "tests")
        lessons = 0
        for name in sorted(os.listdir(tests_dir)):
            if not re.match(r"test_\d\d_.*\.c$", name):
                continue
            with open(os.path.join(tests_dir, name)) as f:
                lines = f.read().splitlines()
            found = [ln for ln in lines if declared.search(ln)]
            self.assertTrue(found, "%s: no CUDA test" % name)
            for ln in found:
                self.assertRegex(ln, cmake_reads, "%s: a CUDA test CMake's memcheck entries do not see" % name)
            lessons += 1
        self.assertGreaterEqual(lessons, 9)
        with open(os.path.join(root, "CMakeLists.txt")) as f:
            self.assertIn('REGEX "^ATTN_TEST\\\\(cuda_part, *[A-Za-z0-9_]+")', f.read())


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

    def test_keep_figure_needs_keep_kernels(self):
        rows = [r for r in plot.read_rows(self.csv) if r["kernel"] == "gqa_bf16"]
        self.assertEqual(plot.plot_keep(rows, "dense", self.args), 1)
        self.assertFalse(self.png("dense_keep.png"))


class ClusterProtocol(unittest.TestCase):
    """tools/bench/cluster_protocol.py: the ring protocol of window_cluster.cuh under random orders."""

    def setUp(self):
        sys.path.insert(0, os.path.join(TOOLS, "bench"))
        import cluster_protocol
        self.cp = cluster_protocol
        self.cp.MUTATION = None

    def tearDown(self):
        self.cp.MUTATION = None

    def test_the_protocol_holds(self):
        for cluster, stages in ((2, 1), (2, 2), (4, 4), (4, 1)):
            self.cp.run(120, cluster * 10 + stages, stages, cluster)  # raises Fail on any broken check

    def test_known_wrong_protocols_fail(self):
        for mutation, cluster in (("first_issues", 2), ("early_refill", 2), ("own_order", 2), ("no_parity", 2),
                                  ("first_issues", 4), ("lone_mask", 4)):
            self.cp.MUTATION = mutation
            with self.assertRaises(self.cp.Fail, msg="%s, clusters of %d" % (mutation, cluster)):
                self.cp.run(120, 1, 2, cluster)

    def test_the_kernel_still_has_what_the_model_transcribes(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(os.path.join(root, "tools", "bench", "window_cluster.cuh")) as f:
            text = f.read()
        for line in ("const int lo = c2 == c ? x : lower_bound(allblk + c2 * kWinKeys, nus[c2], want);",
                     "const bool canonical = __popc(m) >= 2 && (m & ((1u << c) - 1u)) == 0;",
                     "gidx += pc[c2 * (kWinKeys + 1) + lower_bound(allblk + c2 * kWinKeys, nus[c2], want)];",
                     "const int st = kPriv + gidx % kSh;",
                     "if ((((old >> shift) & 15u) | (1u << rank)) == mask) copy4(st, u, (uint16_t)mask);",
                     "const int st = p % kPriv, u = priv_u[p];",
                     "if ((run + __popc(bal & ((1u << lane) - 1u))) & 1) code[u] = c | kCodeParity;",
                     "if (shd && cr.nxt[u] != 0xff) cr.issue_shared(cr.nxt[u]);",
                     "else if (!shd && idx + kPriv < np) cr.issue_private(idx + kPriv);",
                     "const unsigned parity = shd ? (c & kCodeParity ? 1u : 0u) : (unsigned)(idx / kPriv) & 1u;",
                     "if (atomicSub(&cr.left[st], 1) == 1) {"):
            self.assertIn(line, text)


class WindowVariants(unittest.TestCase):
    """tools/bench/window_variants.py: the experimental edits still apply to lesson 09's fast path
    (solutions/09_selected_attention/selected_window.cu, where the window kernel lives)."""

    def setUp(self):
        sys.path.insert(0, os.path.join(TOOLS, "bench"))
        import window_variants
        self.wv = window_variants
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(os.path.join(root, "solutions", "09_selected_attention", "selected_window.cu")) as f:
            self.kernel = f.read()

    def test_the_combinations_of_window_profile_apply(self):
        for names in (["profile"], ["prefetch"], ["early"], ["early", "profile"], ["early", "prefetch"]):
            text = self.wv.apply(self.kernel, names)
            self.assertNotEqual(text, self.kernel, names)
            if "profile" in names:
                self.assertIn("[prof]", text)
            q_wait = "cp_async_wait_all();\n    __syncwarp(); /* the warp's Q has landed */"
            self.assertIn(q_wait, self.kernel)
            if "early" in names:
                self.assertNotIn(q_wait, text)

    def test_a_missing_anchor_is_named(self):
        with self.assertRaises(SystemExit) as cm:
            self.wv.apply("int main() { return 0; }", ["early"])
        self.assertIn("anchor found 0 times", str(cm.exception))

    def test_stream_puts_the_header_in_place_of_the_kernel(self):
        text = self.wv.apply(self.kernel, ["early", "stream"])
        self.assertIn('#include "../../tools/bench/window_stream.cuh"', text)
        self.assertNotIn("selected_window_kernel(const __grid_constant__", text)  # the kernel is gone
        self.assertIn("kStreamSmem", text)
        self.assertNotIn("kWinSmem, stream>>>", text)
        self.assertIn("window_path_refusal", text)  # the launcher stays

    def test_cluster_replaces_the_ring_and_keeps_the_union(self):
        text = self.wv.apply(self.kernel, ["cluster"])
        self.assertIn('#include "../../tools/bench/window_cluster.cuh"', text)
        self.assertIn("__global__ void __cluster_dims__(kCl, 1, 1) __launch_bounds__(kWinThreads, 1)", text)
        self.assertIn("/* the union index of each sorted entry:", text)  # the committed union stays
        self.assertIn("const int np = cluster_match(smem, nu, crank);", text)
        self.assertNotIn("for (int u = 0; u < min(nu, kRing); ++u)", text)  # the committed ring is gone
        self.assertNotIn("if (!active) return;", text)  # every warp reaches the cluster barrier
        self.assertIn("kClusterSmem, stream>>>", text)
        self.assertIn("/ kCl * kCl; /* whole clusters */", text)  # the grid holds whole clusters

    def test_a_region_whose_end_comes_first_is_refused(self):
        self.wv.EDITS["_test"] = [("B", "A", "x")]
        try:
            with self.assertRaises(SystemExit) as cm:
                self.wv.apply("A B", ["_test"])
            self.assertIn("end comes before its start", str(cm.exception))
            self.wv.EDITS["_test"] = [("A", "B", "x ")]  # start included, end not
            self.assertEqual(self.wv.apply("0 A 1 B 2", ["_test"]), "0 x B 2")
        finally:
            del self.wv.EDITS["_test"]

    @unittest.skipIf(shutil.which("nvcc") is None, "nvcc is needed")
    def test_the_variants_compile_for_sm_90(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        builds = ((["early", "stream"], []), (["early", "stream"], ["-DATTN_WIN_PER_BLOCK=3", "-DATTN_WIN_ORDER=0"]),
                  (["early", "stream"], ["-DATTN_WIN_PER_BLOCK=1", "-DATTN_WIN_LOOKAHEAD=1"]),
                  (["early", "stream"], ["-DATTN_WIN_NOCOMPUTE=1"]),
                  (["early", "stream"], ["-DATTN_WIN_PER_BLOCK=2", "-DATTN_WIN_JOINT=1"]),
                  (["early", "stream"], ["-DATTN_WIN_PER_BLOCK=2", "-DATTN_WIN_JOINT=1", "-DATTN_WIN_NOCOMPUTE=1"]),
                  (["early", "profile"], ["-DATTN_WIN_PROFILE"]), (["prefetch"], ["-DATTN_WIN_PREFETCH=132"]),
                  (["cluster"], []), (["cluster"], ["-DATTN_WIN_CLUSTER=4", "-DATTN_WIN_NOCOMPUTE=1"]),
                  (["split"], []), (["split"], ["-DATTN_WIN_SPLIT=4"]),
                  (["early", "stream"], ["-DATTN_WIN_PER_BLOCK=2", "-DATTN_WIN_JOINT=1", "-DATTN_WIN_QSMEM=1",
                                         "-DATTN_WIN_STAGES=5"]),
                  (["early", "stream"], ["-DATTN_WIN_PER_BLOCK=2", "-DATTN_WIN_JOINT=1", "-DATTN_WIN_NOCOMPUTE=1",
                                         "-DATTN_WIN_STAGES=5"]))
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "solutions", "09_selected_attention"))
            os.makedirs(os.path.join(tmp, "tools", "bench"))
            for header in ("window_stream.cuh", "window_cluster.cuh"):
                shutil.copy(os.path.join(root, "tools", "bench", header), os.path.join(tmp, "tools", "bench"))
            src = os.path.join(tmp, "solutions", "09_selected_attention", "selected_window.cu")
            for names, flags in builds:
                with open(src, "w") as f:
                    f.write(self.wv.apply(self.kernel, names))
                cmd = ["nvcc", "-std=c++17", "-arch=sm_90", "-c", src, "-o", os.path.join(tmp, "k.o"),
                       "-I" + os.path.join(root, "common"), "-I" + os.path.join(root, "lessons", "09_selected_attention"),
                       "-diag-suppress=177"] + flags
                r = subprocess.run(cmd, capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, "%s %s:\n%s" % (names, flags, r.stderr[-3000:]))


class WindowModel(unittest.TestCase):
    """tools/bench/window_model.py: the ring's timing on cases worked out by hand."""

    def setUp(self):
        sys.path.insert(0, os.path.join(TOOLS, "bench"))
        import window_model
        self.wm = window_model

    def test_one_tile(self):
        self.assertAlmostEqual(self.wm.run_ring([[[5]]], 7, 2.0, 1.0), 3.0)

    def test_a_full_ring_waits_for_the_last_user(self):
        # one warp, 3 tiles, 2 stages: tile 2 is issued when tile 0 is done (t = 3), lands at 5, done at 6
        self.assertAlmostEqual(self.wm.run_ring([[[0, 1, 2]]], 2, 2.0, 1.0), 6.0)
        # two warps share tile 0 and each has one more: both compute at once
        self.assertAlmostEqual(self.wm.run_ring([[[0, 1], [0, 2]]], 7, 2.0, 1.0), 4.0)

    def test_parts_released_early(self):
        # --parts 2 (the edit split): one warp, tiles 0 and 1 as parts 0-3, one tile's worth of stages
        # (2 parts). K0 is done at 2.5 and sends K1 (lands 4.5), V0 at 3.0 sends V1 (lands 5.0): done at
        # 5.5, where the whole tile in one stage gives 6.0 (tile 1 sent only when tile 0 is done)
        self.assertAlmostEqual(self.wm.run_ring([[[0, 1, 2, 3]]], 2, 2.0, 0.5), 5.5)
        self.assertAlmostEqual(self.wm.run_ring([[[0, 1]]], 1, 2.0, 1.0), 6.0)

    def test_two_positions_per_warp(self):
        # one warp serves both lists: its entries 0, 1, 1 in ring order, one after the other (2-3, 3-4, 4-5);
        # two warps (one position each) compute tile 1 side by side and are done at 4
        self.assertAlmostEqual(self.wm.run_ring([[[0, 1], [1]]], 7, 2.0, 1.0, ppw=2), 5.0)
        self.assertAlmostEqual(self.wm.run_ring([[[0, 1], [1]]], 7, 2.0, 1.0), 4.0)
        # warp w takes lists w and w + 2 of four: warp 0 lists 0 and 2 (tiles 0, 2), warp 1 lists 1 and 3
        # (tile 1 twice). One stage: tile 0 lands at 2 and is done at 3, tile 1 lands at 5, warp 1
        # computes it twice (5-7), tile 2 lands at 9 and is done at 10
        self.assertAlmostEqual(self.wm.run_ring([[[0], [1], [2], [1]]], 1, 2.0, 1.0, ppw=2), 10.0)

    def test_streaming_beats_separate_windows_on_a_fixed_draw(self):
        import random
        rng = random.Random(1)
        windows = [self.wm.window_lists(rng.randrange(1, 1025), rng) for _ in range(5)]
        separate = sum(self.wm.run_ring([w], 7, 2.0, 1.0) for w in windows)
        self.assertLessEqual(self.wm.run_ring(windows, 7, 2.0, 1.0), separate + 1e-9)

    def test_a_rate_limit_spaces_the_landings(self):
        # one warp, 3 tiles: they land at 2, 3.5 and 5 when 1.5 µs apart, and are done at 6 (5 without)
        self.assertAlmostEqual(self.wm.run_ring([[[0, 1, 2]]], 7, 2.0, 1.0), 5.0)
        self.assertAlmostEqual(self.wm.run_ring([[[0, 1, 2]]], 7, 2.0, 1.0, gap=1.5), 6.0)
        # a refill lands no earlier than gap after the landing before it: 2 stages, tile 2 issued at 3
        # lands at max(3 + 2, 2.5 + 0.5) = 5; with a gap of 4, tile 1 lands at 6 and tile 2 at 6 + 4
        self.assertAlmostEqual(self.wm.run_ring([[[0, 1, 2]]], 2, 2.0, 1.0, gap=0.5), 6.0)
        self.assertAlmostEqual(self.wm.run_ring([[[0, 1, 2]]], 2, 2.0, 1.0, gap=4.0), 11.0)

    def test_the_rank_order(self):
        # block 9 is entry 0 of the second list, block 4 entry 1 of the first: 9 goes before 4
        lists = [[2, 4, 7], [9, 4]]
        self.assertEqual(self.wm.union_order(lists), [2, 4, 7, 9])
        self.assertEqual(self.wm.union_order(lists, "rank"), [2, 9, 4, 7])
        with self.assertRaises(ValueError):
            self.wm.union_order(lists, "descending")
        # two warps, 2 stages. Ascending, warp 1's tiles wait behind warp 0's: 0 and 1 land at 2, are
        # done at 3 and 4; 2 lands at 5 (done 6), 10 at 6 (done 7), 11 at 8 (done 9), 12 at 9 (done 10).
        # In rank order (0, 10, 1, 11, 2, 12) the warps go side by side: done at 3, 6 and 9.
        lists = [[[0, 1, 2], [10, 11, 12]]]
        self.assertAlmostEqual(self.wm.run_ring(lists, 2, 2.0, 1.0), 10.0)
        self.assertAlmostEqual(self.wm.run_ring(lists, 2, 2.0, 1.0, "rank"), 9.0)
        # a warp walks its blocks in ring order, whatever its list's order (here 2, 12, 1, 11, 0, 10)
        self.assertAlmostEqual(self.wm.run_ring([[[12, 11, 10], [2, 1, 0]]], 2, 2.0, 1.0, "rank"), 9.0)

    def test_lists_hold_the_forced_blocks(self):
        import random
        rng = random.Random(2)
        for c in (1, 3, 16, 17, 1024):
            for lst in self.wm.window_lists(c, rng):
                self.assertEqual(len(lst), min(c, 16), c)
                self.assertEqual(lst, sorted(set(lst)), c)
                self.assertTrue({0, c - 1, max(c - 2, 0)} <= set(lst), c)


if __name__ == "__main__":
    unittest.main()
