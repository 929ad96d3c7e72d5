"""Stage train_embedder: fine-tune the bi-encoder with sentence-transformers."""
from __future__ import annotations

from ..train_embedder import train_embedder
from .train import run_training


def run(params: dict, **paths) -> None:
    run_training("embedder", train_embedder, params, **paths)
