"""Stage train_reranker: fine-tune the cross-encoder with FlagEmbedding."""
from __future__ import annotations

from ..train_reranker import train_reranker
from .train import run_training


def run(params: dict, **paths) -> None:
    run_training("reranker", train_reranker, params, **paths)
