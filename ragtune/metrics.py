"""Retrieval metrics: one implementation (pytrec_eval, i.e. trec_eval 9) for every row of every table.

Semantics, all trec_eval's (Van Gysel & de Rijke 2018, "Pytrec_eval: An Extremely Fast Python Interface
to trec_eval", SIGIR), plus two fixes for what pytrec_eval alone gets wrong for us:

- Ranking: documents are sorted by score descending; equal scores are broken by doc id in DESCENDING
  string order (trec_eval sorts on (score, docno), both decreasing). The rank column of a run file is
  ignored. `write_trec_run` in report.py writes runs in this same order.
- Relevance: nDCG uses the graded qrels value as a linear gain (trec_eval's `ndcg_cut`, Järvelin &
  Kekäläinen 2002 with gain = grade, discount log2(rank + 1)); every other metric counts a document as
  relevant when its grade is >= 1 (pytrec_eval's default relevance_level=1).
- Denominators: every judged relevant document counts, retrieved or not, even one missing from the corpus
  (recall's denominator, nDCG's ideal ranking, MAP's divisor). MAP@k divides by ALL relevant docs of the
  query, not min(k, #relevant) (trec_eval `map_cut`).
- Averaging (fix 1): means run over every query with judgments in the qrels. A query the system returned
  nothing for scores 0 on every metric; pytrec_eval alone would drop it and flatter the system.
  Queries in the run but not in the qrels are ignored.
- MRR@k (fix 2): trec_eval's `recip_rank` has no cutoff. We take pytrec_eval's reciprocal rank of the
  first relevant document on the full run and set it to 0 when that rank exceeds k. This equals
  `recip_rank` on the run truncated to its top k (tested), without re-implementing trec_eval's tie order.
- F1@k (at the precision cutoffs): per query, the harmonic mean of P@k and R@k (0 when both are 0), then
  averaged over queries (van Rijsbergen 1979, as computed per query by e.g. ranx).
- Hit@k: trec_eval `success_k`, 1 when any relevant document is in the top k.

Metric names: nDCG@k, MRR@k, R@k, P@k, F1@k, MAP@k, Hit@k.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .errors import UserError
from .io import Qrels, Run

log = logging.getLogger(__name__)


# The cutoff keys of params["evaluate"], and the metrics each one asks for. Callers pass the cutoffs in
# (params["evaluate"], or a mapping of some of these keys): a family whose key is absent is not computed.
_FAMILIES = {"ndcg_cutoffs": ("nDCG",), "mrr_cutoffs": ("MRR",), "recall_cutoffs": ("R",),
             "precision_cutoffs": ("P", "F1"), "map_cutoff": ("MAP",), "hit_cutoffs": ("Hit",)}


def _cutoffs(cfg: Mapping[str, Any], key: str) -> list[int]:
    if key not in cfg:
        return []
    value = cfg[key]
    values = [value] if isinstance(value, int) else list(value)
    return sorted({int(k) for k in values})


def metric_names(cfg: Mapping[str, Any]) -> list[str]:
    """Every metric `evaluate_run` returns for these cutoffs, in display order."""
    return [f"{name}@{k}" for key, names in _FAMILIES.items() for name in names for k in _cutoffs(cfg, key)]


def _measures(cfg: Mapping[str, Any]) -> set[str]:
    # One string per trec_eval measure: pytrec_eval keeps only the last of two "recall.x" entries.
    def cut(name: str, ks: list[int]) -> str | None:
        return f"{name}." + ",".join(map(str, ks)) if ks else None

    f1 = _cutoffs(cfg, "precision_cutoffs")
    measures = {
        cut("ndcg_cut", _cutoffs(cfg, "ndcg_cutoffs")),
        "recip_rank" if _cutoffs(cfg, "mrr_cutoffs") else None,
        cut("recall", sorted(set(_cutoffs(cfg, "recall_cutoffs")) | set(f1))),
        cut("P", f1),
        cut("map_cut", _cutoffs(cfg, "map_cutoff")),
        cut("success", _cutoffs(cfg, "hit_cutoffs")),
    }
    return measures - {None}


def _row(scores: dict[str, float], cfg: Mapping[str, Any]) -> dict[str, float]:
    """pytrec_eval's per-query measures -> our names (missing query: all zeros)."""
    def get(key: str) -> float:
        return float(scores.get(key, 0.0))

    row = {f"nDCG@{k}": get(f"ndcg_cut_{k}") for k in _cutoffs(cfg, "ndcg_cutoffs")}
    rr = get("recip_rank")
    rank = round(1.0 / rr) if rr > 0 else None  # 1-based rank of the first relevant document
    for k in _cutoffs(cfg, "mrr_cutoffs"):
        row[f"MRR@{k}"] = rr if rank is not None and rank <= k else 0.0
    for k in _cutoffs(cfg, "recall_cutoffs"):
        row[f"R@{k}"] = get(f"recall_{k}")
    ks = _cutoffs(cfg, "precision_cutoffs")
    for k in ks:
        row[f"P@{k}"] = get(f"P_{k}")
    for k in ks:
        p, r = get(f"P_{k}"), get(f"recall_{k}")
        row[f"F1@{k}"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    for k in _cutoffs(cfg, "map_cutoff"):
        row[f"MAP@{k}"] = get(f"map_cut_{k}")
    for k in _cutoffs(cfg, "hit_cutoffs"):
        row[f"Hit@{k}"] = get(f"success_{k}")
    return row


def evaluate_run(run: Run, qrels: Qrels, cfg: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Score `run` against `qrels` -> (mean of each metric, {qid: {metric: value}}).

    Every query with judgments in `qrels` gets a row (zeros when the run has nothing for it); run-only
    queries are ignored. `cfg` holds the cutoffs (params["evaluate"]); see _FAMILIES.
    """
    import pytrec_eval

    judged = {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items() if docs}
    if not judged:
        raise UserError("qrels: no judged queries to evaluate against")
    ranked = {str(q): {str(d): float(s) for d, s in docs.items()}
              for q, docs in run.items() if docs and str(q) in judged}
    missing = len(judged) - len(ranked)
    if missing:
        log.info("%d of %d judged queries have no results in the run; they score 0", missing, len(judged))
    evaluator = pytrec_eval.RelevanceEvaluator(judged, _measures(cfg))
    raw = evaluator.evaluate(ranked) if ranked else {}
    per_query = {qid: _row(raw.get(qid, {}), cfg) for qid in judged}
    names = metric_names(cfg)
    n = len(per_query)
    means = {name: sum(row[name] for row in per_query.values()) / n for name in names}
    return means, per_query


def score_ranked_lists(lists: list[tuple[list[float], int]], k: int = 10) -> dict[str, float]:
    """Mean nDCG@k, MRR@k and MAP over scored candidate lists, each `(scores, n_pos)`: the first `n_pos`
    candidates are the relevant ones. What val scores checkpoints and merge weights with.

    The same pytrec_eval measures as `evaluate_run`, so val and test agree on ties: trec_eval breaks them
    by doc id descending, and the ids given here put the non-relevant candidates first, so a model that
    scores everything alike gets no credit for positives listed first in the val groups.
    """
    import pytrec_eval

    if not lists:
        raise UserError("no candidate lists to score")
    judged, ranked = {}, {}
    for i, (scores, n_pos) in enumerate(lists):
        ids = [f"{'a' if j < n_pos else 'b'}{j}" for j in range(len(scores))]  # "b" > "a": non-relevant first
        judged[str(i)] = {d: int(d[0] == "a") for d in ids}
        ranked[str(i)] = {d: float(s) for d, s in zip(ids, scores)}
    raw = pytrec_eval.RelevanceEvaluator(judged, {f"ndcg_cut.{k}", "recip_rank", "map"}).evaluate(ranked)
    totals = {"ndcg": 0.0, "mrr": 0.0, "map": 0.0}
    for qid in judged:
        row = raw.get(qid, {})
        rr = float(row.get("recip_rank", 0.0))
        totals["ndcg"] += float(row.get(f"ndcg_cut_{k}", 0.0))
        totals["mrr"] += rr if rr > 0 and round(1.0 / rr) <= k else 0.0  # MRR@k as in evaluate_run
        totals["map"] += float(row.get("map", 0.0))
    return {name: value / len(judged) for name, value in totals.items()}
