"""The problem's description: Shape (attn_shape), NSAParams (attn_nsa_params) and the weights kinds.

The NSA counting rules (common/nsa.h) are static inline functions in C, not in the library; the
few that the wrappers need to know the sizes of their outputs are written again here, next to their
C names, and tests/test_numpy.py checks them against the library's nsa_cmp_counts.
"""
from dataclasses import dataclass

from . import _lib

MODES = {"mean": 0, "linear": 1}  # attn_nsa_compress_mode
# nsa_weights_kind: the names the Python functions take, and their values in C
WEIGHTS_KINDS = {"cmp": 0, "slc": 1, "swa": 2, "cmp_keys": 3}


@dataclass(frozen=True)
class Shape:
    """attn_shape: B batch, M queries (the last M of the N positions), N keys, H query heads, G kv heads,
    D head dimension; scale 0 means 1/sqrt(D); causal 1 or 0."""
    B: int
    M: int
    N: int
    H: int
    G: int
    D: int
    scale: float = 0.0
    causal: int = 1

    def c(self):
        return _lib.AttnShape(self.B, self.M, self.N, self.H, self.G, self.D, float(self.scale), int(self.causal))

    @property
    def softmax_scale(self):
        return self.scale if self.scale else self.D ** -0.5


@dataclass(frozen=True)
class NSAParams:
    """attn_nsa_params: l keys per compressed token, stride d, selection block l_sel (l'), n selected
    blocks per query, window w, mode "mean" or "linear", heads_share_selection (one list per kv group,
    True, the paper's default; or one per query head, False). The C library checks them (attn_nsa_check)
    in every call and raises NSACourseError for bad ones."""
    l: int
    d: int
    l_sel: int
    n: int
    w: int
    mode: str = "mean"
    heads_share_selection: bool = True

    def __post_init__(self):
        for name in ("l", "d", "l_sel", "n", "w"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise TypeError(f"NSAParams.{name}: expected an int, got {getattr(self, name)!r}")
        if self.mode not in MODES:
            raise ValueError(f"NSAParams.mode: expected one of {sorted(MODES)}, got {self.mode!r}")

    @classmethod
    def paper(cls):
        """The paper's defaults (attn_nsa_paper_defaults): l = 32, d = 16, l' = 64, n = 16, w = 512, mean pooling."""
        return cls(l=32, d=16, l_sel=64, n=16, w=512)

    @classmethod
    def mean_pool(cls):
        """Mean-pool mode (attn_nsa_mean_pool, flash-linear-attention's NSA): l = d = l' = 64, n = 16, w = 512."""
        return cls(l=64, d=64, l_sel=64, n=16, w=512)

    def c(self):
        return _lib.AttnNsaParams(self.l, self.d, self.l_sel, self.n, self.w, MODES[self.mode],
                                  1 if self.heads_share_selection else 0)

    def num_cmp(self, N):
        """attn_nsa_num_cmp: compressed tokens of N keys, max(0, floor((N - l) / d) + 1)."""
        return 0 if N < self.l else (N - self.l) // self.d + 1

    def num_blocks(self, N):
        """attn_nsa_num_blocks: selection blocks of N keys, ceil(N / l')."""
        return (N + self.l_sel - 1) // self.l_sel

    def list_heads(self, H, G):
        """attn_nsa_list_heads: lists per query, G (shared selection) or H (per head)."""
        return G if self.heads_share_selection else H


def weights_kind(kind, allowed=("cmp", "slc", "swa", "cmp_keys")):
    """The C value of a weights kind given by name ("cmp", "slc", "swa", "cmp_keys")."""
    if not isinstance(kind, str) or kind not in allowed:
        raise ValueError(f"kind: expected one of {', '.join(repr(k) for k in allowed)}, got {kind!r}")
    return WEIGHTS_KINDS[kind]
