"""The C parts on NumPy arrays: float32 in, float32 out (int32 block lists), host memory.

Layouts (common/README.md, "Conventions"): q, o [B, M, H, D]; k, v [B, N, G, D]; lse [B, H, M]
(natural log); gates [B, M, H]; compressed k, v [B, NC, G, D]; block lists [B, M, L, n] int32 with
L = G (shared selection) or H (per head). Query i sits at position t = N - M + i; query head h reads
kv head h / (H / G). Every input is checked first (TypeError or ValueError naming it); a call the C
function refuses raises NSACourseError with its code, name and detail. Outputs are new arrays.
"""
import ctypes

import numpy as np

from . import _lib
from ._check import Dims, address, np_array, np_optional
from .core import NSAParams, Shape, weights_kind
from .weights import NSAAttnWeights, stats_dict

_call, _ref = _lib.call, _lib.ref


def _scale(scale):
    return 0.0 if scale is None else float(scale)


def _params(params):
    if not isinstance(params, NSAParams):
        raise TypeError(f"params: expected nsa_course.NSAParams, got {type(params).__name__}")
    return params


def _qkv(q, k, v, scale, causal=True):
    """Check q [B, M, H, D], k and v [B, N, G, D]; the Shape and the three addresses."""
    dims = Dims()
    qp = np_array("q", q, ("B", "M", "H", "D"), dims)
    kp = np_array("k", k, ("B", "N", "G", "D"), dims)
    vp = np_array("v", v, ("B", "N", "G", "D"), dims)
    shape = _shape(dims, scale, causal)
    return shape, dims, qp, kp, vp


def _shape(dims, scale, causal):
    B, M, N, H, G, D = (dims[x] for x in "BMNHGD")
    if M > N:
        raise ValueError(f"q: M = {M} queries but k has N = {N} keys: the queries are the last M of the N positions, "
                         f"so M <= N")
    if G < 1 or H % G:
        raise ValueError(f"k: G = {G} kv heads must divide the H = {H} query heads of q")
    return Shape(B, M, N, H, G, D, _scale(scale), 1 if causal else 0)


def _out(*shape, dtype=np.float32):
    return np.empty(shape, dtype=dtype)


# ---------------------------------------------------------------- lesson 03

def flash_attention(q, k, v, causal=True, scale=None, block_rows=64, block_cols=64):
    """Lesson 03's flash_blocked_cpu: attention in FlashAttention-2's blocked loop order. Returns (o, lse)."""
    shape, _, qp, kp, vp = _qkv(q, k, v, scale, causal)
    o, lse = _out(shape.B, shape.M, shape.H, shape.D), _out(shape.B, shape.H, shape.M)
    _call("flash_blocked_cpu", _ref(shape.c()), qp, kp, vp, o.ctypes.data, lse.ctypes.data, int(block_rows),
          int(block_cols))
    return o, lse


# ---------------------------------------------------------------- lesson 05

def window_attention(q, k, v, window, scale=None):
    """Lesson 05's window_attention_cpu: query position t sees keys t - window + 1 .. t. Returns (o, lse)."""
    shape, _, qp, kp, vp = _qkv(q, k, v, scale)
    o, lse = _out(shape.B, shape.M, shape.H, shape.D), _out(shape.B, shape.H, shape.M)
    _call("window_attention_cpu", _ref(shape.c()), int(window), qp, kp, vp, o.ctypes.data, lse.ctypes.data)
    return o, lse


# ---------------------------------------------------------------- lesson 07

def cmp_counts(N, t, params):
    """Lesson 07's nsa_cmp_counts: (NC, how many of the NC tokens position t sees)."""
    num_cmp, visible = ctypes.c_long(), ctypes.c_long()
    _call("nsa_cmp_counts", int(N), int(t), _ref(_params(params).c()), ctypes.byref(num_cmp), ctypes.byref(visible))
    return num_cmp.value, visible.value


def compress(kv, params, w=None, pos=None):
    """Lesson 07's nsa_compress_cpu: kv [B, N, G, D] -> kv_cmp [B, NC, G, D]. Linear mode needs
    w [G, l*D, D]; pos [l, D] is added to the keys only (None for values)."""
    p = _params(params)
    dims = Dims()
    kvp = np_array("kv", kv, ("B", "N", "G", "D"), dims)
    if p.mode == "linear" and w is None:
        raise ValueError("w: linear mode needs the map w [G, l*D, D]")
    dims.bind("lD", p.l * dims["D"], "l * D")
    dims.bind("l", p.l, "params.l")
    wp = np_optional("w", w, ("G", "lD", "D"), dims) if p.mode == "linear" else None
    pp = np_optional("pos", pos, ("l", "D"), dims) if p.mode == "linear" else None
    B, N, G, D = (dims[x] for x in "BNGD")
    # shape.M is not used by the compression but must be valid: the N positions, as in a prefill
    shape = Shape(B, N, N, G, G, D)
    out = _out(B, p.num_cmp(N), G, D)
    _call("nsa_compress_cpu", _ref(shape.c()), _ref(p.c()), kvp, wp, pp, address(out))
    return out


def _cmp_inputs(q, k_cmp, lse_or_v, lse_layout, params, n_keys, scale):
    p = _params(params)
    n_keys = int(n_keys)
    dims = Dims(N=(n_keys, "n_keys"), NC=(p.num_cmp(n_keys), f"NC = max(0, floor((n_keys - l) / d) + 1) with "
                                                             f"n_keys = {n_keys}, l = {p.l}, d = {p.d}"))
    qp = np_array("q", q, ("B", "M", "H", "D"), dims)
    kp = np_array("k_cmp", k_cmp, ("B", "NC", "G", "D"), dims)
    second = np_array(*lse_or_v, lse_layout, dims)
    return p, dims, _shape(dims, scale, True), qp, kp, second


def cmp_attention(q, k_cmp, v_cmp, params, n_keys, scale=None):
    """Lesson 07's nsa_cmp_attention_cpu: attention over the compressed tokens whose span is in the past.
    n_keys is N, the number of keys the tokens summarise. Returns (o, lse); rows that see no token get
    o = 0 and lse = -inf."""
    p, dims, shape, qp, kp, vp = _cmp_inputs(q, k_cmp, ("v_cmp", v_cmp), ("B", "NC", "G", "D"), params, n_keys, scale)
    o, lse = _out(shape.B, shape.M, shape.H, shape.D), _out(shape.B, shape.H, shape.M)
    _call("nsa_cmp_attention_cpu", _ref(shape.c()), _ref(p.c()), qp, kp, vp, o.ctypes.data, lse.ctypes.data)
    return o, lse


# ---------------------------------------------------------------- lesson 08

def block_scores(q, k_cmp, lse_cmp, params, n_keys, scale=None):
    """Lesson 08's nsa_block_scores_cpu: the importance of every selection block, scores [B, M, L, NB]."""
    p, dims, shape, qp, kp, lp = _cmp_inputs(q, k_cmp, ("lse_cmp", lse_cmp), ("B", "H", "M"), params, n_keys, scale)
    out = _out(shape.B, shape.M, p.list_heads(shape.H, shape.G), p.num_blocks(shape.N))
    _call("nsa_block_scores_cpu", _ref(shape.c()), _ref(p.c()), qp, kp, lp, out.ctypes.data)
    return out


def topn(scores, params, n_keys):
    """Lesson 08's nsa_topn_cpu: block lists [B, M, L, n] from scores [B, M, L, NB] by the top-n rule
    (forced blocks, the rest by score with ties to the lower index, -1 padding, ascending)."""
    p = _params(params)
    n_keys = int(n_keys)
    dims = Dims(N=(n_keys, "n_keys"), NB=(p.num_blocks(n_keys), f"NB = ceil(n_keys / l') = ceil({n_keys} / {p.l_sel})"))
    sp = np_array("scores", scores, ("B", "M", "L", "NB"), dims)
    B, M, L = dims["B"], dims["M"], dims["L"]
    if M > n_keys:
        raise ValueError(f"scores: M = {M} positions but n_keys = {n_keys}: M <= N")
    # nsa_topn_cpu ranks each of the L lists on its own: only L of H and G matters (H = G = L is valid for
    # both kinds of selection), and D is not read
    shape = Shape(B, M, n_keys, L, L, 64)
    out = _out(B, M, L, p.n, dtype=np.int32)
    _call("nsa_topn_cpu", _ref(shape.c()), _ref(p.c()), sp, out.ctypes.data)
    return out


def select(q, k_cmp, lse_cmp, params, n_keys, scale=None):
    """Lesson 08's nsa_select_cpu: the block lists [B, M, L, n] straight from q, k_cmp and lse_cmp."""
    p, dims, shape, qp, kp, lp = _cmp_inputs(q, k_cmp, ("lse_cmp", lse_cmp), ("B", "H", "M"), params, n_keys, scale)
    out = _out(shape.B, shape.M, p.list_heads(shape.H, shape.G), p.n, dtype=np.int32)
    _call("nsa_select_cpu", _ref(shape.c()), _ref(p.c()), qp, kp, lp, out.ctypes.data)
    return out


# ---------------------------------------------------------------- lesson 09

def _lists(name, indices, params, shape, dims):
    L = params.list_heads(shape.H, shape.G)
    dims.bind("L", L, "G (shared selection)" if params.heads_share_selection else "H (per-head selection)")
    dims.bind("n", params.n, "params.n")
    return np_array(name, indices, ("B", "M", "L", "n"), dims, "int32")


def selection_check(indices, params, shape):
    """Lesson 09's nsa_selection_check: raises NSACourseError (ATTN_ERR_BAD_ARGUMENT, naming the first bad
    entry) unless every list is ascending, in range and padded with -1."""
    p = _params(params)
    ip = _lists("indices", indices, p, shape, Dims(B=(shape.B, "shape.B"), M=(shape.M, "shape.M")))
    _call("nsa_selection_check", _ref(shape.c()), _ref(p.c()), ip)


def selected_attention(q, k, v, indices, params, scale=None):
    """Lesson 09's nsa_selected_attention_cpu: attention over the keys s <= t of the listed blocks.
    indices [B, M, L, n] int32. Returns (o, lse)."""
    p = _params(params)
    shape, dims, qp, kp, vp = _qkv(q, k, v, scale)
    ip = _lists("indices", indices, p, shape, dims)
    o, lse = _out(shape.B, shape.M, shape.H, shape.D), _out(shape.B, shape.H, shape.M)
    _call("nsa_selected_attention_cpu", _ref(shape.c()), _ref(p.c()), qp, kp, vp, ip, o.ctypes.data, lse.ctypes.data)
    return o, lse


# ---------------------------------------------------------------- lesson 10

def _linear_inputs(p, dims, w_k, w_v, pos):
    """w_k, w_v [G, l*D, D] and pos [l, D]: required in linear mode, ignored (may be None) in mean mode."""
    if p.mode != "linear":
        return None, None, None
    for name, x in (("w_k", w_k), ("w_v", w_v), ("pos", pos)):
        if x is None:
            raise ValueError(f"{name}: linear mode needs w_k, w_v [G, l*D, D] and pos [l, D]; {name} is None")
    dims.bind("lD", p.l * dims["D"], f"l * D = {p.l} * {dims['D']}")
    dims.bind("l", p.l, "params.l")
    return (np_array("w_k", w_k, ("G", "lD", "D"), dims), np_array("w_v", w_v, ("G", "lD", "D"), dims),
            np_array("pos", pos, ("l", "D"), dims))


def _gates(dims, shape, g_cmp, g_slc, g_swa):
    """The three gates [B, M, H] (None: all 1, the plain sum) and their addresses."""
    gates = []
    for name, g in (("g_cmp", g_cmp), ("g_slc", g_slc), ("g_swa", g_swa)):
        if g is None:
            g = np.ones((shape.B, shape.M, shape.H), np.float32)
        np_array(name, g, ("B", "M", "H"), dims)
        gates.append(g)
    return gates


def nsa_forward(q, k, v, params, g_cmp=None, g_slc=None, g_swa=None, w_k=None, w_v=None, pos=None, scale=None,
                return_attn_weights=False):
    """Lesson 10's nsa_forward_cpu: o = g_cmp o_cmp + g_slc o_slc + g_swa o_swa [B, M, H, D].

    Gates [B, M, H] float32 (None: all 1). Linear mode needs w_k, w_v [G, l*D, D] and pos [l, D]. With
    return_attn_weights=True returns (o, NSAAttnWeights): per branch its lse [B, H, M] and gate, the
    block lists [B, M, L, n], and the helpers that rebuild, spread, summarise and check each branch's
    probability matrix. The forward's o is the same either way."""
    p = _params(params)
    shape, dims, qp, kp, vp = _qkv(q, k, v, scale)
    wkp, wvp, pp = _linear_inputs(p, dims, w_k, w_v, pos)
    gates = _gates(dims, shape, g_cmp, g_slc, g_swa)
    o = _out(shape.B, shape.M, shape.H, shape.D)
    lse = [None, None, None]
    lists = None
    if return_attn_weights:
        lse = [_out(shape.B, shape.H, shape.M) for _ in range(3)]
        lists = _out(shape.B, shape.M, p.list_heads(shape.H, shape.G), p.n, dtype=np.int32)
    addr = [None if x is None else x.ctypes.data for x in lse + [lists]]
    _call("nsa_forward_cpu", _ref(shape.c()), _ref(p.c()), qp, kp, vp, wkp, wvp, pp, *(g.ctypes.data for g in gates),
          o.ctypes.data, *addr)
    if not return_attn_weights:
        return o
    return o, NSAAttnWeights(_CpuWeights, shape, p, q, k, w_k if p.mode == "linear" else None,
                             pos if p.mode == "linear" else None, *lse, lists, *gates)


def nsa_weights(kind, b, h, q, k, params, lse_cmp=None, lse_slc=None, lse_swa=None, block_indices=None, w_k=None,
                pos=None, n_keys=None, scale=None):
    """Lesson 10's nsa_weights_cpu: branch `kind` ("cmp", "slc" or "swa") of (b, h) as a probability
    matrix, [M, NC] for "cmp", [M, N] otherwise, rebuilt from q, k and that branch's lse [B, H, M]
    (the other two may be None). "slc" needs block_indices; "cmp" in linear mode w_k and pos."""
    p = _params(params)
    c_kind = weights_kind(kind, ("cmp", "slc", "swa"))
    dims = Dims()
    qp = np_array("q", q, ("B", "M", "H", "D"), dims)
    kp = np_array("k", k, ("B", "N", "G", "D"), dims)
    shape = _shape(dims, scale, True)
    _check_bh(b, h, shape)
    lses = {"cmp": lse_cmp, "slc": lse_slc, "swa": lse_swa}
    if lses[kind] is None:
        raise ValueError(f"lse_{kind}: the {kind} branch's weights are rebuilt from its own lse [B, H, M]; it is None")
    lp = {n: np_optional(f"lse_{n}", x, ("B", "H", "M"), dims) for n, x in lses.items()}
    ip = None
    if kind == "slc":
        if block_indices is None:
            raise ValueError("block_indices: the selected branch's weights need the block lists [B, M, L, n]")
        ip = _lists("block_indices", block_indices, p, shape, dims)
    wkp = pp = None
    if kind == "cmp" and p.mode == "linear":
        if w_k is None or pos is None:
            raise ValueError("w_k, pos: linear mode compresses the keys again with w_k [G, l*D, D] and pos [l, D]")
        dims.bind("lD", p.l * shape.D, "l * D")
        dims.bind("l", p.l, "params.l")
        wkp, pp = np_array("w_k", w_k, ("G", "lD", "D"), dims), np_array("pos", pos, ("l", "D"), dims)
    cols = p.num_cmp(shape.N) if kind == "cmp" else shape.N
    out = _out(shape.M, cols)
    _call("nsa_weights_cpu", _ref(shape.c()), _ref(p.c()), c_kind, int(b), int(h), qp, kp, wkp, pp, ip, lp["cmp"],
          lp["slc"], lp["swa"], address(out))
    return out


def _check_bh(b, h, shape):
    if not (0 <= int(b) < shape.B):
        raise ValueError(f"b: expected 0 <= b < B = {shape.B}, got {b}")
    if not (0 <= int(h) < shape.H):
        raise ValueError(f"h: expected 0 <= h < H = {shape.H}, got {h}")


def cmp_weights_to_keys(cmp_weights, params, n_keys):
    """Lesson 10's nsa_cmp_weights_to_keys_cpu: compressed weights [M, NC] spread over the keys [M, N]
    (token c's weight shared by its l keys, weight / l each; overlapping tokens add up)."""
    p = _params(params)
    n_keys = int(n_keys)
    dims = Dims(NC=(p.num_cmp(n_keys), f"NC of n_keys = {n_keys}"))
    cp = np_array("cmp_weights", cmp_weights, ("M", "NC"), dims)
    M = dims["M"]
    if M > n_keys:
        raise ValueError(f"cmp_weights: M = {M} rows but n_keys = {n_keys}: M <= N")
    # only M, N and the NSA parameters matter to the spread; the other sizes of the shape just have to be valid
    shape = Shape(1, M, n_keys, 1, 1, 64)
    out = _out(M, n_keys)
    _call("nsa_cmp_weights_to_keys_cpu", _ref(shape.c()), _ref(p.c()), cp, address(out))
    return out


def weights_summary(shape, params, kind, b, h, weights, gate):
    """Lesson 10's nsa_weights_summary of one weights matrix [M, cols] of `kind` for (b, h), with the
    branch's gate [B, M, H]: a dict of mean, std, min, max, entropy (nats, mean over the rows that see a
    key), sparsity (share of exact zeros) and gate_mean. Takes NumPy arrays (or tensors, copied to the host)."""
    p = _params(params)
    c_kind = weights_kind(kind)
    _check_bh(b, h, shape)
    cols = p.num_cmp(shape.N) if kind == "cmp" else shape.N
    wp = np_array("weights", _host(weights), ("M", "C"), Dims(M=(shape.M, "shape.M"), C=(cols, f"the columns of {kind}")))
    gp = np_array("gate", _host(gate), ("B", "M", "H"), Dims(B=(shape.B, "shape.B"), M=(shape.M, "shape.M"),
                                                              H=(shape.H, "shape.H")))
    stats = _lib.NsaWeightsStats()
    _call("nsa_weights_summary", _ref(shape.c()), _ref(p.c()), c_kind, int(b), int(h), wp, gp, ctypes.byref(stats))
    return stats_dict(stats)


def weights_check(shape, params, kind, b, h, weights, block_indices=None):
    """Lesson 10's nsa_weights_check: the worst deviation of a weights matrix of `kind` for (b, h) from a
    probability matrix over the branch's visible keys (row sums, negative entries, weight outside)."""
    p = _params(params)
    c_kind = weights_kind(kind)
    _check_bh(b, h, shape)
    cols = p.num_cmp(shape.N) if kind == "cmp" else shape.N
    wp = np_array("weights", _host(weights), ("M", "C"), Dims(M=(shape.M, "shape.M"), C=(cols, f"the columns of {kind}")))
    ip = None
    if kind == "slc":
        if block_indices is None:
            raise ValueError("block_indices: checking the selected branch needs its block lists [B, M, L, n]")
        ip = _lists("block_indices", _host(block_indices), p, shape, Dims(B=(shape.B, "shape.B"), M=(shape.M, "shape.M")))
    worst = ctypes.c_double()
    _call("nsa_weights_check", _ref(shape.c()), _ref(p.c()), c_kind, int(b), int(h), ip, wp, ctypes.byref(worst))
    return worst.value


def _host(x):
    """A torch tensor (of the CUDA path) as a NumPy array on the host; anything else as it is (and checked)."""
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        return x.detach().cpu().contiguous().numpy()
    return x


class _CpuWeights:
    """What NSAAttnWeights calls for the C path."""
    nsa_weights = staticmethod(nsa_weights)
    cmp_weights_to_keys = staticmethod(cmp_weights_to_keys)
