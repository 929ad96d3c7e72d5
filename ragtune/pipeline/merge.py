"""Stage merge: average fine-tuned and base weights (LM-Cocktail) for both models."""
from __future__ import annotations

from pathlib import Path

from ..io import write_json
from ..logs import summary
from ..merge import merge_models, pick_weight
from ..models import check_model_dir, inference_precision, local_model_dir, pick_device


def run(params: dict, *, embedder_dir: str, reranker_dir: str, negatives_dir: str, embedder_out: str,
        reranker_out: str, stats_path: str) -> None:
    cfg = params["merge"]
    results = {}
    for kind, finetuned, out in (("embedder", embedder_dir, embedder_out), ("reranker", reranker_dir, reranker_out)):
        base = local_model_dir(params[kind]["base"], f"{kind}.base")
        check_model_dir(base, params["security"])
        weight, grid_scores = cfg["weight"], None
        if weight == "auto":
            with inference_precision(params["inference_dtype"], pick_device(params["device"])):
                weight, grid_scores = pick_weight(kind, finetuned, base, Path(negatives_dir) / "val.jsonl",
                                                  cfg["grid"], params)
        stats = merge_models(finetuned, base, float(weight), out)
        if grid_scores is not None:
            stats["val_ndcg@10_by_weight"] = grid_scores
        results[kind] = stats
    write_json(stats_path, results)
    summary(f"embedder weight {results['embedder']['weight']}, reranker weight {results['reranker']['weight']}")
