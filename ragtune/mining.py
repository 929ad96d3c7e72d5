"""Hard-negative mining on top of first-stage retrieval (BM25, dense, or their RRF fusion).

Train groups: for each train query, its positives and `num_negatives` hard negatives taken, best first,
from a window of the first stage's ranking, after three filters:
  1. never a positive (any judged doc with score > 0 for that query);
  2. false-negative margin (NV-Retriever's TopK-PercPos, sentence-transformers' `relative_margin`): drop a
     candidate whose first-stage score >= max_pos - |max_pos| * relative_margin, where max_pos is the
     query's best positive score (= (1 - margin) * max_pos for positive scores; the |.| keeps it right
     for negative cosine scores);
  3. optionally a cross-encoder (`rescore_with`): drop candidates whose sigmoid score > rescore_threshold.
Judged non-relevant documents (qrels grade <= 0: the `neg` texts of a FlagEmbedding / MTEB groups
file, or any source's 0 judgments) are trusted negatives (mine.given_negatives): with "first" they come
before the mined ones, in the order judged (no margin or cross-encoder filter: a person or the dataset
judged them), and the window tops the group up to `num_negatives`; "only" uses them without mining;
"ignore" treats them like any other document.
A query short of hard negatives is kept and topped up with random corpus documents (unlike
sentence-transformers' mine_hard_negatives, which silently drops it); `random_negatives` more random
documents are added to every group. Random documents are never positives and never come from the
first stage's top `range_max` (those were judged too close, or are already hard negatives).

Window: ranks are 1-based over the first stage's full ranking (positives included). The window is
ranks range_min+1 .. range_max, i.e. the Python slice ranking[range_min:range_max]: range_min is the
number of top results skipped.

Val groups (cheap checkpoint selection, reranking-style): pos = the query's positives, neg = the first
`val_depth` non-positive documents of the first stage's ranking (no window, no margin, no random), one
document per distinct text (a copy of a positive's text is neither).
"""
from __future__ import annotations

import logging
import random
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .io import Qrels, Run, doc_text
from .retrieval import BM25Index, DenseIndex, pick_wsum, query_text, ranked, rrf, wsum

NDCG10 = {"ndcg_cutoffs": [10]}  # ragtune.metrics cutoffs: nDCG@10 only

log = logging.getLogger(__name__)


class _FirstStage:
    """Ranks documents for queries and scores any (query, doc) pair with the same scorer."""

    def __init__(self, kind: str, corpus: Mapping[str, Mapping[str, str]], queries: Mapping[str, str],
                 depth: int, *, rrf_k: int, embedder: Mapping[str, Any] | None, device: str,
                 cache_dir: str | Path | None, index: str, language: str, security: Mapping[str, bool],
                 fusion: str = "rrf", fusion_grid: tuple = (), val_qrels: Qrels | None = None,
                 doc_embeddings: np.ndarray | None = None):
        self.kind = kind
        self.fusion_stats: dict[str, Any] = {}
        self.run: Run = {}
        # Scores of documents outside `run` (positives, random negatives) come from these.
        self._bm25: BM25Index | None = None
        self._bm25_last: tuple[str, np.ndarray] | None = None  # mining goes query by query
        self._dense: tuple[dict[str, int], np.ndarray, dict[str, np.ndarray]] | None = None
        runs = []
        # Hybrid fuses deeper lists than it keeps, so fused ranks near the cut-off are not truncated.
        sub_depth = depth if kind != "hybrid" else max(2 * depth, 100)
        if kind in ("bm25", "hybrid"):
            self._bm25 = BM25Index(corpus, language)
            self._queries = queries
            runs.append(self._bm25.search(queries, sub_depth))
        if kind in ("dense", "hybrid"):
            from .embeddings import encode_corpus, encode_queries
            doc_ids = list(corpus)
            doc_emb = doc_embeddings if doc_embeddings is not None else encode_corpus(
                embedder["base"], [doc_text(corpus[d]) for d in doc_ids], batch_size=embedder["encode_batch_size"],
                max_seq_length=embedder["max_seq_length"], device=device, cache_dir=cache_dir, security=security)
            qids = list(queries)
            q_emb = encode_queries(embedder["base"], [queries[q] for q in qids],
                                   batch_size=embedder["encode_batch_size"],
                                   max_seq_length=embedder["max_seq_length"], device=device, security=security)
            self._dense = ({d: i for i, d in enumerate(doc_ids)}, doc_emb, dict(zip(qids, q_emb)))
            runs.append(DenseIndex(doc_emb, doc_ids, index).search(q_emb, qids, sub_depth))
        if kind == "hybrid":
            self._fused = self._fuse(runs, fusion, rrf_k, sub_depth, fusion_grid, val_qrels)
            runs = [self._fused]
        self.run = {qid: dict(ranked(runs[0].get(qid, {}))[:depth]) for qid in queries}

    def _fuse(self, runs: list[Run], fusion: str, rrf_k: int, depth: int, grid: tuple,
              val_qrels: Qrels | None) -> Run:
        """RRF, or wsum with the BM25 weight picked on the val queries (0.5 without val queries)."""
        if fusion == "rrf":
            return rrf(runs, k=rrf_k, depth=depth)
        from .metrics import evaluate_run

        w = 0.5
        if val_qrels:
            val = [{q: r[q] for q in val_qrels if q in r} for r in runs]
            w, by_w = pick_wsum(val[0], val[1], lambda run: evaluate_run(run, val_qrels, NDCG10)[0]["nDCG@10"],
                                grid, depth)
            self.fusion_stats["val_ndcg@10_by_bm25_weight"] = by_w
            log.info("mine hybrid: BM25 weight %g picked on val (%s)", w, by_w)
        self.fusion_stats["bm25_weight"] = w
        return wsum(runs, [w, 1.0 - w], depth)

    def dense_lists(self, groups: list[tuple[str, list[str], list[str]]]) -> list[tuple[list[float], int]] | None:
        """Cosine scores of each (qid, positives, negatives) group with a negative, positives first, from
        the embeddings mining already has (`metrics.score_ranked_lists` input); None for BM25 mining."""
        if self._dense is None:
            return None
        index, doc_emb, q_emb = self._dense
        return [([float(x) for x in doc_emb[[index[d] for d in pos + neg]] @ q_emb[qid]], len(pos))
                for qid, pos, neg in groups if neg]

    def doc_embeddings(self) -> tuple[dict[str, int], np.ndarray] | None:
        """({docid: row}, corpus embeddings) of a dense or hybrid first stage; None for BM25."""
        return None if self._dense is None else (self._dense[0], self._dense[1])

    def score(self, qid: str, docid: str) -> float:
        """The first stage's score for any document (hybrid: its fused score, 0 if in neither list)."""
        if docid in self.run[qid]:
            return self.run[qid][docid]
        if self.kind == "bm25":
            if self._bm25_last is None or self._bm25_last[0] != qid:
                self._bm25_last = (qid, self._bm25.score_query(self._queries[qid]))
            return float(self._bm25_last[1][self._bm25.position(docid)])
        if self.kind == "dense":
            pos, doc_emb, q_emb = self._dense
            return float(np.dot(q_emb[qid], doc_emb[pos[docid]]))
        return float(self._fused.get(qid, {}).get(docid, 0.0))


def _positives(qrels: Qrels, corpus: Mapping[str, Any], queries: Mapping[str, Any], split: str,
               skipped: dict[str, int]) -> dict[str, list[str]]:
    """{qid: [positive doc ids in qrels order]} for queries usable for mining; counts the rest."""
    out: dict[str, list[str]] = {}
    for qid, judged in qrels.items():
        if qid not in queries:
            skipped["query_text_missing"] += 1
            continue
        pos = [d for d, rel in judged.items() if rel > 0 and d in corpus]
        skipped["positives_not_in_corpus"] += sum(1 for d, rel in judged.items() if rel > 0 and d not in corpus)
        if not pos:
            skipped["no_positive"] += 1
            continue
        out[qid] = pos
    if skipped["query_text_missing"] or skipped["positives_not_in_corpus"]:
        log.warning("%s qrels: %d queries without text, %d positives not in the corpus (skipped)", split,
                    skipped["query_text_missing"], skipped["positives_not_in_corpus"])
    return out


def _rescorer(name: str | None, device: str, security: Mapping[str, bool]):
    """A function (query, [texts]) -> sigmoid scores, or None when no cross-encoder is configured."""
    if not name:
        return None
    import torch
    from sentence_transformers import CrossEncoder

    from .models import pick_device, resolve_model
    model = CrossEncoder(str(resolve_model(name)), device=pick_device(device),
                         trust_remote_code=security["trust_remote_code"])
    log.info("rescoring mined candidates with cross-encoder %s", name)

    def score(query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        # Identity then our own sigmoid: the threshold means the same for models with any default activation.
        logits = model.predict([(query, t) for t in texts], activation_fn=torch.nn.Identity(),
                               show_progress_bar=False, convert_to_numpy=True)
        return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64).reshape(-1)))).tolist()

    return score


def _random_docs(rng: random.Random, doc_ids: list[str], n: int, exclude: set[str]) -> list[str]:
    """Up to n distinct random doc ids not in `exclude` (fewer only when the corpus runs out)."""
    available = len(doc_ids) - len(exclude & set(doc_ids))
    n = min(n, max(available, 0))
    chosen: list[str] = []
    seen = set(exclude)
    while len(chosen) < n:
        d = doc_ids[rng.randrange(len(doc_ids))]
        if d not in seen:
            seen.add(d)
            chosen.append(d)
    return chosen


def _teacher(stage: _FirstStage, rescore, qid: str, query: str, docs: list[str], texts: list[str]) -> list[float]:
    """Teacher scores for (query, doc) pairs: the cross-encoder's sigmoid when `mine.rescore_with` names
    one, else the first stage's score min-max normalized over the query's first-stage list (1 = its top,
    0 = the last kept; a random document may fall below 0), so BM25, cosine and RRF share one scale."""
    if rescore is not None:
        return [round(s, 6) for s in rescore(query, texts)]
    listed = list(stage.run[qid].values())
    lo, hi = (min(listed), max(listed)) if listed else (0.0, 1.0)
    if hi == lo:  # one document listed (or all tied): it is the top, 1
        lo = hi - 1.0
    span = hi - lo
    return [round((stage.score(qid, d) - lo) / span, 6) for d in docs]


def _consistent(corpus: Mapping[str, Mapping[str, str]], synthetic: Mapping[str, Mapping[str, str]], k: int,
                main: _FirstStage, **stage_kw: Any) -> set[str]:
    """Round-trip consistency (InPars, Promptagator): the synthetic queries whose source passage the first
    stage ranks in its top k. The source passage is searched as the student sees it (`pos_text`: for
    inverse cloze, without the query sentence), or the sentence itself would find it trivially; the other
    documents' embeddings are the main first stage's, so only changed passages are encoded again."""
    if not synthetic:
        return set()
    cloze = dict(corpus)
    for s in synthetic.values():
        if s["pos_text"] != doc_text(corpus[s["docid"]]):
            cloze[s["docid"]] = {"title": "", "text": s["pos_text"]}
    doc_emb = None
    if (dense := main.doc_embeddings()) is not None:
        from .embeddings import encode_corpus

        pos, doc_emb = dense[0], dense[1].copy()
        changed = sorted(d for d in cloze if cloze[d] is not corpus[d])
        if changed:
            emb = stage_kw["embedder"]
            doc_emb[[pos[d] for d in changed]] = encode_corpus(
                emb["base"], [doc_text(cloze[d]) for d in changed], batch_size=emb["encode_batch_size"],
                max_seq_length=emb["max_seq_length"], device=stage_kw["device"], cache_dir=stage_kw["cache_dir"],
                security=stage_kw["security"])
    queries = {q: s["text"] for q, s in synthetic.items()}
    stage = _FirstStage(main.kind, cloze, queries, k, doc_embeddings=doc_emb, **stage_kw)
    return {q for q, s in synthetic.items() if s["docid"] in stage.run[q]}


def mine(corpus: Mapping[str, Mapping[str, str]], queries: Mapping[str, Any], train_qrels: Qrels,
         val_qrels: Qrels, cfg: Mapping[str, Any], *, seed: int, embedder: Mapping[str, Any] | None = None,
         device: str = "auto", cache_dir: str | Path | None = None, language: str = "en",
         security: Mapping[str, bool], synthetic: Mapping[str, Mapping[str, str]] | None = None,
         consistency_k: int = 10) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Mine training groups for train queries and reranking-style groups for val queries.

    cfg is params["mine"]; embedder is params["embedder"] (base, max_seq_length, encode_batch_size), needed
    for dense and hybrid mining; language is params["language"] (BM25's words); security is
    params["security"]. `synthetic` ({qid: {"text", "docid", "pos_text"}}, ragtune.synthetic) adds
    generated training queries: one kept only when its source passage is in the first stage's top
    `consistency_k`, its positive text is `pos_text`. Returns (train_groups, val_groups, stats); groups are
    FlagEmbedding's {"query", "pos", "neg", "pos_scores", "neg_scores"}, the scores the teacher's (see
    `_teacher`), for distillation. Same inputs and seed -> same groups.
    """
    start = time.perf_counter()
    synthetic = synthetic or {}
    if synthetic:
        queries = {**queries, **{q: s["text"] for q, s in synthetic.items()}}
        train_qrels = {**train_qrels, **{q: {s["docid"]: 1} for q, s in synthetic.items()}}
    skipped = {"query_text_missing": 0, "positives_not_in_corpus": 0, "no_positive": 0}
    train_pos = _positives(train_qrels, corpus, queries, "train", skipped)
    val_skipped = {"query_text_missing": 0, "positives_not_in_corpus": 0, "no_positive": 0}
    val_pos = _positives(val_qrels, corpus, queries, "val", val_skipped)
    _check_sizes(cfg, corpus, train_pos, val_pos)

    # Val needs val_depth non-positives, so it looks a little deeper: one extra slot per positive.
    max_pos = max(len(p) for p in [*train_pos.values(), *val_pos.values()])
    qtexts = {qid: query_text(queries[qid]) for qid in [*train_pos, *val_pos]}
    depth = max(cfg["range_max"], cfg["val_depth"]) + max_pos
    stage_kw = dict(rrf_k=cfg["rrf_k"], embedder=embedder, device=device, cache_dir=cache_dir, index=cfg["index"],
                    language=language, security=security)
    stage = _FirstStage(cfg["first_stage"], corpus, qtexts, depth, fusion=cfg["fusion"],
                        fusion_grid=tuple(cfg["fusion_grid"]),
                        val_qrels={q: {d: 1 for d in p} for q, p in val_pos.items()}, **stage_kw)
    # rrf fusion here: wsum's weight needs val queries, and this is a filter, not a ranking to train on.
    consistent = _consistent(corpus, synthetic, consistency_k, stage, **stage_kw)
    given = {qid: [d for d, rel in train_qrels[qid].items() if rel <= 0 and d in corpus]
             if cfg["given_negatives"] != "ignore" else [] for qid in train_pos}
    miner = _Miner(corpus, stage, qtexts, cfg, seed, _rescorer(cfg["rescore_with"], device, security), given,
                   synthetic=synthetic, consistent=consistent)
    train_groups = [g for qid, pos in train_pos.items() if (g := miner.train_group(qid, pos)) is not None]
    val_ids = [(qid, *miner.val_ids(qid, pos)) for qid, pos in val_pos.items()]
    val_groups = [miner.group(qid, pos, neg) for qid, pos, neg in val_ids]
    stats = _stats(cfg, miner, train_groups, val_groups, n_train=len(train_qrels) - len(synthetic),
                   n_val=len(val_qrels), skipped=skipped, language=language)
    stats["val_base_embedder"] = _base_embedder_val(stage, val_ids)
    log.info("mined %d train groups (%.1f negatives each, %d queries short) and %d val groups in %.1f s",
             len(train_groups), stats["negatives_per_group_mean"], miner.counts["queries_short"],
             len(val_groups), time.perf_counter() - start)
    return train_groups, val_groups, stats


def _base_embedder_val(stage: _FirstStage, val_ids: list[tuple[str, list[str], list[str]]]) -> dict | None:
    """The untrained embedder's val metrics as its trainer computes them (cosine ranking of each val
    group), from the embeddings dense mining already has; None for BM25 mining."""
    from .metrics import score_ranked_lists

    lists = stage.dense_lists(val_ids)
    if not lists:
        return None
    scores = score_ranked_lists(lists, k=10)
    return {"ndcg@10": scores["ndcg"], "mrr@10": scores["mrr"], "map": scores["map"]}


def _check_sizes(cfg: Mapping[str, Any], corpus: Mapping, train_pos: dict, val_pos: dict) -> None:
    num_neg, n_random = cfg["num_negatives"], cfg["random_negatives"]
    if not train_pos:
        raise UserError("train qrels: no query with a positive document in the corpus; nothing to mine "
                        "(with no labelled train queries, set synthetic.queries to train on generated ones)")
    # Negatives are distinct non-positive documents: a corpus that small cannot fill a group.
    most_pos = max(len(p) for p in train_pos.values())
    if num_neg + n_random > len(corpus) - most_pos:
        what = f"{num_neg}" + (f" (+ mine.random_negatives {n_random})" if n_random else "")
        raise UserError(f"params.yaml: mine.num_negatives: {what} is more than this "
                        f"corpus allows ({len(corpus)} documents, up to {most_pos} positives per query, so at "
                        f"most {max(len(corpus) - most_pos, 0)} negatives)")
    overlap = set(train_pos) & set(val_pos)
    if overlap:
        raise UserError(f"train and val qrels share {len(overlap)} queries (e.g. '{min(overlap)}')")


class _Miner:
    """Builds one query's group at a time from the first stage's ranking, counting what it filtered."""

    def __init__(self, corpus: Mapping, stage: _FirstStage, qtexts: dict[str, str], cfg: Mapping[str, Any],
                 seed: int, rescore, given: dict[str, list[str]], *, synthetic: Mapping[str, Mapping[str, str]],
                 consistent: set[str]):
        self.corpus, self.stage, self.qtexts, self.cfg, self.seed, self.rescore = (
            corpus, stage, qtexts, cfg, seed, rescore)
        self.given = given  # judged non-relevant docs per train query (mine.given_negatives)
        self.synthetic, self.consistent = synthetic, consistent
        self.real_groups = 0
        self.doc_ids = sorted(corpus)
        self._text: dict[str, str] = {}  # doc_text cache: positives recur across groups
        self.chosen_ranks: list[int] = []
        self.recalls: list[float] = []
        self.counts = {"window_candidates": 0, "positives_in_window": 0, "margin_filtered": 0,
                       "rescore_filtered": 0, "queries_short": 0, "random_topup": 0, "random_extra": 0,
                       "queries_without_hard_negatives": 0, "given": 0, "synthetic_inconsistent": 0}

    def text(self, d: str) -> str:
        if d not in self._text:
            self._text[d] = doc_text(self.corpus[d])
        return self._text[d]

    def group(self, qid: str, pos: list[str], neg: list[str], rescore=None) -> dict:
        """FlagEmbedding's group, with the teacher's scores; a synthetic query's positive is its pos_text."""
        pos_texts = [self.synthetic[qid]["pos_text"]] if qid in self.synthetic else [self.text(d) for d in pos]
        neg_texts = [self.text(d) for d in neg]
        scores = _teacher(self.stage, rescore, qid, self.qtexts[qid], pos + neg,
                          pos_texts + neg_texts if rescore is not None else [])
        group = {"query": self.qtexts[qid], "pos": pos_texts, "neg": neg_texts,
                 "pos_scores": scores[:len(pos)], "neg_scores": scores[len(pos):]}
        if qid in self.synthetic:  # each trainer keeps or leaves these (synthetic.trainers)
            group["synthetic"] = True
        return group

    def _candidates(self, qid: str, ranking: list[str], pos_set: set[str], threshold: float,
                    skip: set[str]) -> list[tuple]:
        """(rank, doc) in the window, not in `skip`, that are no positive and score below the
        false-negative margin."""
        range_min, range_max, c = self.cfg["range_min"], self.cfg["range_max"], self.counts
        window = [(r, d) for r, d in enumerate(ranking[range_min:range_max], start=range_min + 1)
                  if d not in skip]
        c["window_candidates"] += len(window)
        cands = []
        for r, d in window:
            if d in pos_set:
                c["positives_in_window"] += 1
            elif self.stage.run[qid][d] >= threshold:
                c["margin_filtered"] += 1
            else:
                cands.append((r, d))
        return cands

    def _rescored(self, qid: str, cands: list[tuple], need: int) -> list[tuple]:
        # Rescore best-first in chunks until `need` survive: every chosen negative passed the
        # cross-encoder, and the costly model sees few more pairs than needed.
        num_neg = self.cfg["num_negatives"]
        kept, i = [], 0
        while len(kept) < need and i < len(cands):
            chunk = cands[i:i + 2 * num_neg]
            probs = self.rescore(self.qtexts[qid], [self.text(d) for _, d in chunk])
            passed = [rd for rd, p in zip(chunk, probs) if p <= self.cfg["rescore_threshold"]]
            self.counts["rescore_filtered"] += len(chunk) - len(passed)
            kept += passed
            i += len(chunk)
        return kept

    def train_group(self, qid: str, pos: list[str]) -> dict | None:
        """The query's training group; None for a synthetic query whose passage the first stage misses."""
        cfg, c = self.cfg, self.counts
        if qid in self.synthetic and qid not in self.consistent:
            c["synthetic_inconsistent"] += 1
            return None
        self.real_groups += qid not in self.synthetic
        num_neg, n_random, range_max = cfg["num_negatives"], cfg["random_negatives"], cfg["range_max"]
        ranking = [d for d, _ in ranked(self.stage.run[qid])]
        pos_set = set(pos)
        self.recalls.append(len(pos_set & set(ranking[:range_max])) / len(pos_set))
        pos_scores = [self.stage.score(qid, d) for d in pos]
        best = max(pos_scores)
        given = self.given[qid][:num_neg]  # trusted negatives first (mine.given_negatives)
        c["given"] += len(given)
        cands = [] if cfg["given_negatives"] == "only" else self._candidates(
            qid, ranking, pos_set, threshold=best - abs(best) * cfg["relative_margin"], skip=set(given))
        if self.rescore is not None:
            cands = self._rescored(qid, cands, need=num_neg - len(given))
        hard = cands[:num_neg - len(given)]
        self.chosen_ranks.extend(r for r, _ in hard)
        neg = given + [d for _, d in hard]
        rng = random.Random(f"{self.seed}:{qid}")  # per query: one query's draws do not shift another's
        exclude = pos_set | set(ranking[:range_max]) | set(given)
        if len(neg) < num_neg:
            c["queries_short"] += 1
            c["queries_without_hard_negatives"] += not neg
            topup = _random_docs(rng, self.doc_ids, num_neg - len(neg), exclude)
            c["random_topup"] += len(topup)
            neg += topup
        if n_random:
            extra = _random_docs(rng, self.doc_ids, n_random, exclude | set(neg))
            c["random_extra"] += len(extra)
            neg += extra
        return self.group(qid, pos, neg, self.rescore)

    def val_ids(self, qid: str, pos: list[str]) -> tuple[list[str], list[str]]:
        """A val group's (positives, negatives), one document per distinct text, as the trainers read
        groups (io.read_groups): negatives are the first `val_depth` other texts of the first stage's ranking."""
        seen: dict[str, str] = {}
        for d in pos:
            seen.setdefault(self.text(d), d)
        pos_ids, neg = list(seen.values()), []
        for d, _ in ranked(self.stage.run[qid]):
            if len(neg) == self.cfg["val_depth"]:
                break
            if self.text(d) not in seen:
                seen[self.text(d)] = d
                neg.append(d)
        return pos_ids, neg


def _stats(cfg: Mapping[str, Any], miner: _Miner, train_groups: list[dict], val_groups: list[dict], *,
           n_train: int, n_val: int, skipped: dict, language: str) -> dict[str, Any]:
    c, chosen_ranks = miner.counts, miner.chosen_ranks
    n_negs = [len(g["neg"]) for g in train_groups]
    return {
        "first_stage": cfg["first_stage"],
        "language": language,
        **({"hybrid_fusion": miner.stage.fusion_stats} if miner.stage.fusion_stats else {}),
        "window": f"ranks {cfg['range_min'] + 1}..{cfg['range_max']} (1-based)",
        "queries": n_train,
        "groups": len(train_groups),
        "groups_real": miner.real_groups,
        "groups_synthetic": len(train_groups) - miner.real_groups,
        "synthetic_queries": len(miner.synthetic),
        "synthetic_inconsistent": c["synthetic_inconsistent"],
        "teacher": f"cross-encoder {cfg['rescore_with']}" if miner.rescore is not None
        else f"first stage ({cfg['first_stage']}, min-max normalized)",
        "val_queries": n_val,
        "val_groups": len(val_groups),
        "skipped_train_queries": skipped,
        "negatives_per_group_mean": round(statistics.fmean(n_negs), 4),
        "negatives_per_group_min": min(n_negs),
        "hard_negative_rank_mean": round(statistics.fmean(chosen_ranks), 4) if chosen_ranks else None,
        "hard_negative_rank_median": statistics.median(chosen_ranks) if chosen_ranks else None,
        "window_candidates": c["window_candidates"],
        "positives_in_window": c["positives_in_window"],
        "false_negative_filtered": c["margin_filtered"],
        "false_negative_filtered_share": round(c["margin_filtered"] / max(c["window_candidates"], 1), 4),
        "rescore_filtered": c["rescore_filtered"],
        "given_negatives": cfg["given_negatives"],
        "given_negatives_used": c["given"],
        "queries_short_of_negatives": c["queries_short"],
        "queries_without_hard_negatives": c["queries_without_hard_negatives"],
        "random_negatives_topup": c["random_topup"],
        "random_negatives_extra": c["random_extra"],
        f"train_recall@{cfg['range_max']}": round(statistics.fmean(miner.recalls), 4),
        "val_negatives_per_group_mean": round(statistics.fmean(len(g["neg"]) for g in val_groups), 4)
        if val_groups else None,
    }
