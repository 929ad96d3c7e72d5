"""The SciFact benchmark's config and report: fast checks (the benchmark itself runs under `make bench`)."""
from pathlib import Path

import yaml

from bench.scifact import CONFIG, ragtune_params
from bench.scifact_report import render
from ragtune.params import validate


def test_bench_config_gives_valid_params_with_the_shared_budget():
    config = yaml.safe_load(CONFIG.read_text())
    params = validate(ragtune_params(config, Path("/data/scifact")))
    budget = config["budget"]
    assert params["ingest"] == dict(params["ingest"], source="beir", path="/data/scifact")
    assert params["epochs"] == budget["epochs"] and params["seed"] == config["seed"]
    for key in ("max_seq_length", "batch_size", "lr", "num_negatives", "encode_batch_size"):
        assert params["embedder"][key] == budget[key], key
    assert params["embedder"]["base"] == budget["model"]


def _usage(wall):
    return {"wall_seconds": wall, "cpu_seconds": 2 * wall, "peak_rss_mib": 1000.0}


def test_report_ranks_systems_and_flags_rerankers_below_their_first_stage():
    metrics = lambda ndcg: {"nDCG@10": ndcg, "MRR@10": ndcg - 0.05, "R@100": 0.9}  # noqa: E731
    recipe = {"test": metrics(0.66), "steps": {"mine": 10.0, "train": 100.0, "evaluate": 20.0},
              "cpu_seconds": {"mine": 20.0, "train": 190.0, "evaluate": 40.0}, "train_queries": 500,
              "config": {"epochs": 1}, "process": _usage(140.0)}
    results = {
        "ragtune": {"eval": {"dense:base": metrics(0.62), "dense:finetuned": metrics(0.67),
                             "dense:finetuned + rerank:finetuned": metrics(0.65), "hybrid": metrics(0.70),
                             "hybrid + rerank:finetuned": metrics(0.71)},
                    "stages": {"mine": _usage(30.0), "train_embedder": _usage(90.0), "train_reranker": _usage(50.0)},
                    "noop_repro_seconds": 1.5, "splits": {"train": {"queries": 500}}, "params": {"epochs": 1}},
        "st": recipe,
    }
    doc = {"date": "2026-01-01", "config": {"budget": {"max_seq_length": 128}}, "results": results,
           "machine": {"cores": 2, "ram_gib": 24, "cpu": "cpu", "python": "3.11", "git_commit": "abc",
                       "load_average_at_start": [0, 0, 0], "packages": {"torch": "2"}}}
    text = render(doc)
    rows = [line.split(" | ")[0].lstrip("| ") for line in text.splitlines() if line.startswith("| ragtune: ")
            or line.startswith("| sentence-transformers recipe")]
    assert rows[:2] == ["ragtune: hybrid + rerank:finetuned", "ragtune: hybrid"]
    assert "below their own first stage: dense:finetuned + rerank:finetuned (-0.0200)" in text
    assert "Best system: ragtune: hybrid + rerank:finetuned" in text
    assert "| sentence-transformers recipe training | 500 | 1 | 190 | 380 |" in text  # CPU s per 1k queries
    assert "ragtune 120 s" in text and "sentence-transformers recipe 110 s" in text  # mine + train
