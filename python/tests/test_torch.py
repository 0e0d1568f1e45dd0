#!/usr/bin/env python3
"""The torch path of nsa_course (the CUDA parts) against the shared library: CTest's python.torch.

Without a GPU (PyTorch present) it runs what needs none: the example's PyTorch NSA reference
(python/examples/nsa_torch_example.py) against the C part, and the checks that refuse a tensor before
anything reaches CUDA (a NumPy array, a CPU tensor, a wrong dtype). With a GPU, every CUDA wrapper
against a reference: the dense and window attention against fp32 PyTorch, the NSA branches and the
weights helpers against the C part on the same bf16 values, the forward against the reference on the
kernel's own lists; the forward on a side stream and in a CUDA graph; and the bad inputs that need a
device (mixed devices, strides, alignment, what the kernels refuse).

    NSA_COURSE_LIB=build/lib/libnsa_course.so python3 python/tests/test_torch.py [-v]

Exits 77 (CTest's skip) without PyTorch or NumPy, and, after the tests that need no GPU passed, without
a CUDA device, saying which.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"{e.name} is not installed for {sys.executable}: the torch tests of python/ are skipped")
    sys.exit(77)

import nsa_course as nc  # noqa: E402
from nsa_course import cpu  # noqa: E402
from nsa_torch_example import make_inputs, nsa_reference  # noqa: E402

HAVE_CUDA = torch.cuda.is_available()
BF16_TOL = dict(atol=2e-2, rtol=2e-2)  # ATTN_TOL_BF16: bf16 outputs


def as_np(x):
    return x.detach().float().cpu().contiguous().numpy()


class ReferenceAgainstCPartTest(unittest.TestCase):
    """The example's reference must be NSA: it agrees with lesson 10's C part (fp32, no GPU needed)."""

    def check(self, p, B=1, M=None, N=300, H=4, G=2, D=16, seed=0, x=None):
        x = x or make_inputs(p, B, M or N, N, H, G, D, "cpu", seed)
        o, wts = cpu.nsa_forward(**{k: v.numpy() for k, v in x.items()}, params=p, return_attn_weights=True)
        ro, ref = nsa_reference(**x, p=p)
        np.testing.assert_array_equal(ref["block_indices"].numpy(), wts.block_indices)
        np.testing.assert_allclose(ro.numpy(), o, atol=1e-5, rtol=1e-5)
        for key in ("lse_cmp", "lse_slc", "lse_swa"):
            np.testing.assert_allclose(ref[key].numpy(), getattr(wts, key), atol=1e-5, rtol=1e-5)

    def test_configurations(self):
        base = dict(l=8, d=4, l_sel=16, n=5, w=24)
        self.check(nc.NSAParams(**base))  # 19 blocks, n = 5: the top-n ranks
        self.check(nc.NSAParams(**base, mode="linear"), seed=1)
        self.check(nc.NSAParams(**base, heads_share_selection=False), seed=2)
        self.check(nc.NSAParams(l=16, d=16, l_sel=16, n=3, w=8), B=2, M=77, N=133, H=2, G=1, seed=3)
        self.check(nc.NSAParams(l=8, d=4, l_sel=16, n=8, w=24), N=40, seed=4)  # fewer blocks than n: -1
        self.check(nc.NSAParams(l=32, d=16, l_sel=64, n=4, w=16), N=20, seed=5)  # N < l: no compressed token

    def test_exact_ties_go_to_the_lower_index(self):
        p = nc.NSAParams(l=8, d=8, l_sel=8, n=4, w=8)
        x = make_inputs(p, 1, 96, 96, 2, 1, 16, "cpu", 6)
        x["k"] = x["k"][:, :8].repeat(1, 12, 1, 1).contiguous()  # every block the same keys: all scores equal
        self.check(p, N=96, H=2, G=1, x=x)


class RefusedBeforeCudaTest(unittest.TestCase):
    """What the checks refuse without touching a GPU."""

    def test_not_a_cuda_tensor(self):
        from nsa_course import cuda
        q = torch.zeros(1, 8, 2, 64, dtype=torch.bfloat16)
        with self.assertRaisesRegex(TypeError, r"q: expected a torch.Tensor of torch.bfloat16 .* got ndarray"):
            cuda.flash_attention(q.float().numpy(), q, q)
        with self.assertRaisesRegex(TypeError, r"q: expected dtype torch.bfloat16, got torch.float32"):
            cuda.flash_attention(q.float(), q, q)
        with self.assertRaisesRegex(ValueError, r"q: expected a CUDA tensor, got one on cpu"):
            cuda.flash_attention(q, q, q)
        with self.assertRaisesRegex(TypeError, r"params: expected nsa_course.NSAParams, got dict"):
            cuda.nsa_forward(q, q, q, {"l": 32})


def ref_attention(q, k, v, visible, scale=None):
    """fp32 dense attention over visible [M, N] (or broadcasting to [B, H, M, N]); (o, lse)."""
    q, k, v = q.float(), k.float(), v.float()
    R = q.shape[2] // k.shape[2]
    s = torch.einsum("bmhd,bnhd->bhmn", q, k.repeat_interleave(R, 2)) * (scale or q.shape[-1] ** -0.5)
    s = s.masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(s, -1)
    p = torch.exp(s - lse[..., None]).nan_to_num(0.0)
    return torch.einsum("bhmn,bnhd->bmhd", p, v.repeat_interleave(R, 2)), lse


@unittest.skipUnless(HAVE_CUDA, "no CUDA device")
class CudaTest(unittest.TestCase):
    P = nc.NSAParams(l=32, d=16, l_sel=64, n=6, w=128)

    @classmethod
    def setUpClass(cls):
        from nsa_course import cuda
        cls.cuda = cuda

    def qkv(self, B=1, M=320, N=512, H=8, G=2, D=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        return [torch.randn(*s, generator=g).bfloat16().cuda() for s in ((B, M, H, D), (B, N, G, D), (B, N, G, D))]

    def visible(self, M, N):
        return torch.arange(N - M, N, device="cuda")[:, None], torch.arange(N, device="cuda")[None, :]

    def close(self, got, want, tol=BF16_TOL, msg=None):
        torch.testing.assert_close(got.float(), want.float(), **tol, msg=msg)

    def test_flash_and_window(self):
        for causal, dims in ((True, (1, 320, 512, 8, 2, 64)), (False, (2, 100, 100, 4, 4, 128))):
            q, k, v = self.qkv(*dims)
            o, lse = self.cuda.flash_attention(q, k, v, causal=causal)
            t, s = self.visible(dims[1], dims[2])
            ro, rl = ref_attention(q, k, v, (s <= t) if causal else torch.ones_like(s <= t))
            self.assertEqual((o.dtype, lse.dtype, o.device), (torch.bfloat16, torch.float32, q.device))
            self.close(o, ro)
            self.close(lse, rl, dict(atol=1e-3, rtol=1e-4))
        q, k, v = self.qkv()
        t, s = self.visible(320, 512)
        o, lse = self.cuda.window_attention(q, k, v, 100)
        ro, rl = ref_attention(q, k, v, (s <= t) & (s > t - 100))
        self.close(o, ro)
        self.close(lse, rl, dict(atol=1e-3, rtol=1e-4))

    def test_branches_against_the_c_part(self):
        p = self.P
        q, k, v = self.qkv()
        kc, vc = self.cuda.compress(k, p), self.cuda.compress(v, p)
        self.close(kc, torch.from_numpy(cpu.compress(as_np(k), p)))
        o, lse = self.cuda.cmp_attention(q, kc, vc, p, n_keys=512)
        co, cl = cpu.cmp_attention(as_np(q), as_np(kc), as_np(vc), p, 512)
        self.close(o, torch.from_numpy(co))
        torch.testing.assert_close(lse.cpu(), torch.from_numpy(cl), atol=1e-3, rtol=1e-4)  # -inf rows match exactly
        lists = self.cuda.select(q, kc, lse, p, n_keys=512)
        clists = cpu.select(as_np(q), as_np(kc), as_np(lse), p, 512)
        same = (np.sort(lists.cpu().numpy(), -1) == np.sort(clists, -1)).all(-1)
        self.assertGreaterEqual(same.mean(), 0.99, "lists may differ only at rare fp32 near-ties")
        cpu.selection_check(lists.cpu().numpy(), p, nc.Shape(1, 320, 512, 8, 2, 64))
        o, lse = self.cuda.selected_attention(q, k, v, lists, p)
        co, cl = cpu.selected_attention(as_np(q), as_np(k), as_np(v), lists.cpu().numpy(), p)
        self.close(o, torch.from_numpy(co))
        self.close(lse.cpu(), torch.from_numpy(cl), dict(atol=1e-3, rtol=1e-4))
        lin = nc.NSAParams(l=32, d=16, l_sel=64, n=6, w=128, mode="linear")
        w = (torch.randn(2, 32 * 64, 64) / 45).bfloat16().cuda()
        pos = torch.randn(32, 64).bfloat16().cuda()
        # the kernel rounds each key row plus pos to bf16 before the map: compare in bf16's tolerance
        self.close(self.cuda.compress(k, lin, w, pos), torch.from_numpy(cpu.compress(as_np(k), lin, as_np(w), as_np(pos))))

    def test_forward_against_the_reference(self):
        for p in (nc.NSAParams.mean_pool(), nc.NSAParams.paper(),
                  nc.NSAParams(l=32, d=16, l_sel=64, n=16, w=512, mode="linear"),
                  nc.NSAParams(l=32, d=16, l_sel=64, n=16, w=512, heads_share_selection=False)):
            x = make_inputs(p, 1, 1024, 1536, 16, 1, 128, "cuda", seed=3)
            for key in ("q", "k", "v", "w_k", "w_v", "pos"):
                if key in x:
                    x[key] = x[key].bfloat16()
            o, wts = self.cuda.nsa_forward(**x, params=p, return_attn_weights=True)
            ref_o, ref = nsa_reference(**x, p=p, lists=wts.block_indices)
            self.close(o, ref_o, msg=lambda m: f"{p}: {m}")
            for key in ("lse_slc", "lse_swa"):
                self.close(getattr(wts, key), ref[key], dict(atol=1e-3, rtol=1e-4))
            self.close(wts.lse_cmp, ref["lse_cmp"], dict(atol=2e-2, rtol=1e-3))  # bf16 compressed keys
            self.assertTrue(torch.equal(self.cuda.nsa_forward(**x, params=p), o), "the optional outputs change o")
            cpu.selection_check(wts.block_indices.cpu().numpy(), p, wts.shape)

    def test_weights_against_the_c_part(self):
        p = self.P
        q, k, v = self.qkv(B=2)
        gates = [torch.rand(2, 320, 8, device="cuda") for _ in range(3)]
        o, wts = self.cuda.nsa_forward(q, k, v, p, *gates, return_attn_weights=True)
        host = dict(lse_cmp=as_np(wts.lse_cmp), lse_slc=as_np(wts.lse_slc), lse_swa=as_np(wts.lse_swa),
                    block_indices=wts.block_indices.cpu().numpy())
        b, h = 1, 5
        for kind in ("cmp", "slc", "swa"):
            got = wts.matrix(kind, b, h)
            self.assertEqual((got.dtype, got.device), (torch.float32, q.device))
            want = cpu.nsa_weights(kind, b, h, as_np(q), as_np(k), p, **host)
            torch.testing.assert_close(got.cpu(), torch.from_numpy(want), atol=1e-5, rtol=2e-3)
            self.assertLess(wts.check(kind, b, h, got), 1e-4, kind)
        spread = wts.matrix("cmp_keys", b, h)
        want = cpu.cmp_weights_to_keys(as_np(wts.matrix("cmp", b, h)), p, 512)
        torch.testing.assert_close(spread.cpu(), torch.from_numpy(want), atol=1e-6, rtol=1e-5)
        self.assertLess(wts.check("cmp_keys", b, h), 1e-4)
        stats = wts.summary("swa", b, h)
        self.assertAlmostEqual(stats["gate_mean"], float(gates[2][b, :, h].double().mean()), 5)
        # mean mode: the gated combination over the keys, times v, is o (to bf16's tolerance)
        comb = wts.combined(b, h)
        self.close(o[b, :, h], comb @ v[b, :, h // 4].float())

    def test_streams_graphs_and_workspace(self):
        p = self.P
        q, k, v = self.qkv()
        want = self.cuda.nsa_forward(q, k, v, p)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            got = self.cuda.nsa_forward(q, k, v, p)  # enqueued on `side`, the current stream there
        torch.cuda.current_stream().wait_stream(side)
        self.assertTrue(torch.equal(got, want))
        need = self.cuda.nsa_forward_workspace_bytes(nc.Shape(1, 320, 512, 8, 2, 64), p)
        ws = torch.empty(need, dtype=torch.uint8, device="cuda")
        self.assertTrue(torch.equal(self.cuda.nsa_forward(q, k, v, p, workspace=ws), want))
        with self.assertRaisesRegex(ValueError, rf"workspace: expected at least {need} bytes"):
            self.cuda.nsa_forward(q, k, v, p, workspace=ws[:need - 16])
        ones = torch.ones(1, 320, 8, device="cuda")
        graph = torch.cuda.CUDAGraph()
        self.cuda.nsa_forward(q, k, v, p, ones, ones, ones, workspace=ws)  # warm-up outside the capture
        with torch.cuda.graph(graph):
            out = self.cuda.nsa_forward(q, k, v, p, ones, ones, ones, workspace=ws)
        graph.replay()
        torch.cuda.synchronize()
        self.assertTrue(torch.equal(out, want))

    def test_bad_inputs_on_the_device(self):
        q, k, v = self.qkv()
        p = self.P
        with self.assertRaisesRegex(ValueError, r"k: expected a tensor on cuda:0 .* got one on cpu"):
            self.cuda.flash_attention(q, k.cpu(), v)
        with self.assertRaisesRegex(ValueError, r"v: expected a contiguous tensor, got strides"):
            self.cuda.flash_attention(q, k, v.transpose(1, 2).contiguous().transpose(1, 2))
        shifted = torch.empty(q.numel() + 1, dtype=torch.bfloat16, device="cuda")[1:].view(q.shape)
        with self.assertRaisesRegex(ValueError, r"q: expected data aligned to 16 bytes, got an address 2 bytes past"):
            self.cuda.flash_attention(shifted, k, v)
        with self.assertRaisesRegex(ValueError, r"k: expected shape \[B, N, G, D\] = \(1, N, G, 64\), got"):
            self.cuda.window_attention(q, k[..., :32].contiguous(), v, 16)
        with self.assertRaisesRegex(TypeError, r"g_cmp: expected dtype torch.float32, got torch.bfloat16"):
            self.cuda.nsa_forward(q, k, v, p, g_cmp=torch.ones(1, 320, 8, dtype=torch.bfloat16, device="cuda"))
        q80, k80, v80 = self.qkv(D=80)
        with self.assertRaises(nc.NSACourseError) as cm:
            self.cuda.flash_attention(q80, k80, v80)
        self.assertEqual(cm.exception.name, "ATTN_ERR_UNSUPPORTED_D")
        with self.assertRaises(nc.NSACourseError) as cm:
            self.cuda.window_attention(q, k, v, 0)
        self.assertEqual(cm.exception.name, "ATTN_ERR_BAD_ARGUMENT")
        with self.assertRaises(nc.NSACourseError) as cm:
            self.cuda.nsa_forward(q, k, v, nc.NSAParams(l=32, d=16, l_sel=64, n=2, w=128))
        self.assertIn("nsa_forward_cuda", str(cm.exception))


if __name__ == "__main__":
    print(f"nsa_course against {nc.library().path}; torch {torch.__version__}, "
          f"{'GPU: ' + torch.cuda.get_device_name() if HAVE_CUDA else 'no CUDA device'}")
    result = unittest.main(exit=False, verbosity=2 if "-v" in sys.argv else 1).result
    if not result.wasSuccessful():
        sys.exit(1)
    if not HAVE_CUDA:
        print("no CUDA device (torch.cuda.is_available() is False): the GPU tests of the torch path were skipped; "
              "the reference and the checks that need no GPU passed")
        sys.exit(77)
