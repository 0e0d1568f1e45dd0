#!/usr/bin/env python3
"""Unit tests of tools/maintenance/check_docs.py on small temporary trees: a good tree passes, and each kind of
drift the checker exists for makes it fail with a message that names the file and the line.

    python3 tools/maintenance/test_check_docs.py
"""
import contextlib
import io
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_docs  # noqa: E402

HEADER = """/*
 * demo.h - lesson 01. Conventions: see common/README.md.
 */
#include "attn.h"
int demo_cpu(const attn_shape *shape, const float *x,
             float *y);
static inline int demo_blocks(int M) { return (M + 127) / 128; }
"""

README = """# Lesson 01

Read [the conventions](../../common/README.md#conventions) and [the header](demo.h).

Call `demo_cpu(shape, x, y)` once per row; `demo_blocks(M)` gives the count, `O(N)` the cost.

```c
int demo_cpu(const attn_shape *shape, const float *x, float *y);
y[0] = fmaxf(x[0], 0.0f);
```
"""


class CheckDocsTest(unittest.TestCase):
    def tree(self, files):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        base = {
            "README.md": "# Course\n\nStart with [lesson 01](lessons/01_demo/README.md); see docs/TEACHERS.md.\n",
            "docs/TEACHERS.md": "# Teachers\n\nBack to the [README](../README.md).\n",
            "common/README.md": "# common\n\n## Conventions\n\nLayouts.\n",
            "common/attn.h": "typedef struct { int M; } attn_shape;\nint attn_check_shape(const attn_shape *s);\n",
            "lessons/01_demo/demo.h": HEADER,
            "lessons/01_demo/demo.c": "#include \"demo.h\"\nstatic int helper(int a) { return a; }\n",
            "lessons/01_demo/README.md": README,
        }
        base.update(files)
        for rel, text in base.items():
            if text is None:
                continue
            path = os.path.join(tmp.name, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        return tmp.name

    def run_checker(self, root):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            rc = check_docs.main(["--root", root])
        return rc, out.getvalue()

    def assert_fails(self, files, *needles):
        rc, out = self.run_checker(self.tree(files))
        self.assertEqual(rc, 1, out)
        for n in needles:
            self.assertIn(n, out)

    def test_good_tree_passes(self):
        rc, out = self.run_checker(self.tree({}))
        self.assertEqual(rc, 0, out)

    def test_broken_link_fails(self):
        self.assert_fails({"README.md": "# Course\n\nSee [lesson 02](lessons/02_demo/README.md).\n"},
                          "README.md:3:", "broken link 'lessons/02_demo/README.md'")

    def test_broken_anchor_fails(self):
        self.assert_fails({"docs/TEACHERS.md": "# T\n\n[rules](../common/README.md#what-your-code-may-call)\n"},
                          "docs/TEACHERS.md:3:", "#what-your-code-may-call")

    def test_links_in_code_are_not_links(self):
        rc, out = self.run_checker(self.tree({"docs/TEACHERS.md": "# T\n\n```\n[x](nowhere.md)\n```\n`[y](gone.md)`\n"}))
        self.assertEqual(rc, 0, out)

    def test_missing_path_reference_fails(self):
        self.assert_fails({"lessons/01_demo/demo.c": "/* The layouts are in common/LAYOUTS.md. */\n"},
                          "lessons/01_demo/demo.c:1:", "common/LAYOUTS.md")

    def test_path_reference_resolves_in_common_and_lesson(self):
        rc, out = self.run_checker(self.tree({"lessons/01_demo/demo.c": "/* see attn.h, and in demo.h the contract */\n"}))
        self.assertEqual(rc, 0, out)

    def test_undeclared_function_fails(self):
        text = README.replace("`demo_blocks(M)`", "`demo_block_count(M)`")
        self.assert_fails({"lessons/01_demo/README.md": text}, "lessons/01_demo/README.md:5:", "demo_block_count()")

    def test_undeclared_call_in_c_block_fails(self):
        text = README.replace("fmaxf(x[0], 0.0f)", "relu(x[0])")
        self.assert_fails({"lessons/01_demo/README.md": text}, "lessons/01_demo/README.md:9:", "relu()")

    def test_given_helper_may_be_named(self):
        text = README.replace("`demo_blocks(M)`", "`helper(M)`")
        rc, out = self.run_checker(self.tree({"lessons/01_demo/README.md": text}))
        self.assertEqual(rc, 0, out)

    def test_test_names_and_counts(self):
        tests = "ATTN_TEST(c_part, one) { }\nATTN_TEST(c_part, two) { }\nATTN_TEST(errors, bad) { }\n"
        table = "| part | points | how |\n|---|---|---|\n| C part (`c_part`) | 40 | fraction of the part's {k} tests that pass |\n"
        good = README + "\nRun `c_part/one`, `c_part/*` and `errors/bad`.\n\n" + table.format(k=2)
        rc, out = self.run_checker(self.tree({"tests/test_01_demo.c": tests, "lessons/01_demo/README.md": good}))
        self.assertEqual(rc, 0, out)
        self.assert_fails({"tests/test_01_demo.c": tests, "lessons/01_demo/README.md": good.replace("c_part/one", "c_part/three")},
                          "names the test c_part/three")
        self.assert_fails({"tests/test_01_demo.c": tests, "lessons/01_demo/README.md": README + "\n" + table.format(k=3)},
                          "says the c_part part has 3 tests; tests/test_01_*.c has 2")

    def test_signature_mismatch_fails(self):
        text = README.replace("float *y);", "float *y, int n);")
        self.assert_fails({"lessons/01_demo/README.md": text}, "lessons/01_demo/README.md:8:", "quotes demo_cpu")

    def points_tree(self, table_rows):
        desc = '{"title": "Demo", "points": {"c_part": 40, "cuda_part": 60, "speed": 0}}\n'
        doc = "# Autograder\n\n" + check_docs.POINTS_MARKER + "\n| lesson | title | C part | CUDA part | speed | total |\n" \
              "|---|---|---|---|---|---|\n" + table_rows
        return {"lessons/01_demo/lesson.json": desc, "tests/test_01_demo.c": "ATTN_TEST(c_part, one) { }\n",
                "autograder/README.md": doc}

    def test_points_table_matches_the_descriptors(self):
        rc, out = self.run_checker(self.tree(self.points_tree("| 01 | Demo | 40 | 60 | reported only | 100 |\n")))
        self.assertEqual(rc, 0, out)

    def test_points_table_drift_fails(self):
        self.assert_fails(self.points_tree("| 01 | Demo | 30 | 70 | reported only | 100 |\n"),
                          "autograder/README.md:6:", "lesson 01's row reads", "| 01 | Demo | 40 | 60 | reported only | 100 |")
        self.assert_fails(self.points_tree("| 01 | Demo | 40 | 60 | reported only | 100 |\n| 02 | Gone | 1 | 1 | 1 | 3 |\n"),
                          "autograder/README.md:7:", "lists lesson 02, which has no descriptor")
        files = self.points_tree("| 01 | Demo | 40 | 60 | reported only | 100 |\n")
        files.update({"lessons/02_more/lesson.json": '{"title": "More", "points": {"c_part": 50, "cuda_part": 50, "speed": 0}}\n',
                      "tests/test_02_more.c": "ATTN_TEST(c_part, one) { }\n"})
        self.assert_fails(files, "autograder/README.md:3:", "no row for lesson 02")


if __name__ == "__main__":
    unittest.main()
