"""Known-wrong variants of lesson 10 (the fused NSA forward), appended to tests/known_wrong.py's VARIANTS
(same fields, same rules: `old` must occur exactly once in the solution file)."""

_L = "10_fused_nsa"

VARIANTS = []
