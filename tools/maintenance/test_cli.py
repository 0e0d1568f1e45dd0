#!/usr/bin/env python3
"""Unit tests of the command line's helpers: tools/course_cli.py (build progress, first errors,
the ctest summary), tools/bench/bench_lesson.py (./course bench), the parts of tools/bench/bench_public_nsa.py
that need no GPU (its pair counts, its CSV rows, the join), lessons 10 and 11's benchmark sweeps and their
figures (tools/bench/plot.py --fused and --decode on synthetic CSV files, skipped without matplotlib) and
./course's help. Standard library only; no GPU, no build of the course needed (one test makes a tiny CMake
project when cmake is present).

    python3 tools/maintenance/test_cli.py -v
"""
import csv
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "bench"))
import bench_lesson  # noqa: E402
import bench_public_nsa  # noqa: E402  (imports no torch: what needs it is imported where it runs)
import course_cli  # noqa: E402
import lessons  # noqa: E402


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


BUILD_LINES = """\
[  1%] Building C object CMakeFiles/attn_common.dir/common/attn.c.o
[  2%] Building CUDA object CMakeFiles/attn_common.dir/common/gpu.cu.o
[  5%] Building CUDA object CMakeFiles/attn_common.dir/common/grading/baselines_flash.cu.o
[  8%] Linking CUDA static library libattn_common.a
[  8%] Built target attn_common
[ 12%] Building CUDA object CMakeFiles/solutions_03.dir/solutions/03_flash_attention/flash_attention.cu.o
[ 15%] Building C object CMakeFiles/test_03_solutions.dir/tests/test_03_flash_attention.c.o
[ 21%] Linking C executable bin/test_03_solutions
[ 55%] Building CUDA object tools/bench/CMakeFiles/bench.dir/bench.cu.o
[100%] Built target bench
""".splitlines()


class BuildProgressTest(unittest.TestCase):
    def test_one_line_per_ten_percent(self):
        p = course_cli.BuildProgress(heartbeat=1e9)
        shown = [m for m in (p.feed(l) for l in BUILD_LINES) if m]
        self.assertEqual(len(shown), 5, shown)  # 0%, 10%, 20%, 50%, 100%
        self.assertIn("compiling attn_common (attn.c)", shown[0])
        self.assertIn("compiling solutions_03 (flash_attention.cu)", shown[1])
        self.assertIn("linking test_03_solutions", shown[2])
        self.assertIn("compiling bench (bench.cu)", shown[3])
        self.assertTrue(shown[-1].startswith("build 100%"))

    def test_nothing_for_an_up_to_date_build(self):
        p = course_cli.BuildProgress()
        lines = ["[  8%] Built target attn_common", "[ 50%] Built target solutions_01", "[100%] Built target bench"]
        self.assertEqual([p.feed(l) for l in lines], [None, None, None])

    def test_heartbeat_when_a_step_takes_long(self):
        clock = FakeClock()
        p = course_cli.BuildProgress(heartbeat=60, clock=clock)
        self.assertIsNotNone(p.feed(BUILD_LINES[0]))  # 0%
        clock.t = 10
        self.assertIsNone(p.feed(BUILD_LINES[1]))  # same bucket, soon after
        clock.t = 100
        msg = p.feed(BUILD_LINES[2])  # same bucket, but 90 s later and other work
        self.assertIsNotNone(msg)
        self.assertIn("baselines_flash.cu", msg)

    def test_non_progress_lines_are_ignored(self):
        p = course_cli.BuildProgress()
        self.assertIsNone(p.feed("gmake[2]: Entering directory '/x'"))
        self.assertIsNone(p.feed("warning: something"))


class FirstErrorsTest(unittest.TestCase):
    def test_nvcc_error_comes_first_not_the_tail(self):
        lines = ["[ 10%] Building CUDA object CMakeFiles/lessons_03.dir/lessons/03_flash_attention/flash_attention.cu.o",
                 "/x/lessons/03_flash_attention/flash_attention.cu(120): error: identifier \"tile\" is undefined",
                 "          tile[0] = 1;", "          ^", "",
                 "1 error detected in the compilation of \"/x/flash_attention.cu\"."]
        lines += [f"[ {i}%] Building C object CMakeFiles/other.dir/f{i}.c.o" for i in range(11, 60)]
        lines += ["gmake[2]: *** [CMakeFiles/lessons_03.dir/build.make:90: x.o] Error 2",
                  "gmake[1]: *** [CMakeFiles/Makefile2:500: CMakeFiles/lessons_03.dir/all] Error 2",
                  "gmake: *** [Makefile:146: all] Error 2"]
        out = course_cli.first_errors(lines)
        self.assertIn('error: identifier "tile" is undefined', out[0])
        self.assertTrue(any("lessons_03.dir/all" in l for l in out))
        self.assertFalse(any(l.startswith("[ ") for l in out))  # progress lines left out

    def test_gcc_and_linker_errors(self):
        out = course_cli.first_errors(["a", "b", "x.c:3:5: error: expected ';' before '}' token", "c"])
        self.assertEqual(out[0], "a")  # two lines of context
        self.assertIn("error: expected", out[2])
        out = course_cli.first_errors(["ok", "/usr/bin/ld: f.o: undefined reference to `flash_attention_cuda'"])
        self.assertIn("undefined reference", out[-1])

    def test_a_file_named_errors_is_not_an_error(self):
        lines = ["[ 3%] Building C object CMakeFiles/t.dir/tests/test_errors.c.o"] + [f"l{i}" for i in range(50)]
        out = course_cli.first_errors(lines, limit=5)
        self.assertEqual(out, ["l45", "l46", "l47", "l48", "l49"])  # no error line: the tail


class CtestParseTest(unittest.TestCase):
    def test_result_lines(self):
        cases = {
            " 1/55 Test  #1: common.oracle ....................   Passed    0.52 sec": ("common.oracle", "passed"),
            "12/55 Test #30: selftest.wrong.03.no_rescale .....***Skipped   1.02 sec": ("selftest.wrong.03.no_rescale",
                                                                                     "skipped"),
            "3/4 Test #3: selftest.stubs.01 ................***Failed    0.02 sec": ("selftest.stubs.01", "failed"),
            "4/4 Test #4: solutions.03 ...........***Exception: SegFault  0.10 sec": ("solutions.03", "failed"),
            "5/9 Test #5: solutions.04 .......................***Timeout 1500.01 sec": ("solutions.04", "failed"),
            "6/9 Test #6: maintainer.tools ...................***Not Run   0.00 sec": ("maintainer.tools", "failed"),
        }
        for line, (name, status) in cases.items():
            m = course_cli.RESULT.match(line)
            self.assertIsNotNone(m, line)
            self.assertEqual(m.group(3), name)
            self.assertEqual(course_cli.status_of(m.group(5)), status, line)
        self.assertIsNone(course_cli.RESULT.match("      Start  2: solutions.01"))
        self.assertTrue(course_cli.CLOSING.match("100% tests passed, 0 tests failed out of 55"))
        self.assertTrue(course_cli.CLOSING.match("98% tests passed, 1 test failed out of 55"))

    def test_last_test_log(self):
        text = ("1/2 Testing: a.b\n1/2 Test: a.b\nCommand: \"x\"\nOutput:\n------\nhello\nlast line\n<end of output>\n"
                "Test time = 1 sec\n------\nTest Passed.\n\n2/2 Testing: c\n2/2 Test: c\nOutput:\n----\n<end of output>\n")
        out = course_cli.parse_last_test_log(text)
        self.assertEqual(out, {"a.b": "hello\nlast line\n", "c": ""})
        self.assertEqual(course_cli.skip_reason(out["a.b"]), "last line")
        self.assertEqual(course_cli.skip_reason(out["c"]), "")


def fake_results(no_gpu_skips=16, failed=()):
    r = {f"solutions.0{i}": "passed" for i in range(1, 8)}
    r.update({f"selftest.stubs.0{i}": "passed" for i in range(1, 8)})
    for i in range(40):
        r[f"selftest.wrong.0{i % 7 + 1}.v{i}"] = "skipped" if i < no_gpu_skips else "passed"
    r.update({"maintainer.stub_sync": "passed", "maintainer.tools": "passed", "common.oracle": "passed"})
    for name in failed:
        r[name] = "failed"
    return r


class SummaryTest(unittest.TestCase):
    def test_no_gpu(self):
        text = "\n".join(course_cli.summarize(fake_results(), no_gpu=True))
        self.assertIn("reference solutions:", text)
        self.assertIn("7/7 passed", text)
        self.assertIn("stubs rejected:       7/7 lessons", text)
        self.assertIn("known-wrong variants: 24/40 rejected, 16 skipped (they need a GPU)", text)
        self.assertIn("maintainer checks:    2/2 passed", text)
        self.assertIn("16 of 57 tests were skipped because there is no CUDA device here", text)
        self.assertNotIn("selftest.wrong.01.v0", text)  # no list of 40 names

    def test_failures_are_named(self):
        res = fake_results(0, failed=("selftest.wrong.03.v2", "solutions.05", "selftest.stubs.04"))
        text = "\n".join(course_cli.summarize(res))
        self.assertIn("6/7 passed, 1 FAILED: solutions.05", text)
        self.assertIn("1 NOT rejected (the tests miss them): selftest.wrong.03.v2", text)
        self.assertIn("6/7 lessons (every graded test fails on the stubs), 1 NOT rejected: selftest.stubs.04", text)
        self.assertNotIn("skipped", text)

    def test_skips_with_a_gpu_give_their_reasons(self):
        res = {"solutions.01": "passed", "sanitizer.memcheck.01.causal": "skipped"}
        text = "\n".join(course_cli.summarize(res, outputs={"sanitizer.memcheck.01.causal": "x\ncompute-sanitizer not found\n"}))
        self.assertIn("sanitizer.memcheck.01.causal: compute-sanitizer not found", text)


@unittest.skipUnless(shutil.which("cmake") and shutil.which("ctest"), "needs cmake and ctest")
class RunCtestTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        with open(os.path.join(self.tmp, "CMakeLists.txt"), "w") as f:
            f.write("""cmake_minimum_required(VERSION 3.20)
project(t NONE)
enable_testing()
add_test(NAME solutions.01 COMMAND sh -c "echo ok")
add_test(NAME selftest.wrong.01.a COMMAND sh -c "echo 'every test was skipped (no GPU?)'; exit 77")
set_tests_properties(selftest.wrong.01.a PROPERTIES SKIP_RETURN_CODE 77)
add_test(NAME selftest.wrong.01.b COMMAND sh -c "exit 0")
add_test(NAME selftest.stubs.01 COMMAND sh -c "if [ -f ${CMAKE_BINARY_DIR}/fail ]; then echo 'stub PASSED a test'; exit 1; fi")
""")
        self.build = os.path.join(self.tmp, "b")
        subprocess.run(["cmake", "-S", self.tmp, "-B", self.build], check=True, capture_output=True)

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def run_it(self, **kw):
        out = io.StringIO()
        rc = course_cli.run_ctest(self.build, ["-j", "2"], out=out, **kw)
        return rc, out.getvalue()

    def test_all_pass_with_skips(self):
        rc, text = self.run_it(no_gpu=True)
        self.assertEqual(rc, 0)
        # CI reads this line; CMake 4's ctest leaves out ", 0 tests failed"
        self.assertRegex(text, r"(?m)^100% tests passed(, 0 tests failed)? out of 4$")
        self.assertIn("known-wrong variants: 1/2 rejected, 1 skipped (they need a GPU)", text)
        self.assertNotIn("The following tests did not run", text)  # the summary says it instead
        self.assertNotIn("Passed", text)  # no line per passing test
        self.assertTrue(os.path.exists(os.path.join(self.build, "test.log")))
        with open(os.path.join(self.build, "test.log")) as f:
            self.assertIn("The following tests did not run", f.read())  # the full output is kept

    def test_a_failure_is_shown_and_the_status_is_nonzero(self):
        open(os.path.join(self.build, "fail"), "w").close()
        rc, text = self.run_it()
        self.assertNotEqual(rc, 0)
        self.assertIn("selftest.stubs.01 ...", text)
        self.assertIn("stub PASSED a test", text)  # the failed test's output
        self.assertIn("tests failed out of 4", text)
        self.assertIn("The following tests FAILED", text)
        self.assertIn("1 NOT rejected: selftest.stubs.01", text)

    def test_verbose_prints_everything(self):
        rc, text = self.run_it(verbose=True)
        self.assertEqual(rc, 0)
        self.assertIn("Passed", text)
        self.assertIn("The following tests did not run", text)


BENCH_HEADER = ("device,lesson,entry,kernel,role,baseline,B,M,N,H,G,D,causal,window,keep,config,ms,tflops,gbs,"
                "peak_tflops,peak_gbs,frac_peak_flops,frac_peak_bw,speedup,check")


def bench_row(**fields):
    """A row of build/bin/bench's CSV: the bar's sizes unless given."""
    row = dict.fromkeys(BENCH_HEADER.split(","), "")
    row.update(device="GPU (sm_90, 1 SM)", B=1, H=64, G=4, D=128, causal=1, peak_tflops=800, peak_gbs=4000, check="ok")
    row.update(fields)
    return row


def stderr_of(fn, *args):
    """(fn(*args), what it printed on stderr)."""
    err = io.StringIO()
    old, sys.stderr = sys.stderr, err
    try:
        return fn(*args), err.getvalue()
    finally:
        sys.stderr = old


def write_bench_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=BENCH_HEADER.split(","))
        w.writeheader()
        w.writerows(rows)


class BenchFiguresTest(unittest.TestCase):
    """Lessons 10 and 11's sweeps: the descriptors' bench shapes, and tools/bench/plot.py's --fused and --decode
    figures on synthetic CSV files with build/bin/bench's columns (skipped without matplotlib)."""

    @staticmethod
    def sizes(num):
        """{(B, N)} and the configurations of lesson num's bench shapes, each shape's lists expanded."""
        cases, configs = [], set()
        for _, args in lessons.bench_shapes(lessons.descriptors()[num]):
            opts = dict(zip(args[0::2], args[1::2]))
            configs |= set(opts.get("--config", "").split(","))
            cases += [(int(b), int(n)) for b in opts["--B"].split(",") for n in opts["--N"].split(",")]
        return cases, configs

    def test_lesson_10_sweeps_8k_to_64k_once_each(self):
        cases, configs = self.sizes("10")
        self.assertEqual(sorted(cases), [(1, 8192), (1, 16384), (1, 32768), (1, 65536)])  # no case timed twice
        self.assertEqual(configs, {"mean", "paper"})
        shapes = dict(lessons.bench_shapes(lessons.descriptors()["10"]))
        self.assertIn("bar_64k", shapes)  # the bar's shape keeps its name: the bars are judged on it

    def test_lesson_11_sweeps_1k_to_128k_at_three_batches_once_each(self):
        cases, configs = self.sizes("11")
        want = [(b, 1024 << k) for b in (1, 16, 64) for k in range(8)]
        self.assertEqual(sorted(cases), sorted(want))
        self.assertEqual(len(cases), len(set(cases)))
        self.assertEqual(configs, {"mean", "paper"})
        self.assertIn("decode_64k", dict(lessons.bench_shapes(lessons.descriptors()["11"])))

    def test_readme_figures_names_its_sets(self):
        script = os.path.join(ROOT, "tools", "bench", "readme_figures.sh")
        p = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0)
        self.assertIn("fused", p.stdout)
        self.assertIn("decode", p.stdout)
        p = subprocess.run(["bash", script, "x", "/nonexistent", "fused,nope"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown set nope", p.stderr)

    def plot(self):
        try:
            import plot  # noqa: E402  (exits when matplotlib is missing)
        except SystemExit:
            self.skipTest("matplotlib is missing")
        return plot

    def args(self, out):
        import argparse
        return argparse.Namespace(out=out, title=None)

    def test_fused_figure(self):
        plot = self.plot()
        rows = []
        for i, n in enumerate((8192, 16384, 32768, 65536)):
            scale = 2 ** i
            rows.append(bench_row(lesson="00", entry="frozen_flash_bf16", kernel="frozen_flash_bf16", role="baseline",
                                  M=n, N=n, ms=3.2 * scale * scale, tflops=300))
            for config, ms in (("mean", 2.5), ("paper", 4.0)):
                for entry, share in (("nsa_forward", 1.0), ("nsa_forward_weights", 1.01), ("nsa_forward_1_compress", 0.01),
                                     ("nsa_forward_2_cmp_select", 0.45), ("nsa_forward_3_slc_swa", 0.56),
                                     ("nsa_forward_stages", 1.02)):
                    rows.append(bench_row(lesson="10", entry=entry, kernel=f"{entry}_{config}", role="solution", M=n,
                                          N=n, config=config, ms=ms * scale * share))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bench_fused_x.csv")
            write_bench_csv(path, rows)
            self.assertEqual(plot.plot_fused(plot.read_rows(path), "bench_fused_x", self.args(tmp)), 0)
            png = os.path.join(tmp, "bench_fused_x_time.png")
            self.assertGreater(os.path.getsize(png), 1000)
            # a CSV without the forward's rows draws nothing and says so
            write_bench_csv(path, rows[:1])
            rc, err = stderr_of(plot.plot_fused, plot.read_rows(path), "dense", self.args(tmp))
            self.assertEqual(rc, 1)
            self.assertIn("no nsa_forward rows", err)
            self.assertFalse(os.path.exists(os.path.join(tmp, "dense_time.png")))

    def test_decode_figure(self):
        plot = self.plot()
        # the NSA paper's decoding table: 4x at 8k ... 11.6x at 64k (its configuration)
        self.assertAlmostEqual(plot.nsa_expected_ratio(65536, "paper"), 65536 / (4095 + 1024 + 512))
        self.assertEqual([round(plot.nsa_expected_ratio(n, "paper"), 1) for n in (8192, 16384, 32768, 65536)],
                         [4.0, 6.4, 9.1, 11.6])
        self.assertAlmostEqual(plot.nsa_expected_ratio(65536, "mean"), 65536 / (1024 + 1024 + 512))
        rows = []
        for b in (1, 16, 64):
            for k in range(8):
                n = 1024 << k
                kv = 2 * b * n * 4 * 128 * 2
                for sfx, extra in (("", 3e-6), ("_graph", 0.0)):
                    t = max(8e-6, kv / 3.5e12) + extra
                    rows.append(bench_row(lesson="00", entry="frozen_decode_naive_bf16",
                                          kernel="frozen_decode_naive_bf16" + sfx, role="baseline", B=b, M=1, N=n,
                                          ms=8e3 * t, gbs=kv / (8 * t) / 1e9))
                    rows.append(bench_row(lesson="11", entry="decode_dense", kernel="decode_dense" + sfx,
                                          role="solution", B=b, M=1, N=n, ms=1e3 * t, gbs=kv / t / 1e9))
                    for config in ("mean", "paper"):
                        t_nsa = max(10e-6, kv / plot.nsa_expected_ratio(n, config) / 2.5e12) + extra
                        rows.append(bench_row(lesson="11", entry="decode_nsa", kernel=f"decode_nsa_{config}{sfx}",
                                              role="solution", B=b, M=1, N=n, config=config, ms=1e3 * t_nsa, gbs=""))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bench_decode_x.csv")
            write_bench_csv(path, rows)
            self.assertEqual(plot.plot_decode(plot.read_rows(path), "bench_decode_x", self.args(tmp)), 0)
            self.assertGreater(os.path.getsize(os.path.join(tmp, "bench_decode_x_time.png")), 1000)
            # prefill rows (M = N) are no decoding steps
            write_bench_csv(path, [bench_row(lesson="10", entry="nsa_forward", kernel="nsa_forward_mean", M=8192,
                                             N=8192, config="mean", ms=2.5)])
            rc, err = stderr_of(plot.plot_decode, plot.read_rows(path), "prefill", self.args(tmp))
            self.assertEqual(rc, 1)
            self.assertIn("no decoding rows", err)

    def test_one_figure_option_at_a_time(self):
        self.plot()
        p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench", "plot.py"), "--fused", "--decode",
                            "x.csv"], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 2)
        self.assertIn("choose one figure", p.stderr)


class BenchLessonTest(unittest.TestCase):
    def test_every_lesson_has_a_bench_shape_and_entries(self):
        # a lesson added to the course cannot be forgotten by the benchmark: its descriptor names the
        # shapes ./course bench times it on, and tools/bench/lesson_NN.cu registers its kernels
        names = lessons.lesson_names()
        self.assertGreaterEqual(len(names), 9)
        for name in names:
            num = name[:2]
            self.assertTrue(lessons.bench_shapes(lessons.descriptor(name)),
                            f"{name}: its descriptor has no bench shape")
            path = os.path.join(ROOT, "tools", "bench", f"lesson_{num}.cu")
            self.assertTrue(os.path.isfile(path), f"{name}: no {os.path.relpath(path, ROOT)}")
            with open(path) as f:
                src = f.read()
            self.assertIn(f"BENCH_LESSON({int(num)})", src, path)
            self.assertIn("BENCH_SOLUTION", src, f"{path}: no entry of the lesson's own kernel")

    def test_bench_shapes_use_options_the_driver_takes(self):
        with open(os.path.join(ROOT, "tools", "bench", "bench.cu")) as f:
            src = f.read()
        for num, d in lessons.descriptors().items():
            for shape, args in lessons.bench_shapes(d):
                for opt in args[0::2]:
                    self.assertIn(f'"{opt}"', src, f"lesson {num}, shape {shape}: {opt} is not a bench option")

    def test_bench_shapes_are_read_as_cmake_writes_them(self):
        # tools/bench/CMakeLists.txt writes options sorted by key (CMake's JSON reader): lessons.py too
        d = {"bench": {"b": {"N": 8192, "D": 64, "config": "mean,paper"}, "a": {"H": 4}}}
        self.assertEqual(lessons.bench_shapes(d),
                         [("a", ["--H", "4"]), ("b", ["--D", "64", "--N", "8192", "--config", "mean,paper"])])
        for bad in ({"bench": []}, {"bench": {"x": {"N": 1.5}}}, {"bench": {"x": {"N": "8192 --reps"}}},
                    {"bench": {"x": {"N": True}}}, {"bench": {"x y": {}}}):
            with self.assertRaises(ValueError, msg=bad):
                lessons.bench_shapes(bad)

    def test_parse_list(self):
        text = ("# lesson\tname\trole\tbaseline\tsuites\tparameters\tcomputes\n"
                "00\tfrozen_flash_bf16\tbaseline\t-\t-\t-\tthe frozen flash kernel\n"
                "03\tflash_bf16\tsolution\tfrozen_online_f32\t-\t-\tflash attention\n"
                "# suite\tnsa\t--N 65536\tthe NSA branches\n"
                "# shape\t03\t8k\t--B 1 --N 8192\n")
        entries, shapes = bench_lesson.parse_list(text)
        self.assertEqual([(e["lesson"], e["name"], e["role"]) for e in entries],
                         [("00", "frozen_flash_bf16", "baseline"), ("03", "flash_bf16", "solution")])
        self.assertEqual(shapes, {"03": [("8k", ["--B", "1", "--N", "8192"])]})

    def test_check_table_names_a_forgotten_lesson(self):
        with tempfile.TemporaryDirectory() as tmp:
            fake = os.path.join(tmp, "bench")
            # holds lesson 03 only, with its shapes as the descriptors give them
            shape_lines = "".join(f"# shape\t{num}\t{shape}\t{' '.join(args)}\\n"
                                  for num, d in lessons.descriptors().items() for shape, args in lessons.bench_shapes(d))
            with open(fake, "w") as f:
                f.write("#!/bin/sh\nif [ \"$1\" = --list ]; then printf '03\\tflash_bf16\\tsolution\\t-\\t-\\t-\\tx\\n"
                        f"{shape_lines}'; else echo '  03 flash_bf16 solution B=1'; fi\n")
            os.chmod(fake, 0o755)
            problems = bench_lesson.check_table(fake)
            self.assertFalse(any("lesson 03" in p for p in problems), problems)
            self.assertTrue(any("lesson 09: no solution entry" in p for p in problems), problems)

    def test_peaks_of(self):
        self.assertIsNone(bench_lesson.peaks_of([{"peak_tflops": "", "peak_gbs": ""}]))
        self.assertEqual(bench_lesson.peaks_of([{"peak_tflops": "802.1", "peak_gbs": "3020"}]), ("802.1", "3020"))
        self.assertEqual(bench_lesson.peak_args(("1", "2")), ["--peak-tflops", "1", "--peak-gbs", "2"])
        self.assertEqual(bench_lesson.peak_args(None), [])

    @unittest.skipIf(shutil.which("nvidia-smi"), "a GPU may be here")
    def test_no_gpu_says_so_and_exits_0(self):
        err = io.StringIO()
        old, sys.stderr = sys.stderr, err
        try:
            rc = bench_lesson.main(["--lesson", "03", "--build-dir", "/nonexistent"])
        finally:
            sys.stderr = old
        self.assertEqual(rc, 0)
        self.assertIn("no CUDA device", err.getvalue())

    def test_figure(self):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            self.skipTest("matplotlib is missing")
        rows = []
        for num in ("03", "06"):
            for src, ms in (("yours", 4.0), ("solution", 3.2), ("baseline", 60.0)):
                rows.append({"lesson": num, "shape": "8k", "source": src, "kernel": "k", "ms": str(ms),
                             "tflops": str(100 / ms), "device": "a GPU"})
        rows.append({"lesson": "06", "shape": "8k", "source": "floor", "kernel": "f", "ms": "1", "tflops": "",
                     "device": "a GPU"})
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "f.png")
            self.assertTrue(bench_lesson.draw(rows, [("03", "8k"), ("06", "8k")], path))
            self.assertGreater(os.path.getsize(path), 1000)

    def test_table(self):
        rows = [{"lesson": "03", "shape": "8k", "source": s, "kernel": k, "baseline": b, "ms": ms, "tflops": "100",
                 "frac_peak_flops": "0.5", "check": "ok"}
                for s, k, b, ms in (("baseline", "frozen_online_f32", "", "60"),
                                    ("yours", "flash_bf16", "frozen_online_f32", "4"),
                                    ("solution", "flash_bf16", "frozen_online_f32", "3"))]
        out = io.StringIO()
        old, sys.stdout = sys.stdout, out
        try:
            bench_lesson.print_lesson("03", "03_flash_attention", "8k", ["--N", "8192", "--D", "128"], rows,
                                      ["yours: note"])
        finally:
            sys.stdout = old
        lines = out.getvalue().splitlines()
        self.assertIn("Lesson 03 flash_attention, shape 8k: N=8192 D=128", lines[1])
        self.assertIn("yours", lines[3])  # yours first, then the solution, then the baseline
        self.assertIn("15.00x", lines[3])
        self.assertIn("20.00x", lines[4])
        self.assertIn("baseline", lines[5])
        self.assertIn("50.0%", lines[3])
        self.assertTrue(lines[3].endswith("ok"))
        self.assertEqual(lines[-1].strip(), "yours: note")


FAKE_BENCH = r"""#!/usr/bin/env python3
import os, sys
a = sys.argv[1:]
name = os.path.basename(sys.argv[0])
yours = "lessons" in name
TABLE = [("00", "naive_f32", "baseline", ""), ("00", "frozen_online_f32", "baseline", ""),
         ("00", "frozen_flash_bf16", "baseline", ""), ("00", "frozen_repeat_kv_bf16", "baseline", ""),
         ("03", "flash_bf16", "solution", "frozen_online_f32"), ("04", "gqa_bf16", "solution", "frozen_repeat_kv_bf16"),
         ("06", "mask_bf16", "solution", "frozen_flash_bf16"), ("06", "blocks_bf16", "solution", "frozen_flash_bf16")]
held = [e for e in TABLE if e[0] == "00" or not yours or e[0] == name[len("bench_"):len("bench_") + 2]]
if "--list" in a:
    for e in held:
        print("\t".join([e[0], e[1], e[2], e[3] or "-", "-", "-", "what it computes"]))
    sys.exit(0)
lesson, path = a[a.index("--lesson") + 1], a[a.index("--csv") + 1]
roles = a[a.index("--role") + 1].split(",") if "--role" in a else ["solution", "baseline", "floor", "sum"]
given = "--peak-tflops" in a
with open(os.path.join(os.path.dirname(sys.argv[0]), "calls.txt"), "a") as log:
    log.write(f"{name} {' '.join(a[:a.index('--csv')])} {' '.join(a[a.index('--csv') + 2:])} "
              f"peaks={'given' if given else 'measured'}\n")
mine = [e for e in held if e[0] == lesson and e[2] in roles]
bases = {e[3] for e in mine}
rows = [e for e in held if e[1] in bases and "baseline" in roles] + mine
failed = 0
with open(path, "w") as f:
    f.write("device,lesson,entry,kernel,role,baseline,B,M,N,H,G,D,causal,window,keep,config,ms,tflops,gbs,"
            "peak_tflops,peak_gbs,frac_peak_flops,frac_peak_bw,speedup,check\n")
    for e in rows:
        kernel = e[1] + ("_k10" if e[0] == "06" else "")
        if yours and e[1] == "mask_bf16":
            print(f"bench: {kernel} failed on B=1 M=8192 (its first run): not implemented: fill in the TODO",
                  file=sys.stderr)
            failed += 1
            continue
        ms = 4.0 if yours and e[2] == "solution" else (60.0 if e[2] == "baseline" else 3.0)
        f.write(f"Fake GPU,{e[0]},{e[1]},{kernel},{e[2]},{e[3]},1,8192,8192,64,4,128,1,,,,{ms},{100 / ms},1000,800,"
                f"3000,{100 / ms / 800},0.3,,ok\n")
sys.exit(1 if failed else 0)
"""


@unittest.skipUnless(shutil.which("cmake"), "needs cmake")
class BenchEndToEndTest(unittest.TestCase):
    """./course bench's driver against a fake build: bench programs that write made-up CSV rows, a
    lesson whose files do not compile, a kernel that fails, and a fake nvidia-smi."""

    def test_run(self):
        with tempfile.TemporaryDirectory() as tmp:
            src, build, fakebin = (os.path.join(tmp, d) for d in ("src", "build", "fakebin"))
            for d in (src, fakebin):
                os.makedirs(d)
            with open(os.path.join(src, "fake_bench.py"), "w") as f:
                f.write(FAKE_BENCH)
            with open(os.path.join(src, "fail.sh"), "w") as f:
                f.write("echo 'gqa_attention.cu(12): error: expected a ;'\nexit 1\n")
            os.chmod(os.path.join(src, "fake_bench.py"), 0o755)
            with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
                f.write("""cmake_minimum_required(VERSION 3.20)
project(f NONE)
set(B ${CMAKE_BINARY_DIR}/bin)
add_custom_target(bench COMMAND ${CMAKE_COMMAND} -E make_directory ${B}
                  COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/fake_bench.py ${B}/bench)
foreach(n 03 06)
  add_custom_target(bench_${n}_lessons COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/fake_bench.py
                    ${B}/bench_${n}_lessons DEPENDS bench)
endforeach()
add_custom_target(bench_04_lessons COMMAND sh ${CMAKE_SOURCE_DIR}/fail.sh)
""")
            subprocess.run(["cmake", "-S", src, "-B", build], check=True, capture_output=True)
            with open(os.path.join(fakebin, "nvidia-smi"), "w") as f:
                f.write("#!/bin/sh\necho 'Fake GPU'\n")
            os.chmod(os.path.join(fakebin, "nvidia-smi"), 0o755)
            env = dict(os.environ, PATH=fakebin + os.pathsep + os.environ["PATH"])
            csv_path = os.path.join(tmp, "out", "bench_x.csv")
            p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench", "bench_lesson.py"), "--build-dir", build,
                                "--lesson", "03", "--lesson", "04", "--lesson", "06", "--csv", csv_path],
                               capture_output=True, text=True, env=env, timeout=300)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("lesson 04: your files do not compile", p.stderr)
            self.assertIn("error: expected a ;", p.stderr)
            self.assertIn("yours: mask_bf16_k10 failed on B=1 M=8192 (its first run): not implemented", p.stdout)
            self.assertIn("yours: not timed, your lessons/04_gqa/ files do not compile", p.stdout)
            with open(csv_path, newline="") as f:
                rows = list(csv.DictReader(f))
            got = sorted((r["lesson"], r["source"], r["kernel"]) for r in rows)
            self.assertEqual(got, sorted([
                ("03", "yours", "flash_bf16"), ("03", "solution", "flash_bf16"), ("03", "baseline", "frozen_online_f32"),
                ("04", "solution", "gqa_bf16"), ("04", "baseline", "frozen_repeat_kv_bf16"),
                ("06", "yours", "blocks_bf16_k10"), ("06", "solution", "mask_bf16_k10"),
                ("06", "solution", "blocks_bf16_k10"), ("06", "baseline", "frozen_flash_bf16")]))
            self.assertEqual({r["shape"] for r in rows if r["lesson"] == "06"}, {"8k_keep10"})
            with open(os.path.join(build, "bin", "calls.txt")) as f:
                calls = f.read().splitlines()
            self.assertTrue(calls[0].endswith("peaks=measured"), calls)  # the peaks are measured once
            self.assertTrue(all(c.endswith("peaks=given") for c in calls[1:]), calls)
            # both programs get the lesson and its descriptor's shape; yours times the lesson's own kernels
            first, yours = calls[0].split(), calls[1].split()
            self.assertEqual(first[:3], ["bench", "--lesson", "03"])
            self.assertIn("--N 8192", calls[0])
            self.assertEqual(yours[:5], ["bench_03_lessons", "--lesson", "03", "--role", "solution"])
            self.assertEqual(calls[0].split("--keep-going")[1], calls[1].split("--keep-going")[1].replace(
                "peaks=given", "peaks=measured").replace(" --peak-tflops 800 --peak-gbs 3000", ""))
            self.assertIn("15.00x", p.stdout)  # lesson 03, yours: 60 ms baseline / 4 ms


class BenchPublicNsaTest(unittest.TestCase):
    """tools/bench/bench_public_nsa.py without a GPU: what it counts and writes must match what
    build/bin/bench counts and writes for lesson 10, or its rows would not join."""

    @staticmethod
    def brute_pairs(n_tok, config, w):
        # the definitions, key by key, with a list the top-n could make: block 0, the block before t's,
        # t's block, then the lowest other candidates, min(candidates, n) blocks in all
        l, d, l_sel, n = bench_public_nsa.CONFIGS[config]
        nc = max(0, (n_tok - l) // d + 1)
        total = 0
        for t in range(n_tok):
            total += sum(1 for c in range(nc) if c * d + l - 1 <= t)
            cur = t // l_sel
            chosen = {0, cur, max(cur - 1, 0)}
            for j in range(cur + 1):
                if len(chosen) >= min(cur + 1, n):
                    break
                chosen.add(j)
            total += sum(1 for s in range(t + 1) if s // l_sel in chosen)
            total += sum(1 for s in range(max(0, t - w + 1), t + 1))
        return total

    def test_pairs_follow_the_definitions(self):
        for config in ("mean", "paper"):
            for n_tok in (1, 63, 64, 200, 1500):
                self.assertEqual(bench_public_nsa.nsa_pairs(n_tok, config, heads=1, window=100),
                                 self.brute_pairs(n_tok, config, 100), (config, n_tok))
            self.assertEqual(bench_public_nsa.nsa_pairs(700, config, heads=3, batch=2),
                             6 * self.brute_pairs(700, config, 512), config)
            stages = sum(bench_public_nsa.stage_pairs(700, config, s, heads=1) for s in ("cmp_topn", "selected", "window"))
            self.assertEqual(stages, bench_public_nsa.nsa_pairs(700, config, heads=1), config)

    def test_the_columns_are_the_benchmarks(self):
        with open(os.path.join(ROOT, "tools", "bench", "bench.cu")) as f:
            src = f.read()
        start = src.index("kCsvHeader[] = ")
        literals = re.findall(r'"((?:[^"\\]|\\.)*)"', src[start:src.index(";", start)])
        header = "".join(literals).replace("\\n", "").split(",")
        self.assertEqual(header, bench_public_nsa.CSV_HEADER)

    def test_rows_join_the_benchmarks(self):
        dev = "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 52 MB L2)"
        pub = [bench_public_nsa.csv_row(dev, "fla_nsa_forward", "mean", 16384, 10.0, 1e9, "finite"),
               bench_public_nsa.csv_row(dev, "xl_nsa_forward", "paper", 16384, 16.0, 1e9, "finite"),
               bench_public_nsa.csv_row(dev, "xl_selected", "paper", 16384, 5.0, 1e9)]
        self.assertEqual(pub[0]["tflops"], f"{1e9 * 4 * 128 / 10e-3 / 1e12:.4f}")
        course = []
        for config, ms in (("mean", "4"), ("paper", "8")):
            r = dict(pub[0], entry="nsa_forward", kernel=f"nsa_forward_{config}", role="solution", config=config, ms=ms,
                     baseline=f"frozen_flash_bf16", check="ok")
            course.append(r)
        dense = dict(pub[0], entry="frozen_flash_bf16", kernel="frozen_flash_bf16", role="baseline", config="",
                     window="", ms="12.8", check="-")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "l10.csv")
            bench_public_nsa.write_csv(path, [dense] + course)
            bench_public_nsa.write_csv(path, pub)  # appended: one header
            with open(path) as f:
                self.assertEqual(f.read().count("device,lesson"), 1)
            joined = bench_public_nsa.join_rows(bench_public_nsa.read_csv(path))
            self.assertEqual([(j["config"], j["public"]) for j in joined],
                             [("mean", "fla_nsa_forward"), ("paper", "xl_nsa_forward")])
            self.assertAlmostEqual(joined[0]["public_over_course"], 2.5)
            self.assertAlmostEqual(joined[1]["public_over_course"], 2.0)
            self.assertAlmostEqual(joined[1]["dense_over_course"], 1.6)
            self.assertTrue(all(j["same_device"] for j in joined))
            out = io.StringIO()
            bench_public_nsa.print_join(joined, out)
            self.assertIn("2.50x", out.getvalue())
            old, sys.stdout = sys.stdout, io.StringIO()
            try:
                self.assertEqual(bench_public_nsa.main(["--join", path]), 0)  # no GPU, no torch needed
            finally:
                printed, sys.stdout = sys.stdout.getvalue(), old
            self.assertIn("xl_nsa_forward", printed)

    def test_mdy_rows_join_the_paper_row(self):
        dev = "NVIDIA H200 (sm_90, 132 SMs, 60 MB L2)"
        pub = [bench_public_nsa.csv_row(dev, "mdy_nsa_forward", "paper", 65536, 30.0, 1e9, "finite"),
               bench_public_nsa.csv_row(dev, "mdy_topn", "paper", 65536, 2.0, 0)]
        self.assertEqual(pub[1]["tflops"], "")  # a stage credited with no pairs has no TFLOP/s
        course = dict(pub[0], entry="nsa_forward", kernel="nsa_forward_paper", role="solution", ms="15", check="ok")
        joined = bench_public_nsa.join_rows([course] + pub)
        self.assertEqual([(j["config"], j["public"]) for j in joined], [("paper", "mdy_nsa_forward")])
        self.assertAlmostEqual(joined[0]["public_over_course"], 2.0)

    def test_version_tuple(self):
        v = bench_public_nsa.version_tuple
        self.assertEqual(v("3.4.0"), (3, 4, 0))
        self.assertEqual(v("3.5.0+git1a2b3c"), (3, 5, 0))
        self.assertEqual(v("3.10.0rc1"), (3, 10, 0))
        self.assertTrue(v("3.10.0") >= v("3.4.0") > v("3.3.1"))  # what mdy666's check asks of it

    def test_commit_from_a_commit_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.assertEqual(bench_public_nsa.commit_of(tmp), "unknown")
            with open(os.path.join(tmp, "COMMIT"), "w") as f:
                f.write("9bea856c911ebf263be88d797fb28458f82f1d94\n")
            self.assertEqual(bench_public_nsa.commit_of(tmp), "9bea856c911e")

    def test_needs_a_source(self):
        err = io.StringIO()
        old, sys.stderr = sys.stderr, err
        try:
            with self.assertRaises(SystemExit):
                bench_public_nsa.main([])
        finally:
            sys.stderr = old
        self.assertIn("--fla", err.getvalue())
        self.assertIn("--mdy", err.getvalue())


class CourseScriptTest(unittest.TestCase):
    def run_course(self, *args):
        with tempfile.TemporaryDirectory() as tmp:
            build = os.path.join(tmp, "never")
            env = dict(os.environ, ATTN_BUILD_DIR=build)
            p = subprocess.run([os.path.join(ROOT, "course")] + list(args), capture_output=True, text=True, env=env,
                               timeout=120)
            return p, os.path.exists(build)

    def test_help_configures_nothing(self):
        for args in (["grade", "--help"], ["grade", "-h"], ["bench", "--help"], ["test", "--help"], ["help"]):
            p, made = self.run_course(*args)
            self.assertEqual(p.returncode, 0, (args, p.stderr))
            self.assertFalse(made, args)
            self.assertIn("usage" if args[0] in ("grade", "bench") else "./course grade", p.stdout.lower()
                          if args[0] in ("grade", "bench") else p.stdout)

    def test_unknown_command(self):
        p, made = self.run_course("nonsense")
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown command", p.stderr)

    def test_cache_check_matches_what_cmake_writes(self):
        with open(os.path.join(ROOT, "course")) as f:
            text = f.read()
        self.assertIn("CMAKE_CUDA_ARCHITECTURES:UNINITIALIZED=$1", text)
        self.assertIn("CMAKE_CUDA_ARCHITECTURES:STRING=$1", text)


if __name__ == "__main__":
    unittest.main()
