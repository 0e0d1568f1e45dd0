"""What nsa_forward(..., return_attn_weights=True) returns next to o: each branch's lse and gate, the
block lists, and the helpers of lesson 10 that rebuild a branch's probability matrix from them.

Nothing of size [M, N] is stored by the forward: a matrix is rebuilt on request for one (b, h), by
nsa_weights_cpu or nsa_weights_cuda (where the forward ran), from q, k and the branch's own lse.
"""
from typing import Any, NamedTuple

STATS_FIELDS = ("mean", "std", "min", "max", "entropy", "sparsity", "gate_mean")


def stats_dict(stats):
    return {name: getattr(stats, name) for name in STATS_FIELDS}


class BranchWeights(NamedTuple):
    """One branch's share of the forward: its lse [B, H, M], its gate [B, M, H], and for the selected
    branch the block lists [B, M, L, n] (None for the others)."""
    lse: Any
    gate: Any
    block_indices: Any = None


class NSAAttnWeights:
    """The forward's optional outputs and the inputs needed to rebuild any branch's weights.

    Attributes: shape (nsa_course.Shape), params, lse_cmp, lse_slc, lse_swa [B, H, M], block_indices
    [B, M, L, n], g_cmp, g_slc, g_swa [B, M, H]; cmp, slc, swa give them per branch (BranchWeights).
    Arrays are NumPy arrays for the C path and CUDA tensors for the CUDA path.
    """

    def __init__(self, backend, shape, params, q, k, w_k, pos, lse_cmp, lse_slc, lse_swa, block_indices, g_cmp,
                 g_slc, g_swa):
        self._backend, self.shape, self.params = backend, shape, params
        self._q, self._k, self._w_k, self._pos = q, k, w_k, pos
        self.lse_cmp, self.lse_slc, self.lse_swa, self.block_indices = lse_cmp, lse_slc, lse_swa, block_indices
        self.g_cmp, self.g_slc, self.g_swa = g_cmp, g_slc, g_swa

    @property
    def cmp(self):
        return BranchWeights(self.lse_cmp, self.g_cmp)

    @property
    def slc(self):
        return BranchWeights(self.lse_slc, self.g_slc, self.block_indices)

    @property
    def swa(self):
        return BranchWeights(self.lse_swa, self.g_swa)

    def matrix(self, kind, b=0, h=0):
        """The probability matrix of branch `kind` for (b, h): "cmp" [M, NC] over the compressed tokens,
        "cmp_keys" [M, N] (the compressed weights spread over the keys they cover), "slc" and "swa" [M, N].
        Every row sums to 1 over the keys the branch lets it see (0 for a row that sees none)."""
        if kind == "cmp_keys":
            return self._backend.cmp_weights_to_keys(self.matrix("cmp", b, h), self.params, self.shape.N)
        return self._backend.nsa_weights(kind, b, h, self._q, self._k, self.params, lse_cmp=self.lse_cmp,
                                         lse_slc=self.lse_slc, lse_swa=self.lse_swa, block_indices=self.block_indices,
                                         w_k=self._w_k, pos=self._pos, scale=self.shape.scale or None)

    def combined(self, b=0, h=0):
        """The gated combination over the keys, [M, N]: g_cmp * cmp_keys + g_slc * slc + g_swa * swa for
        (b, h). In mean mode o[b, i, h] = sum_s combined[i, s] v[b, s, h / (H/G)] exactly (a compressed
        value is the mean of its l values); in linear mode the cmp part is where the summarised keys lie."""
        out = None
        for kind, gate in (("cmp_keys", self.g_cmp), ("slc", self.g_slc), ("swa", self.g_swa)):
            term = gate[b, :, h][:, None] * self.matrix(kind, b, h)
            out = term if out is None else out + term
        return out

    def _gate(self, kind):
        return {"cmp": self.g_cmp, "cmp_keys": self.g_cmp, "slc": self.g_slc, "swa": self.g_swa}[kind]

    def summary(self, kind, b=0, h=0, weights=None):
        """nsa_weights_summary of the matrix of `kind` for (b, h) (rebuilt when not given): a dict of mean,
        std, min, max, entropy, sparsity and the branch's gate_mean."""
        from . import cpu
        weights = self.matrix(kind, b, h) if weights is None else weights
        return cpu.weights_summary(self.shape, self.params, kind, b, h, weights, self._gate(kind))

    def check(self, kind, b=0, h=0, weights=None):
        """nsa_weights_check: the worst deviation of the matrix of `kind` for (b, h) from a probability
        matrix over the branch's visible keys (rebuilt when not given)."""
        from . import cpu
        weights = self.matrix(kind, b, h) if weights is None else weights
        return cpu.weights_check(self.shape, self.params, kind, b, h, weights, self.block_indices)
