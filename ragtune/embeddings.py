"""Dense encoding with sentence-transformers, with an on-disk cache for corpus embeddings.

Corpus embeddings are the expensive part (minutes on CPU) and several stages need the same ones (mine and
evaluate both encode the corpus with the base model), so they are cached under `.cache/embeddings/`
(not a DVC output) keyed by what determines them: the model's files (or its hub id), the texts,
max_seq_length and the inference dtype. A retrained or merged model has different weights, hence a
different key. The cache is written in shards of SHARD_DOCS documents, so a corpus of millions is
encoded shard by shard, resumably, and by several processes at once (stages/encode_corpus.py). Query embeddings are cheap and never cached.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import distributed
from .io import atomic_output
from .models import autocast_dtype, pick_device, resolve_model

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path(".cache") / "embeddings"
SHARD_DOCS = 100_000  # documents per cache file: bounds encoding memory and what a killed run loses
# Files of a model folder that decide its outputs; model cards, training args and checkpoints do not.
_MODEL_FILE_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model"}
_IGNORED_FILES = {"README.md", "training_args.bin", "trainer_state.json"}

_loaded: dict[tuple[str, str, str], object] = {}  # (path, fingerprint, device) -> SentenceTransformer


_fingerprints: dict[tuple, str] = {}  # (path, file stats) -> hash: hash each model's files once per process


def _model_files(root: Path) -> list[Path]:
    files = []
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if (f.is_file() and f.suffix in _MODEL_FILE_SUFFIXES and f.name not in _IGNORED_FILES
                and not any(part.startswith((".", "checkpoint")) for part in rel.parts)):
            files.append(f)
    return files


def model_fingerprint(model_path: str) -> str:
    """A hash of the files that decide a model's embeddings; for a hub id, the id itself."""
    root = Path(model_path)
    if not root.is_dir():
        return hashlib.sha256(f"hub:{model_path}".encode()).hexdigest()
    files = _model_files(root)
    stats = (str(root.resolve()),) + tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stats in _fingerprints:
        return _fingerprints[stats]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    _fingerprints[stats] = h.hexdigest()
    return _fingerprints[stats]


def texts_fingerprint(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")  # so ["ab", "c"] and ["a", "bc"] differ
    return h.hexdigest()


def load_model(model_path: str, device: str = "auto", max_seq_length: int | None = None, *,
               security: Mapping[str, bool]):
    """Load (once per process) a SentenceTransformer from a folder, packaged name or hub id;
    `security` is params["security"]."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model(model_path)
    device = pick_device(device)
    key = (path, model_fingerprint(path), device)
    model = _loaded.get(key)
    if model is None:
        # str(): a pathlib.Path raises TypeError in sentence-transformers 6.2.0.
        model = SentenceTransformer(str(path), device=device, trust_remote_code=security["trust_remote_code"])
        _loaded.clear()  # keep one model in memory: stages switch models, RAM is small
        _loaded[key] = model
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def _encode(model, texts: list[str], kind: str, batch_size: int, show_progress: bool) -> np.ndarray:
    # encode_query/encode_document apply the model's own "query"/"document" prompts when it has them.
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    from .logs import progress_bars

    fn = model.encode_query if kind == "query" else model.encode_document
    emb = fn(texts, batch_size=batch_size, show_progress_bar=show_progress and progress_bars(), convert_to_numpy=True,
             normalize_embeddings=True)
    return np.ascontiguousarray(emb, dtype=np.float32)


def encode_corpus(model_path: str, texts: list[str], *, batch_size: int = 64,
                  max_seq_length: int | None = None, device: str = "auto",
                  cache_dir: str | Path | None = None, show_progress: bool = True,
                  security: Mapping[str, bool]) -> np.ndarray:
    """Embed documents -> float32 array (len(texts), dim) with L2-normalised rows, cached on disk
    (see `fill_cache`). sentence-transformers encodes in length-sorted batches and restores the order."""
    if not texts:
        model = load_model(resolve_model(model_path), device, max_seq_length, security=security)
        return _encode(model, texts, "document", batch_size, False)
    return _assemble(fill_cache(model_path, texts, batch_size=batch_size, max_seq_length=max_seq_length,
                                device=device, cache_dir=cache_dir, show_progress=show_progress,
                                security=security))


def fill_cache(model_path: str, texts: list[str], *, batch_size: int, max_seq_length: int | None, device: str,
               cache_dir: str | Path | None, show_progress: bool = True, security: Mapping[str, bool]
               ) -> list[tuple[Path, list[str]]]:
    """Encode whatever the cache lacks of `texts`; return its shards [(file, texts)].

    The cache key covers the model files (or hub id), the texts in order, max_seq_length and the autocast
    dtype (ragtune.models.inference_precision), so a cached array is reused only when it would come out
    the same (float32 keys are those of caches written before there was a choice). Each file holds
    SHARD_DOCS documents: encoding memory is bounded by a shard, a killed run resumes at the first
    missing shard, and under torchrun each process encodes every world_size-th shard
    (stages/encode_corpus.py --processes N).
    """
    path = resolve_model(model_path)
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    precision = autocast_dtype(pick_device(device))  # under a stage's inference_precision, e.g. bfloat16
    key = hashlib.sha256("|".join([model_fingerprint(path), texts_fingerprint(texts), str(max_seq_length),
                                   "document"] + ([precision] if precision != "float32" else [])
                                  ).encode()).hexdigest()[:32]
    n = math.ceil(len(texts) / SHARD_DOCS)
    shards = [(cache_dir / f"{key}-{i:05d}-of-{n:05d}.npy", texts[i * SHARD_DOCS:(i + 1) * SHARD_DOCS])
              for i in range(n)]
    start, encoded = time.perf_counter(), 0
    for cache_file, shard in shards[distributed.rank()::distributed.world_size()]:
        if _cached(cache_file, len(shard)) is not None:
            continue
        model = load_model(path, device, max_seq_length, security=security)
        log.debug("encoding %d documents with %s (max_seq_length %s, batch %d, device %s) into %s",
                  len(shard), path, model.max_seq_length, batch_size, model.device, cache_file)
        emb = _encode(model, shard, "document", batch_size, show_progress)
        with atomic_output(cache_file) as tmp, open(tmp, "wb") as f:
            np.save(f, emb)  # a file object: np.save on a bare path would append ".npy" to the temp name
        encoded += len(shard)
    if encoded:
        took = time.perf_counter() - start
        log.info("encoded %d documents with %s in %.1f s (%.1f docs/s)", encoded, model_path, took,
                 encoded / max(took, 1e-9))
    distributed.barrier()  # every process's shards are written before any is read
    return shards


def _cached(cache_file: Path, rows: int) -> np.ndarray | None:
    """The cached shard (memory-mapped), or None when it is missing or unreadable."""
    if not cache_file.is_file():
        return None
    try:
        emb = np.load(cache_file, mmap_mode="r", allow_pickle=False)
        if emb.shape[0] == rows and emb.dtype == np.float32:
            return emb
    except (OSError, ValueError):
        pass
    log.warning("corpus embeddings cache %s is unreadable; encoding again", cache_file)
    return None


def _assemble(shards: list[tuple[Path, list[str]]]) -> np.ndarray:
    """The shards' rows in one array, filled shard by shard (peak memory: the result + one shard)."""
    parts = [_cached(f, len(texts)) for f, texts in shards]
    if any(p is None for p in parts):
        raise RuntimeError(f"corpus embeddings: shard missing after encoding in {shards[0][0].parent}")
    out = np.empty((sum(len(p) for p in parts), parts[0].shape[1]), dtype=np.float32)
    row = 0
    for part in parts:
        out[row:row + len(part)] = part
        row += len(part)
    log.debug("corpus embeddings: %d x %d from %d cached shard(s) in %s", *out.shape, len(parts),
              shards[0][0].parent)
    return out


def encode_queries(model_path: str, texts: list[str], *, batch_size: int = 64,
                   max_seq_length: int | None = None, device: str = "auto",
                   show_progress: bool = False, security: Mapping[str, bool]) -> np.ndarray:
    """Embed queries -> float32 array (len(texts), dim) with L2-normalised rows (not cached)."""
    model = load_model(model_path, device, max_seq_length, security=security)
    return _encode(model, texts, "query", batch_size, show_progress)


def val_samples(groups: list[dict]) -> list[dict]:
    """RerankingEvaluator samples; a query without negatives cannot be ranked and is left out."""
    return [{"query": g["query"], "positive": g["pos"], "negative": g["neg"]} for g in groups if g["neg"]]


def val_evaluator(samples: list[dict], *, name: str, batch_size: int, dtype: str = "float32", device: str = "cpu"):
    """sentence-transformers' RerankingEvaluator over `samples` ({"query", "positive", "negative"}) with
    its metrics computed by ragtune.metrics (pytrec_eval, the code that scores test) instead of sklearn,
    whose nDCG averages over ties where trec_eval orders them. Keys stay the evaluator's own
    (`<name>_ndcg@10`, `<name>_mrr@10`, `<name>_map`), so the trainer picks checkpoints on that nDCG@10.
    It encodes under autocast at `dtype` on `device` (ragtune.models.autocast), as evaluate will."""
    from sentence_transformers.sentence_transformer.evaluation import RerankingEvaluator

    from .metrics import score_ranked_lists
    from .models import autocast

    class ValEvaluator(RerankingEvaluator):
        def compute_metrics(self, model):
            import torch

            texts = [t for s in self.samples for t in s["positive"] + s["negative"]]
            row = {t: i for i, t in enumerate(dict.fromkeys(texts))}  # val groups share many passages
            with autocast(dtype, device):
                queries = self.embed_inputs(model, [s["query"] for s in self.samples], encode_fn_name="query",
                                            show_progress_bar=self.show_progress_bar)
                unique = self.embed_inputs(model, list(row), encode_fn_name="document",
                                           show_progress_bar=self.show_progress_bar)
            # Cosines in float32 even inside a stage's autocast: bfloat16 scores would tie.
            queries, unique = torch.as_tensor(queries).float(), torch.as_tensor(unique).float()
            docs = unique[[row[t] for t in texts]]
            with torch.autocast(device_type=queries.device.type, enabled=False):
                return self._ranked_lists_metrics(queries, docs)

        def _ranked_lists_metrics(self, queries, docs):
            lists, start = [], 0
            for query, s in zip(queries, self.samples):
                n = len(s["positive"]) + len(s["negative"])
                scores = self.similarity_fct(query, docs[start:start + n])
                lists.append(([float(x) for x in scores.reshape(-1)], len(s["positive"])))
                start += n
            return score_ranked_lists(lists, k=self.at_k)

    return ValEvaluator(samples, at_k=10, name=name, write_csv=False, batch_size=batch_size)
