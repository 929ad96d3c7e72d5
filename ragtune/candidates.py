"""The reranking view that MTEB reports for reranking sets, beside evaluate's retrieval view.

Each test query's candidates are its judged documents (the positives and the judged non-relevant ones:
a groups line's pos + neg). Every model ranks only those, and the ranking is scored with MAP (over all
candidates) and MRR@10, as MTEB's reranking tasks do, plus nDCG@10. Models: bm25, each dense model
(cosine of query and document embeddings) and each reranker (its logit). Used for ingest.source: groups,
where the candidates are the dataset's own.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .io import doc_text
from .metrics import evaluate_run

log = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]
METRICS = ("MAP", "MRR@10", "nDCG@10")


def candidates(qrels: Mapping[str, Mapping[str, int]]) -> dict[str, list[str]]:
    """{qid: judged doc ids}, in judgment order."""
    return {qid: list(docs) for qid, docs in qrels.items() if docs}


def bm25_scores(cands: dict[str, list[str]], queries: Mapping[str, str], corpus: Mapping, language: str) -> Run:
    """BM25 over the whole corpus (the same term statistics as the retrieval view), read for the candidates."""
    from .retrieval import BM25Index

    index = BM25Index(corpus, language)
    run = {}
    for qid, docs in cands.items():
        scores = index.score_query(queries[qid])
        run[qid] = {d: float(scores[index.position(d)]) for d in docs}
    return run


def dense_scores(model: str, cands: dict[str, list[str]], queries: Mapping[str, str], corpus: Mapping, *,
                 emb: Mapping, device: str, cache_dir: Path, security: Mapping[str, bool]) -> Run:
    """Cosine scores; the corpus embeddings come from the same cache as evaluate's dense runs."""
    from .embeddings import encode_corpus, encode_queries

    doc_ids = list(corpus)
    pos = {d: i for i, d in enumerate(doc_ids)}
    doc_emb = encode_corpus(model, [doc_text(corpus[d]) for d in doc_ids], batch_size=emb["encode_batch_size"],
                            max_seq_length=emb["max_seq_length"], device=device, cache_dir=cache_dir,
                            security=security)
    qids = list(cands)
    q_emb = encode_queries(model, [queries[q] for q in qids], batch_size=emb["encode_batch_size"],
                           max_seq_length=emb["max_seq_length"], device=device, security=security)
    return {qid: {d: float(np.dot(qe, doc_emb[pos[d]])) for d in cands[qid]} for qid, qe in zip(qids, q_emb)}


def reranker_scores(model: str, cands: dict[str, list[str]], queries: Mapping[str, str], corpus: Mapping, *,
                    batch_size: int, max_length: int, device: str, security: Mapping[str, bool]) -> Run:
    from .rerank import score_pairs

    pairs = [(qid, d) for qid, docs in cands.items() for d in docs]
    scores = score_pairs(model, [(queries[q], doc_text(corpus[d])) for q, d in pairs], batch_size=batch_size,
                         max_length=max_length, device=device, security=security)
    run: Run = {}
    for (qid, d), s in zip(pairs, scores):
        run.setdefault(qid, {})[d] = float(s)
    return run


def view(runs: Mapping[str, Run], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, float]]:
    """{model: {"MAP", "MRR@10", "nDCG@10"}} of each model's candidate ranking."""
    depth = max(len(d) for d in qrels.values())
    cfg = {"ndcg_cutoffs": [10], "mrr_cutoffs": [10], "recall_cutoffs": [10], "precision_cutoffs": [10],
           "hit_cutoffs": [10], "map_cutoff": depth}  # MAP@(all candidates) = MAP
    out = {}
    for model, run in runs.items():
        means, _ = evaluate_run(run, qrels, cfg)
        out[model] = {"MAP": means[f"MAP@{depth}"], "MRR@10": means["MRR@10"], "nDCG@10": means["nDCG@10"]}
    return out


def markdown(results: Mapping[str, Mapping[str, float]], n_queries: int) -> str:
    """The report section: one row per model."""
    lines = ["", "## Reranking view: each test query's given candidates", "",
             f"As MTEB reports reranking sets: every model ranks only each query's judged documents "
             f"(its positives and given negatives), {n_queries} test queries. MAP is over all candidates.", "",
             "| model | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for model, m in results.items():
        lines.append(f"| {model} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
    return "\n".join(lines) + "\n"
