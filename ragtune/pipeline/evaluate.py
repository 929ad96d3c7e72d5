"""Stage evaluate: every first stage x reranker on the test split, with trec_eval metrics."""
from __future__ import annotations

from pathlib import Path

from ..embeddings import DEFAULT_CACHE_DIR
from ..evaluate import evaluate
from ..models import inference_precision, pick_device


def run(params: dict, *, corpus_path: str, prepared_dir: str, models_dir: str, metrics_dir: str) -> None:
    with inference_precision(params["inference_dtype"], pick_device(params["device"])):
        evaluate(params, corpus_path=Path(corpus_path), prepared_dir=Path(prepared_dir),
                 models_dir=Path(models_dir), metrics_dir=Path(metrics_dir), cache_dir=DEFAULT_CACHE_DIR)
