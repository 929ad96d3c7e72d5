"""First-stage retrieval behind one shape: a run is {qid: {docid: score}} (what pytrec_eval takes).

- BM25 (bm25s; words, stopwords and stemmer of params `language`, see ragtune.language):
  `BM25Index(corpus, language).search(queries, k)`.
- Dense (sentence-transformers embeddings, FAISS inner product on L2-normalised vectors = cosine):
  `DenseIndex(embeddings, doc_ids).search(query_embeddings, qids, k)` or `dense_search`.
- Fusion: `rrf(runs)`, reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009), or
  `wsum(runs, weights)`, a convex combination of per-query min-max normalized scores (ranx's "wsum"
  method with "min-max" norm; Bassani, ranx.fuse, ECIR 2022), its weight picked on val by `pick_wsum`.

Documents are seen as `ragtune.io.doc_text(doc)` (title + text) by every retriever. Queries may be given
as plain strings or as read_queries' {"text": ..., "metadata": ...} objects.
Every ranking breaks score ties by document id (ascending string order), so runs do not depend on
the corpus file's order or on library internals.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .io import Run, doc_text
from .scores import minmax

log = logging.getLogger(__name__)


def query_text(q: Any) -> str:
    """A query given as a string or as a read_queries object."""
    return q if isinstance(q, str) else q["text"]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first; ties go to the lower index (= smaller doc id)."""
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        kth = np.partition(scores, n - k)[n - k]
        cand = np.flatnonzero(scores >= kth)  # every doc tied with the k-th is a candidate
    else:
        cand = np.arange(n)
    order = np.lexsort((cand, -scores[cand]))  # last key is primary: score desc, then index asc
    return cand[order[:k]]


def ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """A run's docs for one query as (docid, score), best first, ties by doc id."""
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


class BM25Index:
    """A bm25s index over a corpus, built once and searchable for several query sets.

    Scores are bm25s' Lucene variant (k1=1.5, b=0.75). Documents with score 0 (no query term) are left
    out of runs: they carry no signal and would otherwise be arbitrary filler.
    """

    def __init__(self, corpus: Mapping[str, Mapping[str, str]], language: str = "en", *, k1: float = 1.5,
                 b: float = 0.75, show_progress: bool = False):
        from . import language as lang

        if not corpus:
            raise UserError("BM25: the corpus is empty")
        self.language = language
        self._stemmer = lang.stemmer(language)
        self.doc_ids = sorted(corpus)  # index order = doc id order, so ties break by doc id
        self._pos = {d: i for i, d in enumerate(self.doc_ids)}
        start = time.perf_counter()
        tokens = self._tokenize([doc_text(corpus[d]) for d in self.doc_ids], return_ids=True,
                                show_progress=show_progress)
        self.retriever = lang.import_bm25s().BM25(k1=k1, b=b)
        self.retriever.index(tokens, show_progress=show_progress)
        log.debug("BM25 index: %d documents, %d terms, built in %.1f s (%s)", len(self.doc_ids),
                  len(self.retriever.vocab_dict), time.perf_counter() - start, lang.describe(language))

    def _tokenize(self, texts: list[str], *, return_ids: bool, show_progress: bool = False):
        """ragtune.language's words, joined and handed to bm25s for its vocabulary and the stemmer."""
        from .language import import_bm25s, words

        bm25s = import_bm25s()
        joined = [" ".join(words(t, self.language)) for t in texts]
        return bm25s.tokenize(joined, lower=False, token_pattern=r"\S+", stopwords=None, stemmer=self._stemmer,
                              return_ids=return_ids, show_progress=show_progress)

    def position(self, doc_id: str) -> int:
        """Where a document's score sits in score_query's vector."""
        return self._pos[doc_id]

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        tokens = self._tokenize(texts, return_ids=False)
        return [self.retriever.get_tokens_ids(t) for t in tokens]

    def _scores(self, ids: list[int]) -> np.ndarray:
        if not ids:  # no known term: nothing matches
            return np.zeros(len(self.doc_ids), dtype=np.float32)
        return self.retriever.get_scores_from_ids(ids)

    def score_query(self, query: Any) -> np.ndarray:
        """Scores of every document for one query, in self.doc_ids order (see `position`)."""
        return self._scores(self._token_ids([query_text(query)])[0])

    def search(self, queries: Mapping[str, Any], k: int) -> Run:
        """Top-k documents per query -> run {qid: {docid: score}}, best first."""
        start = time.perf_counter()
        qids = list(queries)
        run: Run = {}
        # One score vector at a time: all of them at once would take n_queries x n_docs floats.
        for qid, ids in zip(qids, self._token_ids([query_text(queries[q]) for q in qids])):
            scores = self._scores(ids)
            run[qid] = {self.doc_ids[i]: float(scores[i]) for i in top_k(scores, k) if scores[i] > 0}
        log.debug("BM25: %d queries, top %d, in %.2f s", len(qids), k, time.perf_counter() - start)
        return run


class DenseIndex:
    """FAISS inner-product index over L2-normalised embeddings (so scores are cosine similarities).

    index="flat" is exact and the default; "hnsw" (graph, approximate) and "ivf" (clustered, approximate)
    are for corpora where exact search gets slow (roughly > 1M documents on CPU). Tiny corpora always use
    flat: approximate structures buy nothing there and IVF needs enough points to train its centroids.
    """

    def __init__(self, embeddings: np.ndarray, doc_ids: Sequence[str], index: str = "flat", *,
                 hnsw_m: int = 32, ef_search: int = 128, nprobe: int = 16):
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(doc_ids):
            raise ValueError(f"DenseIndex: {emb.shape} embeddings for {len(doc_ids)} doc ids")
        if len(set(doc_ids)) != len(doc_ids):
            raise ValueError("DenseIndex: duplicate doc ids")
        self.doc_ids = list(doc_ids)
        # Rank positions of each doc id in id order, for id-based tie-breaking.
        self._id_rank = np.empty(len(self.doc_ids), dtype=np.int64)
        self._id_rank[np.argsort(np.array(self.doc_ids, dtype=object), kind="stable")] = np.arange(len(doc_ids))
        if index not in ("flat", "hnsw", "ivf"):
            raise ValueError(f"DenseIndex: unknown index type {index!r} (flat, hnsw, ivf)")
        n, dim = emb.shape
        kind = index if n >= 10_000 else "flat"
        faiss = _faiss(kind)
        if faiss is None:
            self.index = ExactIP(dim)
        elif kind == "flat":
            self.index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efSearch = ef_search
        elif kind == "ivf":
            nlist = max(1, int(4 * np.sqrt(n)))
            self._quantizer = faiss.IndexFlatIP(dim)  # kept referenced: the IVF index does not own it
            self.index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.train(emb)  # faiss' k-means is seeded (1234): the same data gives the same index
            self.index.nprobe = min(nprobe, nlist)
        self.index.add(emb)
        self.kind = kind
        log.debug("dense index: %d documents, dim %d, %s", n, dim, kind)

    def search(self, query_embeddings: np.ndarray, qids: Sequence[str], k: int) -> Run:
        """Top-k documents per query -> run {qid: {docid: score}}, best first."""
        q = np.ascontiguousarray(query_embeddings, dtype=np.float32)
        if q.ndim != 2 or q.shape[0] != len(qids):
            raise ValueError(f"DenseIndex.search: {q.shape} embeddings for {len(qids)} query ids")
        k = min(k, len(self.doc_ids))
        run: Run = {}
        if len(qids) == 0 or k <= 0:
            return {qid: {} for qid in qids}
        scores, idx = self.index.search(q, k)
        for qid, row_s, row_i in zip(qids, scores, idx):
            keep = row_i >= 0  # approximate indexes pad missing results with -1
            row_s, row_i = row_s[keep], row_i[keep]
            order = np.lexsort((self._id_rank[row_i], -row_s))
            run[qid] = {self.doc_ids[i]: float(row_s[j]) for j, i in zip(order, row_i[order])}
        return run


def _faiss(kind: str):
    """The faiss module; None where it is not installed and the exact flat search can do without it."""
    try:
        import faiss
    except ImportError:
        if kind != "flat":
            raise UserError(f"dense index '{kind}' needs faiss: pip install faiss-cpu") from None
        log.info("faiss is not installed: exact inner-product search with numpy")
        return None
    return faiss


class ExactIP:
    """faiss.IndexFlatIP's add/search with numpy, for machines without faiss (the GPU image: bench/gpu.sh)."""

    def __init__(self, dim: int):
        self.emb = np.zeros((0, dim), dtype=np.float32)

    def add(self, emb: np.ndarray) -> None:
        self.emb = np.concatenate([self.emb, emb])

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.empty((len(q), k), dtype=np.float32)
        idx = np.empty((len(q), k), dtype=np.int64)
        step = max(1, 2**24 // max(1, len(self.emb)))  # queries per block: at most 64 MB of scores at once
        for s in range(0, len(q), step):
            block = q[s:s + step] @ self.emb.T
            top = np.argpartition(-block, k - 1, axis=1)[:, :k]
            top_scores = np.take_along_axis(block, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            idx[s:s + step] = np.take_along_axis(top, order, axis=1)
            scores[s:s + step] = np.take_along_axis(top_scores, order, axis=1)
        return scores, idx


def dense_search(model_path: str, corpus: Mapping[str, Mapping[str, str]], queries: Mapping[str, Any],
                 k: int, *, batch_size: int = 64, max_seq_length: int | None = None, device: str = "auto",
                 cache_dir: str | Path | None = None, index: str = "flat", security: Mapping[str, bool]) -> Run:
    """Encode corpus (cached) and queries with one model and return the top-k run; `security` is
    params["security"]."""
    from .embeddings import encode_corpus, encode_queries

    doc_ids = list(corpus)
    doc_emb = encode_corpus(model_path, [doc_text(corpus[d]) for d in doc_ids], batch_size=batch_size,
                            max_seq_length=max_seq_length, device=device, cache_dir=cache_dir, security=security)
    qids = list(queries)
    q_emb = encode_queries(model_path, [query_text(queries[q]) for q in qids], batch_size=batch_size,
                           max_seq_length=max_seq_length, device=device, security=security)
    return DenseIndex(doc_emb, doc_ids, index).search(q_emb, qids, k)


def rrf(runs: Sequence[Run], k: int = 60, depth: int = 100) -> Run:
    """Reciprocal rank fusion: score(d) = sum over runs of 1 / (k + rank of d), rank 1-based, counting
    only each run's top `depth` documents. Queries missing from a run get nothing from it."""
    fused: Run = {}
    for run in runs:
        for qid, docs in run.items():
            acc = fused.setdefault(qid, {})
            for rank, (docid, _) in enumerate(ranked(docs)[:depth], start=1):
                acc[docid] = acc.get(docid, 0.0) + 1.0 / (k + rank)
    return {qid: dict(ranked(docs)) for qid, docs in fused.items()}


def wsum(runs: Sequence[Run], weights: Sequence[float], depth: int = 100) -> Run:
    """sum_i weights[i] * minmax(run_i's top `depth`); a document missing from a run gets 0 from it."""
    fused: Run = {}
    for run, w in zip(runs, weights):
        for qid, docs in run.items():
            acc = fused.setdefault(qid, {})
            top = dict(ranked(docs)[:depth])
            for docid, v in (minmax(top).items() if top else ()):
                acc[docid] = acc.get(docid, 0.0) + w * v
    return {qid: dict(ranked(docs)[:depth]) for qid, docs in fused.items()}


def pick_wsum(bm25: Run, dense: Run, score, grid: Sequence[float], depth: int) -> tuple[float, dict[str, float]]:
    """The BM25 weight w of wsum([bm25, dense], [w, 1 - w]) with the best `score(run)` (val nDCG@10);
    ties go to the first grid value. Returns (w, {w: score})."""
    scores = {f"{w:g}": round(score(wsum([bm25, dense], [w, 1.0 - w], depth)), 4) for w in grid}
    best = max(grid, key=lambda w: (scores[f"{w:g}"], -list(grid).index(w)))
    return float(best), scores
