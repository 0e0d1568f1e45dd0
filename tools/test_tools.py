#!/usr/bin/env python3
"""Unit tests of the course's own tools (run by CTest as maintainer.tools; stdlib only)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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


if __name__ == "__main__":
    unittest.main()
