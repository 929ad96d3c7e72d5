"""Cross-encoder inference for the evaluate stage: score pairs, rerank a run, interpolate with the first stage.

Scores are the model's raw logit (one label). A sigmoid would not change any ranking, and raw logits keep
`interpolate`'s min-max normalisation away from saturated 0/1 values.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

import numpy as np

from .errors import UserError
from .io import Run, doc_text
from .scores import minmax

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _load(model_path: str, device: str, trust_remote_code: bool):
    """Tokenizer and model, loaded once per (path, device) even across rerank calls."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise UserError(f"reranker '{model_path}': cannot load: {e}") from None
    if model.config.num_labels != 1:
        raise UserError(f"reranker '{model_path}': has {model.config.num_labels} labels; a reranker needs 1")
    model.to(device).eval()
    return tokenizer, model


def score_loaded(model, tokenizer, pairs: list[tuple[str, str]], *, batch_size: int, max_length: int,
                 device: str, progress: bool = True, desc: str = "rerank") -> np.ndarray:
    """Logits for (query, passage) pairs with an already loaded HF model; batches sorted by length."""
    import torch
    from tqdm.auto import tqdm

    from .logs import progress_bars

    scores = np.zeros(len(pairs), dtype=np.float32)
    # Longest first: similar lengths share a batch, so padding (wasted compute) stays small.
    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    from .models import float32_head

    was_training = model.training
    model.eval()
    with torch.inference_mode(), float32_head(model):
        for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch",
                          disable=not (progress and progress_bars()) or len(order) <= batch_size,
                          leave=False):
            idx = order[start:start + batch_size]
            enc = tokenizer([pairs[i][0] for i in idx], [pairs[i][1] for i in idx], padding=True,
                            truncation="longest_first", max_length=max_length, return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in enc.items()}, return_dict=True).logits
            scores[idx] = logits[:, 0].float().cpu().numpy()
    if was_training:
        model.train()
    return scores


def val_ndcg(model, tokenizer, val_groups: list[dict], *, max_length: int, batch_size: int, device: str,
             n_negatives: int) -> float:
    """Mean nDCG@10 over val groups of ranking each query's positives + first `n_negatives` negatives
    (scored by ragtune.metrics, the code that scores test)."""
    from .metrics import score_ranked_lists

    pairs, spans = [], []
    for g in val_groups:
        texts = g["pos"] + g["neg"][:n_negatives]
        spans.append((len(pairs), len(g["pos"]), len(texts)))
        pairs.extend((g["query"], t) for t in texts)
    scores = score_loaded(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length,
                          device=device, desc="val")
    return score_ranked_lists([(list(scores[s:s + n]), n_pos) for s, n_pos, n in spans])["ndcg"]


def score_pairs(model_path: str, pairs: list[tuple[str, str]], *, batch_size: int = 32, max_length: int = 256,
                device: str = "cpu", security: Mapping[str, bool]) -> np.ndarray:
    """Cross-encoder logits for (query, passage) pairs, in input order; `security` is params["security"]."""
    if not pairs:
        return np.zeros(0, dtype=np.float32)
    tokenizer, model = _load(str(model_path), device, security["trust_remote_code"])
    log.debug("scoring %d pairs with %s (batch %d, max_length %d)", len(pairs), model_path, batch_size, max_length)
    return score_loaded(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length, device=device)


def _ranked(docs: dict[str, float]) -> list[str]:
    # Score descending, then docid: the same order every time, whatever the dict order.
    return sorted(docs, key=lambda d: (-docs[d], d))


def rerank(run: Run, queries: dict[str, str], corpus: dict[str, dict[str, str]], model_path: str, *,
           depth: int, batch_size: int = 32, max_length: int = 256, device: str = "cpu",
           cache: dict[tuple[str, str], float] | None = None, security: Mapping[str, bool]) -> Run:
    """Rerank each query's top-`depth` docs with the cross-encoder; the rest keep their order below them.

    `cache` maps (qid, docid) -> score for THIS model: pass the same dict when several first stages are
    reranked by one model, so each pair is scored once.
    """
    cache = {} if cache is None else cache
    todo: list[tuple[str, str]] = []
    for qid, docs in run.items():
        if qid not in queries:
            raise UserError(f"rerank: query '{qid}' is in the run but not in the queries")
        for docid in _ranked(docs)[:depth]:
            if docid not in corpus:
                raise UserError(f"rerank: document '{docid}' (query '{qid}') is not in the corpus")
            if (qid, docid) not in cache:
                todo.append((qid, docid))
    todo = list(dict.fromkeys(todo))
    log.debug("rerank depth %d: %d queries, %d new pairs to score (%d cached)", depth,
              len(run), len(todo), len(cache))
    if todo:
        scores = score_pairs(model_path, [(queries[q], doc_text(corpus[d])) for q, d in todo],
                             batch_size=batch_size, max_length=max_length, device=device, security=security)
        cache.update(zip(todo, map(float, scores)))
    out: Run = {}
    for qid, docs in run.items():
        ranked = _ranked(docs)
        top = {d: cache[(qid, d)] for d in ranked[:depth]}
        rest = ranked[depth:]
        floor = min(top.values(), default=0.0)
        # Below-depth docs: strictly below every reranked score, in their first-stage order.
        top.update({d: floor - 1.0 - i for i, d in enumerate(rest)})
        out[qid] = top
    return out


def interpolate(first_stage_run: Run, rerank_run: Run, alpha: float, *, depth: int | None = None) -> Run:
    """alpha * rerank + (1 - alpha) * first stage, each min-max normalised per query over the top-`depth`
    first-stage docs (the ones the reranker scored; None = every doc of the rerank run). Docs below
    depth keep their first-stage order below the interpolated ones.

    Pass the depth used for `rerank`: its below-depth scores are placeholders, not model scores.
    """
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"interpolate: alpha must be in [0, 1], got {alpha}")
    out: Run = {}
    for qid, first in first_stage_run.items():
        reranked = rerank_run.get(qid)
        if not reranked:
            out[qid] = dict(first)
            continue
        ranked = _ranked(first)
        top = [d for d in (ranked[:depth] if depth is not None else ranked) if d in reranked]
        if not top:
            out[qid] = dict(first)
            continue
        f = minmax({d: first[d] for d in top})
        r = minmax({d: reranked[d] for d in top})
        scores = {d: alpha * r[d] + (1.0 - alpha) * f[d] for d in top}
        top_set = set(top)
        rest = [d for d in ranked if d not in top_set]
        # Combined scores lie in [0, 1]; the rest go strictly below 0 in first-stage order.
        scores.update({d: -1.0 - i for i, d in enumerate(rest)})
        out[qid] = scores
    return out
