#!/usr/bin/env python3
"""The NumPy path of nsa_course (the C parts) against the shared library: CTest's python.numpy.

Each wrapper's results against a NumPy reference written here from the definitions (dense attention
with a visibility mask, the window, the compression), lesson 10's forward against the composition of
lessons 05, 07, 08 and 09 through the same package, the weights helpers against their definitions,
and every bad input: a TypeError or ValueError naming the argument, what was expected and what was
given, and NSACourseError with the C API's code, name and detail for a call the library refuses.

    NSA_COURSE_LIB=build/lib/libnsa_course.so python3 python/tests/test_numpy.py [-v]

Exits 77 (CTest's skip) when NumPy is missing, saying so.
"""
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

try:
    import numpy as np
except ImportError:
    print(f"numpy is not installed for {sys.executable}: the NumPy tests of python/ are skipped "
          f"(Debian: apt-get install python3-numpy)")
    sys.exit(77)

import nsa_course as nc  # noqa: E402
from nsa_course import cpu  # noqa: E402

TOL = dict(atol=2e-5, rtol=2e-5)  # ATTN_TOL_F32: fp32 sums of up to a few thousand terms


def rand(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def problem(rng, B=1, M=48, N=64, H=4, G=2, D=32):
    return rand(rng, B, M, H, D), rand(rng, B, N, G, D), rand(rng, B, N, G, D)


def ref_attention(q, k, v, visible, scale=None):
    """Dense attention in float64 over the keys visible(t, s) [M, N] allows; (o, lse), a row that sees
    nothing: o = 0, lse = -inf. visible may depend on (b, i, h): a function of (b, h) then."""
    B, M, H, D = q.shape
    N, G = k.shape[1], k.shape[2]
    scale = D ** -0.5 if scale is None else scale
    o, lse = np.zeros((B, M, H, D)), np.full((B, H, M), -np.inf)
    for b in range(B):
        for h in range(H):
            g = h // (H // G)
            mask = visible(b, h) if callable(visible) else visible
            s = scale * q[b, :, h].astype(np.float64) @ k[b, :, g].astype(np.float64).T
            s = np.where(mask, s, -np.inf)
            m = s.max(axis=1, keepdims=True)
            seen = np.isfinite(m[:, 0])
            p = np.where(mask, np.exp(s - np.where(np.isfinite(m), m, 0)), 0)
            l = p.sum(axis=1)
            o[b, seen, h] = (p[seen] @ v[b, :, g].astype(np.float64)) / l[seen, None]
            lse[b, h, seen] = m[seen, 0] + np.log(l[seen])
    return o, lse


def positions(M, N):
    return np.arange(N - M, N)[:, None], np.arange(N)[None, :]


def ref_compress(kv, p, w=None, pos=None):
    B, N, G, D = kv.shape
    NC = p.num_cmp(N)
    out = np.zeros((B, NC, G, D))
    for c in range(NC):
        span = kv[:, c * p.d:c * p.d + p.l].astype(np.float64)  # [B, l, G, D]
        if p.mode == "mean":
            out[:, c] = span.mean(axis=1)
        else:
            x = span + (0 if pos is None else pos[None, :, None, :])
            out[:, c] = np.einsum("brgc,grce->bge", x, w.reshape(G, p.l, D, D))
    return out


class LibraryTest(unittest.TestCase):
    def test_params_match_the_c_defaults(self):
        lib = nc.library()
        for py, c in ((nc.NSAParams.paper(), lib.attn_nsa_paper_defaults()),
                      (nc.NSAParams.mean_pool(), lib.attn_nsa_mean_pool())):
            cc = py.c()
            for f in ("l", "d", "l_sel", "n", "w", "mode", "heads_share_selection"):
                self.assertEqual(getattr(cc, f), getattr(c, f), f)

    def test_counts_match_the_c_rules(self):
        for p in (nc.NSAParams.paper(), nc.NSAParams(l=4, d=2, l_sel=4, n=4, w=10), nc.NSAParams.mean_pool()):
            for N in (1, 3, 20, 31, 32, 33, 100, 1000):
                num_cmp, visible = cpu.cmp_counts(N, N - 1, p)
                self.assertEqual(num_cmp, p.num_cmp(N), (p, N))
                expect = sum(1 for c in range(p.num_cmp(N)) if c * p.d + p.l - 1 <= N - 1)
                self.assertEqual(visible, expect)

    def test_library_not_found_says_where_it_looked(self):
        code = ("import nsa_course as nc, nsa_course._lib as L\n"
                "L.library_candidates = lambda: ['/nonexistent/libnsa_course.so']\n"
                "try:\n    nc.library()\nexcept nc.LibraryNotFoundError as e:\n    print('missing:', e)\n")
        out = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(HERE), capture_output=True, text=True)
        self.assertIn("missing: libnsa_course.so not found (looked at: /nonexistent/libnsa_course.so)", out.stdout,
                      out.stderr)
        self.assertIn("NSA_COURSE_LIB", out.stdout)

    def test_candidates_honour_the_environment(self):
        old = dict(os.environ)
        try:
            os.environ["NSA_COURSE_LIB"] = "/x/lib.so"
            os.environ["ATTN_BUILD_DIR"] = "build-y"
            c = nc.library_candidates()
            self.assertEqual(c[0], "/x/lib.so")
            self.assertTrue(c[1].endswith(os.path.join("build-y", "lib", "libnsa_course.so")), c)
            self.assertTrue(c[2].endswith(os.path.join("build", "lib", "libnsa_course.so")), c)
        finally:
            os.environ.clear()
            os.environ.update(old)


class DenseAndWindowTest(unittest.TestCase):
    def test_flash_attention(self):
        rng = np.random.default_rng(1)
        for causal, (B, M, N, H, G, D), blocks in ((True, (1, 48, 64, 4, 2, 32), (16, 16)),
                                                   (False, (2, 17, 40, 2, 1, 16), (5, 7)),
                                                   (True, (1, 64, 64, 2, 2, 64), (64, 64))):
            q, k, v = problem(rng, B, M, N, H, G, D)
            o, lse = cpu.flash_attention(q, k, v, causal=causal, block_rows=blocks[0], block_cols=blocks[1])
            t, s = positions(M, N)
            ro, rl = ref_attention(q, k, v, (s <= t) if causal else np.ones((M, N), bool))
            np.testing.assert_allclose(o, ro, **TOL)
            np.testing.assert_allclose(lse, rl, **TOL)
            self.assertEqual((o.dtype, lse.dtype), (np.float32, np.float32))

    def test_flash_attention_scale(self):
        rng = np.random.default_rng(2)
        q, k, v = problem(rng)
        o, lse = cpu.flash_attention(q, k, v, scale=0.3)
        t, s = positions(48, 64)
        ro, rl = ref_attention(q, k, v, s <= t, scale=0.3)
        np.testing.assert_allclose(o, ro, **TOL)
        np.testing.assert_allclose(lse, rl, **TOL)

    def test_window_attention(self):
        rng = np.random.default_rng(3)
        q, k, v = problem(rng, B=2, M=40, N=70, H=4, G=1, D=16)
        for w in (1, 9, 70, 200):
            o, lse = cpu.window_attention(q, k, v, w)
            t, s = positions(40, 70)
            ro, rl = ref_attention(q, k, v, (s <= t) & (s >= t - w + 1))
            np.testing.assert_allclose(o, ro, **TOL)
            np.testing.assert_allclose(lse, rl, **TOL)


class NsaBranchesTest(unittest.TestCase):
    P = nc.NSAParams(l=8, d=4, l_sel=8, n=4, w=12)

    def test_compress_mean_and_linear(self):
        rng = np.random.default_rng(4)
        kv = rand(rng, 2, 37, 2, 16)
        np.testing.assert_allclose(cpu.compress(kv, self.P), ref_compress(kv, self.P), **TOL)
        lin = nc.NSAParams(l=8, d=4, l_sel=8, n=4, w=12, mode="linear")
        w, pos = rand(rng, 2, 8 * 16, 16) * 0.1, rand(rng, 8, 16)
        np.testing.assert_allclose(cpu.compress(kv, lin, w, pos), ref_compress(kv, lin, w, pos), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(cpu.compress(kv, lin, w), ref_compress(kv, lin, w), atol=1e-4, rtol=1e-4)
        self.assertEqual(cpu.compress(kv[:, :5].copy(), self.P).shape, (2, 0, 2, 16))  # N < l: no token

    def test_cmp_attention_with_empty_rows(self):
        rng = np.random.default_rng(5)
        q, k, v = problem(rng, M=40, N=40)
        kc, vc = cpu.compress(k, self.P), cpu.compress(v, self.P)
        o, lse = cpu.cmp_attention(q, kc, vc, self.P, n_keys=40)
        t = np.arange(40)[:, None]
        c = np.arange(kc.shape[1])[None, :]
        ro, rl = ref_attention(q, kc, vc, c * self.P.d + self.P.l - 1 <= t)
        np.testing.assert_allclose(o, ro, **TOL)
        np.testing.assert_allclose(lse, rl, **TOL)
        self.assertTrue(np.all(np.isneginf(lse[:, :, :self.P.l - 1])) and np.all(o[:, :self.P.l - 1] == 0))

    def test_select_is_scores_then_topn(self):
        rng = np.random.default_rng(6)
        q, k, v = problem(rng, M=64, N=64)
        kc = cpu.compress(k, self.P)
        _, lse = cpu.cmp_attention(q, kc, cpu.compress(v, self.P), self.P, 64)
        scores = cpu.block_scores(q, kc, lse, self.P, 64)
        lists = cpu.select(q, kc, lse, self.P, 64)
        np.testing.assert_array_equal(lists, cpu.topn(scores, self.P, 64))
        self.assertEqual(lists.shape, (1, 64, 2, 4))
        cpu.selection_check(lists, self.P, nc.Shape(1, 64, 64, 4, 2, 32))
        # the rules on the lists themselves: forced blocks, candidates only, ascending, -1 padding
        for i in range(64):
            for g in range(2):
                row = [j for j in lists[0, i, g] if j >= 0]
                blk = i // self.P.l_sel
                self.assertEqual(row, sorted(set(row)))
                self.assertTrue({0, blk, max(blk - 1, 0)} <= set(row), (i, row))
                self.assertTrue(all(j <= blk for j in row))
                self.assertEqual(len(row), min(4, blk + 1))

    def test_selected_attention(self):
        rng = np.random.default_rng(7)
        q, k, v = problem(rng, M=30, N=50)
        p = self.P
        lists = np.full((1, 30, 2, 4), -1, np.int32)
        lists[0, :, 0, :2] = [0, 3]
        lists[0, :, 1, :3] = [1, 2, 6]
        o, lse = cpu.selected_attention(q, k, v, lists, p)
        t, s = positions(30, 50)

        def visible(b, h):
            listed = [j for j in lists[b, 0, h // 2] if j >= 0]
            return (s <= t) & np.isin(s // p.l_sel, listed)
        ro, rl = ref_attention(q, k, v, visible)
        np.testing.assert_allclose(o, ro, **TOL)
        np.testing.assert_allclose(lse, rl, **TOL)


class ForwardTest(unittest.TestCase):
    def forward_case(self, p, H=4, G=2, M=56, N=72, D=32, seed=8):
        rng = np.random.default_rng(seed)
        q, k, v = problem(rng, B=2, M=M, N=N, H=H, G=G, D=D)
        gates = [rng.uniform(0, 1, (2, M, H)).astype(np.float32) for _ in range(3)]
        lin = {}
        if p.mode == "linear":
            lin = dict(w_k=rand(rng, G, p.l * D, D) * 0.05, w_v=rand(rng, G, p.l * D, D) * 0.05, pos=rand(rng, p.l, D))
        return q, k, v, gates, lin

    def composed(self, q, k, v, p, gates, lin):
        """The forward from lessons 05, 07, 08 and 09 through the same package."""
        N = k.shape[1]
        kc = cpu.compress(k, p, lin.get("w_k"), lin.get("pos"))
        vc = cpu.compress(v, p, lin.get("w_v"))
        o_cmp, lse_cmp = cpu.cmp_attention(q, kc, vc, p, N)
        lists = cpu.select(q, kc, lse_cmp, p, N)
        o_slc, lse_slc = cpu.selected_attention(q, k, v, lists, p)
        o_swa, lse_swa = cpu.window_attention(q, k, v, p.w)
        g = [x[..., None] for x in gates]
        return g[0] * o_cmp + g[1] * o_slc + g[2] * o_swa, lse_cmp, lse_slc, lse_swa, lists

    def test_forward_is_the_branches_gated(self):
        for p, H, G in ((nc.NSAParams(l=8, d=4, l_sel=16, n=4, w=20), 4, 2),
                        (nc.NSAParams(l=16, d=16, l_sel=16, n=3, w=8, heads_share_selection=False), 4, 1),
                        (nc.NSAParams(l=8, d=4, l_sel=8, n=5, w=16, mode="linear"), 2, 2)):
            q, k, v, gates, lin = self.forward_case(p, H, G)
            o, wts = cpu.nsa_forward(q, k, v, p, *gates, **lin, return_attn_weights=True)
            ro, lse_cmp, lse_slc, lse_swa, lists = self.composed(q, k, v, p, gates, lin)
            np.testing.assert_array_equal(wts.block_indices, lists)
            np.testing.assert_allclose(o, ro, atol=1e-4, rtol=1e-4)
            for got, want in ((wts.lse_cmp, lse_cmp), (wts.lse_slc, lse_slc), (wts.lse_swa, lse_swa)):
                np.testing.assert_allclose(got, want, **TOL)
            # the optional outputs change nothing in o
            np.testing.assert_array_equal(cpu.nsa_forward(q, k, v, p, *gates, **lin), o)
            self.assertIs(wts.slc.block_indices, wts.block_indices)
            self.assertIs(wts.cmp.gate, gates[0])
            self.assertIsNone(wts.swa.block_indices)

    def test_gates_default_to_one(self):
        p = nc.NSAParams(l=8, d=4, l_sel=16, n=4, w=20)
        q, k, v, _, _ = self.forward_case(p)
        ones = np.ones((2, 56, 4), np.float32)
        np.testing.assert_array_equal(cpu.nsa_forward(q, k, v, p), cpu.nsa_forward(q, k, v, p, ones, ones, ones))

    def test_weights_rebuilt(self):
        p = nc.NSAParams(l=8, d=4, l_sel=16, n=4, w=20)
        q, k, v, gates, _ = self.forward_case(p)
        o, wts = cpu.nsa_forward(q, k, v, p, *gates, return_attn_weights=True)
        s = wts.shape
        self.assertEqual((s.B, s.M, s.N, s.H, s.G, s.D), (2, 56, 72, 4, 2, 32))
        t, keys = positions(56, 72)
        b, h = 1, 3
        g = h // 2
        scale = 32 ** -0.5
        sc = scale * q[b, :, h].astype(np.float64) @ k[b, :, g].astype(np.float64).T
        for kind in ("cmp", "cmp_keys", "slc", "swa"):
            w = wts.matrix(kind, b, h)
            self.assertLess(wts.check(kind, b, h, w), 1e-5, kind)
            stats = wts.summary(kind, b, h, w)
            self.assertAlmostEqual(stats["gate_mean"], float(wts._gate(kind)[b, :, h].astype(np.float64).mean()), 6)
            self.assertAlmostEqual(stats["sparsity"], float((w == 0).mean()), 9)
            self.assertAlmostEqual(stats["max"], float(w.max()), 6)
        # the window and selected matrices are exp(score - lse) on their keys
        swa = np.where((keys <= t) & (keys >= t - p.w + 1), np.exp(sc - wts.lse_swa[b, h][:, None]), 0)
        np.testing.assert_allclose(wts.matrix("swa", b, h), swa, atol=1e-6, rtol=1e-5)
        listed = np.array([np.isin(keys[0] // p.l_sel, wts.block_indices[b, i, g]) for i in range(56)])
        slc = np.where((keys <= t) & listed, np.exp(sc - wts.lse_slc[b, h][:, None]), 0)
        np.testing.assert_allclose(wts.matrix("slc", b, h), slc, atol=1e-6, rtol=1e-5)
        # mean mode: the gated combination over the keys gives o exactly (a compressed value is the mean of
        # its values, so the compressed branch is the spread map times v)
        comb = wts.combined(b, h)
        np.testing.assert_allclose(comb @ v[b, :, g], o[b, :, h], atol=1e-4, rtol=1e-4)
        # another branch's lse: the rows no longer sum to 1, and the check sees it
        wrong = cpu.nsa_weights("swa", b, h, q, k, p, lse_swa=wts.lse_slc)
        self.assertGreater(wts.check("swa", b, h, wrong), 1e-3)

    def test_weights_linear_mode(self):
        p = nc.NSAParams(l=8, d=4, l_sel=8, n=5, w=16, mode="linear")
        q, k, v, gates, lin = self.forward_case(p, H=2, G=2)
        _, wts = cpu.nsa_forward(q, k, v, p, *gates, **lin, return_attn_weights=True)
        for kind in ("cmp", "cmp_keys", "slc", "swa"):
            self.assertLess(wts.check(kind, 0, 1), 1e-5, kind)

    def test_spread_by_hand(self):
        p = nc.NSAParams(l=4, d=2, l_sel=4, n=4, w=10)
        cw = np.zeros((1, p.num_cmp(10)), np.float32)  # 4 tokens over 10 keys
        cw[0, 1] = 1.0  # token 1 covers keys 2..5
        np.testing.assert_allclose(cpu.cmp_weights_to_keys(cw, p, 10)[0], [0, 0, .25, .25, .25, .25, 0, 0, 0, 0])


class BadInputTest(unittest.TestCase):
    P = nc.NSAParams(l=8, d=4, l_sel=8, n=4, w=12)

    def setUp(self):
        self.q, self.k, self.v = problem(np.random.default_rng(9))

    def raises(self, exc, fn, *parts):
        with self.assertRaises(exc) as cm:
            fn()
        for part in parts:
            self.assertIn(part, str(cm.exception))
        return cm.exception

    def test_types_and_dtypes(self):
        q, k, v = self.q, self.k, self.v
        self.raises(TypeError, lambda: cpu.flash_attention(q.tolist(), k, v), "q: expected a numpy.ndarray", "got list")
        self.raises(TypeError, lambda: cpu.flash_attention(q, k.astype(np.float64), v), "k: expected dtype float32",
                    "got float64")
        self.raises(TypeError, lambda: cpu.nsa_forward(q, k, v, (8, 4, 8, 4, 12)), "params: expected nsa_course.NSAParams",
                    "got tuple")
        lists = np.zeros((1, 48, 2, 4), np.int64)
        self.raises(TypeError, lambda: cpu.selected_attention(q, k, v, lists, self.P), "indices: expected dtype int32",
                    "got int64")
        self.raises(TypeError, lambda: nc.NSAParams(l=8.0, d=4, l_sel=8, n=4, w=12), "NSAParams.l: expected an int")
        self.raises(ValueError, lambda: nc.NSAParams(l=8, d=4, l_sel=8, n=4, w=12, mode="max"), "NSAParams.mode",
                    "'max'")

    def test_shapes(self):
        q, k, v = self.q, self.k, self.v
        self.raises(ValueError, lambda: cpu.flash_attention(q[0], k, v), "q: expected a 4-dimensional array [B, M, H, D]",
                    "got shape (48, 4, 32)")
        self.raises(ValueError, lambda: cpu.flash_attention(q, k[..., :16].copy(), v),
                    "k: expected shape [B, N, G, D] = (1, N, G, 32), got (1, 64, 2, 16): D is 32 (from q)")
        self.raises(ValueError, lambda: cpu.flash_attention(q, k, v[:, :60].copy()),
                    "v: expected shape [B, N, G, D] = (1, 64, 2, 32), got (1, 60, 2, 32): N is 64 (from k)")
        big_q = np.zeros((1, 65, 4, 32), np.float32)
        self.raises(ValueError, lambda: cpu.flash_attention(big_q, k, v), "M = 65 queries", "N = 64 keys", "M <= N")
        self.raises(ValueError, lambda: cpu.flash_attention(np.zeros((1, 48, 3, 32), np.float32), k, v),
                    "G = 2 kv heads must divide the H = 3 query heads")
        g = np.ones((1, 48, 3), np.float32)
        self.raises(ValueError, lambda: cpu.nsa_forward(q, k, v, self.P, g_slc=g),
                    "g_slc: expected shape [B, M, H] = (1, 48, 4), got (1, 48, 3)")
        kc = np.zeros((1, 10, 2, 32), np.float32)
        self.raises(ValueError, lambda: cpu.cmp_attention(q, kc, kc, self.P, n_keys=64),
                    "k_cmp: expected shape [B, NC, G, D] = (1, 15, G, 32), got (1, 10, 2, 32): NC is 15")
        lists = np.zeros((1, 48, 4, 4), np.int32)
        self.raises(ValueError, lambda: cpu.selected_attention(q, k, v, lists, self.P),
                    "indices: expected shape [B, M, L, n] = (1, 48, 2, 4), got (1, 48, 4, 4): L is 2 "
                    "(G (shared selection))")

    def test_contiguity(self):
        q, k, v = self.q, self.k, self.v
        self.raises(ValueError, lambda: cpu.flash_attention(q, k, v[:, ::-1]), "v: expected a C-contiguous array",
                    "np.ascontiguousarray")
        qt = np.ascontiguousarray(q.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
        self.raises(ValueError, lambda: cpu.window_attention(qt, k, v, 4), "q: expected a C-contiguous array")

    def test_missing_inputs(self):
        q, k, v = self.q, self.k, self.v
        lin = nc.NSAParams(l=8, d=4, l_sel=8, n=4, w=12, mode="linear")
        self.raises(ValueError, lambda: cpu.nsa_forward(q, k, v, lin), "w_k: linear mode needs w_k, w_v")
        self.raises(ValueError, lambda: cpu.compress(k, lin), "w: linear mode needs the map w [G, l*D, D]")
        _, wts = cpu.nsa_forward(q, k, v, self.P, return_attn_weights=True)
        self.raises(ValueError, lambda: cpu.nsa_weights("slc", 0, 0, q, k, self.P, lse_slc=wts.lse_slc),
                    "block_indices: the selected branch's weights need the block lists")
        self.raises(ValueError, lambda: cpu.nsa_weights("cmp", 0, 0, q, k, self.P, lse_swa=wts.lse_swa),
                    "lse_cmp: the cmp branch's weights are rebuilt from its own lse")
        self.raises(ValueError, lambda: wts.matrix("all", 0, 0), "kind: expected one of 'cmp', 'slc', 'swa'", "'all'")
        self.raises(ValueError, lambda: wts.matrix("swa", 0, 4), "h: expected 0 <= h < H = 4, got 4")
        self.raises(ValueError, lambda: wts.summary("swa", 1, 0), "b: expected 0 <= b < B = 1, got 1")
        self.raises(ValueError, lambda: wts.check("cmp", 0, 0, np.zeros((48, 64), np.float32)),
                    "weights: expected shape [M, C] = (48, 15), got (48, 64): C is 15 (the columns of cmp)")

    def test_c_errors_raise_nsacourseerror(self):
        q, k, v = self.q, self.k, self.v
        e = self.raises(nc.NSACourseError, lambda: cpu.window_attention(q, k, v, 0),
                        "window_attention_cpu failed with ATTN_ERR_BAD_ARGUMENT (6)", "window=0 must be >= 1")
        self.assertEqual((e.code, e.name, e.function), (6, "ATTN_ERR_BAD_ARGUMENT", "window_attention_cpu"))
        self.assertEqual(e.message, "bad argument")
        self.assertIn("window=0", e.detail)
        e = self.raises(nc.NSACourseError, lambda: cpu.flash_attention(q, k, v, block_rows=0), "Br=0")
        self.assertEqual(e.name, "ATTN_ERR_BAD_ARGUMENT")
        bad = nc.NSAParams(l=8, d=3, l_sel=8, n=4, w=12)  # d must divide l and l'
        e = self.raises(nc.NSACourseError, lambda: cpu.nsa_forward(q, k, v, bad), "nsa_forward_cpu failed")
        self.assertEqual(e.code, 6)
        e = self.raises(nc.NSACourseError, lambda: cpu.nsa_forward(q, k, v, nc.NSAParams(l=8, d=4, l_sel=8, n=2, w=12)),
                        "nsa_forward_cpu failed")
        self.assertTrue(e.detail, "the detail of attn_error_detail()")
        self.raises(nc.NSACourseError, lambda: cpu.flash_attention(q, k, v, block_cols=300), "must be in [1, 256]")
        lists = np.full((1, 48, 2, 4), -1, np.int32)
        lists[0, 5, 1, :2] = [3, 2]  # not ascending
        e = self.raises(nc.NSACourseError, lambda: cpu.selection_check(lists, self.P, nc.Shape(1, 48, 64, 4, 2, 32)),
                        "nsa_selection_check failed with ATTN_ERR_BAD_ARGUMENT")
        e = self.raises(nc.NSACourseError, lambda: cpu.selected_attention(q, k, v, lists, self.P),
                        "nsa_selected_attention_cpu failed")
        # a detail never leaks into the next call: a good call after a failed one succeeds
        cpu.window_attention(q, k, v, 4)

    def test_error_is_a_runtime_error(self):
        self.assertTrue(issubclass(nc.NSACourseError, RuntimeError))
        self.assertTrue(issubclass(nc.LibraryNotFoundError, OSError))


class ExamplesTest(unittest.TestCase):
    """python/examples/dump_weights.py and plot_weights.py on a small case, the C path."""

    def test_dump_then_plot(self):
        import json
        import tempfile
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))
        import dump_weights
        with tempfile.TemporaryDirectory() as tmp:
            npz = os.path.join(tmp, "w.npz")
            with open(os.devnull, "w") as quiet:
                old, sys.stdout = sys.stdout, quiet
                try:
                    self.assertEqual(dump_weights.main(["--n", "128", "--head", "2", "--out", npz]), 0)
                finally:
                    sys.stdout = old
            data = np.load(npz)
            meta = json.loads(str(data["meta"]))
            p = nc.NSAParams(**{k: v for k, v in meta["params"].items() if k != "mode"}, mode=meta["params"]["mode"])
            self.assertEqual(data["cmp"].shape, (128, p.num_cmp(128)))
            for kind in ("cmp_keys", "slc", "swa", "combined"):
                self.assertEqual(data[kind].shape, (128, 128), kind)
            self.assertEqual(data["block_indices"].shape, (128, p.n))
            np.testing.assert_allclose(data["combined"], data["g_cmp"][:, None] * data["cmp_keys"] +
                                       data["g_slc"][:, None] * data["slc"] + data["g_swa"][:, None] * data["swa"],
                                       atol=1e-6)
            self.assertTrue(all(worst < 1e-5 for worst in meta["check"].values()), meta["check"])
            self.assertEqual((meta["h"], meta["tag"]), (2, "cpu"))
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                self.skipTest("matplotlib is not installed: plot_weights.py not run")
            import plot_weights
            png = os.path.join(tmp, "w.png")
            with open(os.devnull, "w") as quiet:
                old, sys.stdout = sys.stdout, quiet
                try:
                    self.assertEqual(plot_weights.main([npz, "--out", png]), 0)
                finally:
                    sys.stdout = old
            with open(png, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    print(f"nsa_course against {nc.library().path}")
    unittest.main(verbosity=1 if "-v" not in sys.argv else 2)
