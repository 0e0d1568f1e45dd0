"""The CUDA parts on PyTorch CUDA tensors: bf16 q, k, v, w, pos, o and compressed k, v; fp32 gates,
lse and weights; int32 block lists. Layouts as in nsa_course.cpu.

Every tensor must be contiguous and on the device of the first tensor argument; bf16 data 16-byte
aligned, fp32 and int32 4-byte aligned (a fresh tensor is; a view into a larger one may not be). The
kernels are enqueued on torch.cuda.current_stream() of that device, with that device current, and the
call returns without waiting: use the results on the same stream (as torch does) or synchronise. The
outputs, and the forward's workspace, are allocated through torch (its caching allocator, on that
stream). No autograd: the results are plain tensors.
"""
import torch

from . import _lib
from ._check import Dims, torch_tensor
from .core import NSAParams, Shape, weights_kind
from .weights import NSAAttnWeights

_call, _ref = _lib.call, _lib.ref
BF16, F32, I32 = torch.bfloat16, torch.float32, torch.int32
_ALIGN = {BF16: 16, F32: 4, I32: 4, torch.uint8: 16}


class _Args:
    """The tensors of one call: checked one by one, the sizes bound by letter and the device by the first."""

    def __init__(self, **fixed):
        self.dims, self.device = Dims(**fixed), None

    def __call__(self, name, x, layout, dtype):
        addr, self.device = torch_tensor(name, x, layout, self.dims, dtype, self.device, _ALIGN[dtype])
        return addr

    def optional(self, name, x, layout, dtype):
        return None if x is None else self(name, x, layout, dtype)

    def empty(self, *shape, dtype):
        return torch.empty(shape, dtype=dtype, device=self.device)

    def launch(self, name, *args):
        """Call C function `name` with the current stream of the tensors' device as its last argument."""
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device).cuda_stream
            _call(name, *args, stream)


def _params(params):
    if not isinstance(params, NSAParams):
        raise TypeError(f"params: expected nsa_course.NSAParams, got {type(params).__name__}")
    return params


def _shape(a, scale, causal=True):
    B, M, N, H, G, D = (a.dims[x] for x in "BMNHGD")
    if M > N:
        raise ValueError(f"q: M = {M} queries but k has N = {N} keys: the queries are the last M of the N positions, "
                         f"so M <= N")
    if G < 1 or H % G:
        raise ValueError(f"k: G = {G} kv heads must divide the H = {H} query heads of q")
    return Shape(B, M, N, H, G, D, 0.0 if scale is None else float(scale), 1 if causal else 0)


def _qkv(q, k, v, scale, causal=True, **fixed):
    a = _Args(**fixed)
    ptrs = (a("q", q, ("B", "M", "H", "D"), BF16), a("k", k, ("B", "N", "G", "D"), BF16),
            a("v", v, ("B", "N", "G", "D"), BF16))
    return a, _shape(a, scale, causal), ptrs


def _o_lse(a, s):
    return a.empty(s.B, s.M, s.H, s.D, dtype=BF16), a.empty(s.B, s.H, s.M, dtype=F32)


# ---------------------------------------------------------------- lesson 03

def flash_attention(q, k, v, causal=True, scale=None):
    """Lesson 03's flash_attention_cuda (tensor cores). D = 64 or 128. Returns (o bf16, lse fp32)."""
    a, s, (qp, kp, vp) = _qkv(q, k, v, scale, causal)
    o, lse = _o_lse(a, s)
    a.launch("flash_attention_cuda", _ref(s.c()), qp, kp, vp, o.data_ptr(), lse.data_ptr())
    return o, lse


# ---------------------------------------------------------------- lesson 05

def window_attention(q, k, v, window, scale=None):
    """Lesson 05's window_attention_cuda: keys t - window + 1 .. t. Returns (o, lse)."""
    a, s, (qp, kp, vp) = _qkv(q, k, v, scale)
    o, lse = _o_lse(a, s)
    a.launch("window_attention_cuda", _ref(s.c()), int(window), qp, kp, vp, o.data_ptr(), lse.data_ptr())
    return o, lse


# ---------------------------------------------------------------- lesson 07

def compress(kv, params, w=None, pos=None):
    """Lesson 07's nsa_compress_cuda: kv [B, N, G, D] -> kv_cmp [B, NC, G, D] (bf16, fp32 accumulation).
    Linear mode needs w [G, l*D, D]; pos [l, D] for the keys only."""
    p = _params(params)
    a = _Args()
    kvp = a("kv", kv, ("B", "N", "G", "D"), BF16)
    wp = pp = None
    if p.mode == "linear":
        if w is None:
            raise ValueError("w: linear mode needs the map w [G, l*D, D]")
        a.dims.bind("lD", p.l * a.dims["D"], "l * D")
        a.dims.bind("l", p.l, "params.l")
        wp, pp = a("w", w, ("G", "lD", "D"), BF16), a.optional("pos", pos, ("l", "D"), BF16)
    B, N, G, D = (a.dims[x] for x in "BNGD")
    s = Shape(B, N, N, G, G, D)  # shape.M is not used by the compression but must be valid
    out = a.empty(B, p.num_cmp(N), G, D, dtype=BF16)
    if out.numel():
        a.launch("nsa_compress_cuda", _ref(s.c()), _ref(p.c()), kvp, wp, pp, out.data_ptr())
    return out


def _cmp_args(q, k_cmp, params, n_keys):
    p = _params(params)
    n_keys = int(n_keys)
    a = _Args(N=(n_keys, "n_keys"), NC=(p.num_cmp(n_keys), f"NC = max(0, floor((n_keys - l) / d) + 1) with "
                                                          f"n_keys = {n_keys}, l = {p.l}, d = {p.d}"))
    return p, a, a("q", q, ("B", "M", "H", "D"), BF16), a("k_cmp", k_cmp, ("B", "NC", "G", "D"), BF16)


def cmp_attention(q, k_cmp, v_cmp, params, n_keys, scale=None):
    """Lesson 07's nsa_cmp_attention_cuda over the compressed tokens of n_keys keys. Returns (o, lse)."""
    p, a, qp, kp = _cmp_args(q, k_cmp, params, n_keys)
    vp = a("v_cmp", v_cmp, ("B", "NC", "G", "D"), BF16)
    s = _shape(a, scale)
    o, lse = _o_lse(a, s)
    a.launch("nsa_cmp_attention_cuda", _ref(s.c()), _ref(p.c()), qp, kp, vp, o.data_ptr(), lse.data_ptr())
    return o, lse


# ---------------------------------------------------------------- lesson 08

def select(q, k_cmp, lse_cmp, params, n_keys, scale=None):
    """Lesson 08's nsa_select_cuda: the block lists [B, M, L, n] int32 from q, k_cmp and lse_cmp (fp32)."""
    p, a, qp, kp = _cmp_args(q, k_cmp, params, n_keys)
    lp = a("lse_cmp", lse_cmp, ("B", "H", "M"), F32)
    s = _shape(a, scale)
    out = a.empty(s.B, s.M, p.list_heads(s.H, s.G), p.n, dtype=I32)
    a.launch("nsa_select_cuda", _ref(s.c()), _ref(p.c()), qp, kp, lp, out.data_ptr())
    return out


# ---------------------------------------------------------------- lesson 09

def _lists(a, name, indices, p, s):
    a.dims.bind("L", p.list_heads(s.H, s.G), "G (shared selection)" if p.heads_share_selection else "H (per head)")
    a.dims.bind("n", p.n, "params.n")
    return a(name, indices, ("B", "M", "L", "n"), I32)


def selected_attention(q, k, v, indices, params, scale=None):
    """Lesson 09's nsa_selected_attention_cuda over the listed blocks (indices [B, M, L, n] int32; the kernel
    cannot check device lists: nsa_course.cpu.selection_check checks a host copy). Returns (o, lse)."""
    p = _params(params)
    a, s, (qp, kp, vp) = _qkv(q, k, v, scale)
    ip = _lists(a, "indices", indices, p, s)
    o, lse = _o_lse(a, s)
    a.launch("nsa_selected_attention_cuda", _ref(s.c()), _ref(p.c()), qp, kp, vp, ip, o.data_ptr(), lse.data_ptr())
    return o, lse


# ---------------------------------------------------------------- lesson 10

def nsa_forward_workspace_bytes(shape, params):
    """Lesson 10's nsa_forward_workspace_bytes: the device workspace nsa_forward_cuda needs (0 for a
    problem it rejects)."""
    return int(_lib.library().nsa_forward_workspace_bytes(_ref(shape.c()), _ref(_params(params).c())))


def _workspace(a, s, p, workspace):
    need = nsa_forward_workspace_bytes(s, p)
    if workspace is None:
        workspace = a.empty(max(need, 16), dtype=torch.uint8)
    else:
        a("workspace", workspace, ("bytes",), torch.uint8)
        if workspace.numel() < need:
            raise ValueError(f"workspace: expected at least {need} bytes (nsa_forward_workspace_bytes), got "
                             f"{workspace.numel()}")
    return workspace


def nsa_forward(q, k, v, params, g_cmp=None, g_slc=None, g_swa=None, w_k=None, w_v=None, pos=None, scale=None,
                return_attn_weights=False, workspace=None):
    """Lesson 10's nsa_forward_cuda: o [B, M, H, D] bf16 = g_cmp o_cmp + g_slc o_slc + g_swa o_swa.

    Gates [B, M, H] fp32 (None: all 1). Linear mode needs w_k, w_v [G, l*D, D] and pos [l, D] (bf16).
    workspace: a uint8 CUDA tensor of at least nsa_forward_workspace_bytes bytes, or None to have one
    allocated through torch for this call (pass your own to reuse it, or inside a CUDA graph capture).
    With return_attn_weights=True returns (o, NSAAttnWeights) as nsa_course.cpu.nsa_forward does, the
    tensors on the GPU; its matrices are rebuilt by nsa_weights_cuda."""
    p = _params(params)
    a, s, (qp, kp, vp) = _qkv(q, k, v, scale)
    wkp = wvp = pp = None
    if p.mode == "linear":
        for name, x in (("w_k", w_k), ("w_v", w_v), ("pos", pos)):
            if x is None:
                raise ValueError(f"{name}: linear mode needs w_k, w_v [G, l*D, D] and pos [l, D]; {name} is None")
        a.dims.bind("lD", p.l * s.D, f"l * D = {p.l} * {s.D}")
        a.dims.bind("l", p.l, "params.l")
        wkp, wvp = a("w_k", w_k, ("G", "lD", "D"), BF16), a("w_v", w_v, ("G", "lD", "D"), BF16)
        pp = a("pos", pos, ("l", "D"), BF16)
    gates = []
    for name, g in (("g_cmp", g_cmp), ("g_slc", g_slc), ("g_swa", g_swa)):
        g = torch.ones(s.B, s.M, s.H, dtype=F32, device=a.device) if g is None else g
        a(name, g, ("B", "M", "H"), F32)
        gates.append(g)
    ws = _workspace(a, s, p, workspace)
    o = a.empty(s.B, s.M, s.H, s.D, dtype=BF16)
    lse, lists = [None] * 3, None
    if return_attn_weights:
        lse = [a.empty(s.B, s.H, s.M, dtype=F32) for _ in range(3)]
        lists = a.empty(s.B, s.M, p.list_heads(s.H, s.G), p.n, dtype=I32)
    addr = [None if x is None else x.data_ptr() for x in lse + [lists]]
    a.launch("nsa_forward_cuda", _ref(s.c()), _ref(p.c()), qp, kp, vp, wkp, wvp, pp, *(g.data_ptr() for g in gates),
             o.data_ptr(), *addr, ws.data_ptr(), ws.numel())
    if not return_attn_weights:
        return o
    linear = p.mode == "linear"
    return o, NSAAttnWeights(_CudaWeights, s, p, q, k, w_k if linear else None, pos if linear else None, *lse, lists,
                             *gates)


def nsa_weights(kind, b, h, q, k, params, lse_cmp=None, lse_slc=None, lse_swa=None, block_indices=None, w_k=None,
                pos=None, n_keys=None, scale=None, workspace=None):
    """Lesson 10's nsa_weights_cuda: branch `kind` ("cmp", "slc", "swa") of (b, h) as a probability matrix
    (fp32 CUDA tensor, [M, NC] or [M, N]), rebuilt from q, k and the branch's lse; "cmp" compresses the keys
    of batch b again into a workspace (allocated through torch when None)."""
    p = _params(params)
    c_kind = weights_kind(kind, ("cmp", "slc", "swa"))
    a = _Args()
    qp, kp = a("q", q, ("B", "M", "H", "D"), BF16), a("k", k, ("B", "N", "G", "D"), BF16)
    s = _shape(a, scale)
    if not (0 <= int(b) < s.B):
        raise ValueError(f"b: expected 0 <= b < B = {s.B}, got {b}")
    if not (0 <= int(h) < s.H):
        raise ValueError(f"h: expected 0 <= h < H = {s.H}, got {h}")
    lses = {"cmp": lse_cmp, "slc": lse_slc, "swa": lse_swa}
    if lses[kind] is None:
        raise ValueError(f"lse_{kind}: the {kind} branch's weights are rebuilt from its own lse [B, H, M]; it is None")
    lp = {n: a.optional(f"lse_{n}", x, ("B", "H", "M"), F32) for n, x in lses.items()}
    ip = None
    if kind == "slc":
        if block_indices is None:
            raise ValueError("block_indices: the selected branch's weights need the block lists [B, M, L, n]")
        ip = _lists(a, "block_indices", block_indices, p, s)
    wkp = pp = None
    ws, ws_bytes = None, 0
    if kind == "cmp":
        if p.mode == "linear":
            if w_k is None or pos is None:
                raise ValueError("w_k, pos: linear mode compresses the keys again with w_k [G, l*D, D] and pos [l, D]")
            a.dims.bind("lD", p.l * s.D, "l * D")
            a.dims.bind("l", p.l, "params.l")
            wkp, pp = a("w_k", w_k, ("G", "lD", "D"), BF16), a("pos", pos, ("l", "D"), BF16)
        ws = _workspace(a, s, p, workspace)
        ws_bytes = ws.numel()
    cols = p.num_cmp(s.N) if kind == "cmp" else s.N
    out = a.empty(s.M, cols, dtype=F32)
    if out.numel():
        a.launch("nsa_weights_cuda", _ref(s.c()), _ref(p.c()), c_kind, int(b), int(h), qp, kp, wkp, pp, ip, lp["cmp"],
                 lp["slc"], lp["swa"], out.data_ptr(), None if ws is None else ws.data_ptr(), ws_bytes)
    return out


def cmp_weights_to_keys(cmp_weights, params, n_keys):
    """Lesson 10's nsa_cmp_weights_to_keys_cuda: compressed weights [M, NC] (fp32 CUDA tensor) spread over
    the keys [M, N]."""
    p = _params(params)
    n_keys = int(n_keys)
    a = _Args(NC=(p.num_cmp(n_keys), f"NC of n_keys = {n_keys}"))
    cp = a("cmp_weights", cmp_weights, ("M", "NC"), F32)
    M = a.dims["M"]
    if M > n_keys:
        raise ValueError(f"cmp_weights: M = {M} rows but n_keys = {n_keys}: M <= N")
    s = Shape(1, M, n_keys, 1, 1, 64)  # only M, N and the parameters matter to the spread
    out = a.empty(M, n_keys, dtype=F32)
    a.launch("nsa_cmp_weights_to_keys_cuda", _ref(s.c()), _ref(p.c()), cp, out.data_ptr())
    return out


class _CudaWeights:
    """What NSAAttnWeights calls for the CUDA path."""
    nsa_weights = staticmethod(nsa_weights)
    cmp_weights_to_keys = staticmethod(cmp_weights_to_keys)
