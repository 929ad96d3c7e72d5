"""Score normalization shared by first-stage fusion (ragtune.retrieval.wsum) and reranker interpolation
(ragtune.rerank.interpolate): a leaf, so that neither side depends on the other's module."""
from __future__ import annotations


def minmax(values: dict[str, float]) -> dict[str, float]:
    """Scores mapped onto [0, 1] per query (all equal: 0); ranx's "min-max" norm."""
    lo, hi = min(values.values()), max(values.values())
    span = hi - lo
    return {d: (v - lo) / span if span > 0 else 0.0 for d, v in values.items()}
