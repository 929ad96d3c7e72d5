"""Fill the corpus-embedding cache (ragtune.embeddings) before `dvc repro`; under torchrun, one share of the
shards per process."""
from __future__ import annotations

from .. import distributed
from ..embeddings import DEFAULT_CACHE_DIR, fill_cache
from ..io import doc_text, read_corpus
from ..logs import summary
from ..models import checked_model, inference_precision, pick_device


def run(params: dict, *, corpus_path: str, model: str | None) -> None:
    emb = params["embedder"]
    name = model or emb["base"]
    path = checked_model(name, params["security"], "embedder.base" if model is None else "--model")
    corpus = read_corpus(corpus_path)
    device = distributed.init(pick_device(params["device"]))
    try:
        # Only the cache is filled: no process holds more than a shard of embeddings.
        with inference_precision(params["inference_dtype"], device):
            shards = fill_cache(path, [doc_text(corpus[d]) for d in corpus], batch_size=emb["encode_batch_size"],
                                max_seq_length=emb["max_seq_length"], device=device, cache_dir=DEFAULT_CACHE_DIR,
                                security=params["security"])
    finally:
        distributed.finish()
    if distributed.is_main():
        summary(f"{len(corpus)} documents encoded with {name} in {len(shards)} cached shard(s) under "
                f"{DEFAULT_CACHE_DIR}")
