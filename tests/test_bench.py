"""The SciFact benchmark's config and report: fast checks (the benchmark itself runs under `make bench`)."""
import json
from pathlib import Path

import yaml

from bench.scifact import CONFIG, ragtune_params
from bench.scifact_report import render
from ragtune.params import validate


def test_bench_config_gives_valid_params_with_the_shared_budget():
    config = yaml.safe_load(CONFIG.read_text())
    params = validate(ragtune_params(config, Path("/data/scifact")))
    budget = config["budget"]
    assert dict(params["ingest"]) == dict(params["ingest"], source="beir", path="/data/scifact")
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


def test_few_label_settings_give_valid_params():
    config = yaml.safe_load(CONFIG.read_text())
    full = validate(ragtune_params(config, Path("/data/scifact")))
    few = validate(ragtune_params(config, Path("/data/scifact"), 100))
    none = validate(ragtune_params(config, Path("/data/scifact"), 0))
    assert full["prepare"]["train_queries"] is None and full["synthetic"]["queries"] == 0
    assert few["prepare"]["train_queries"] == 100 and none["prepare"]["train_queries"] == 0
    assert few["synthetic"]["queries"] == none["synthetic"]["queries"] == config["few_labels"]["synthetic"]["queries"] > 0


def _run_results(ndcg_finetuned, train_queries, with_recipes=True):
    metrics = lambda ndcg: {"nDCG@10": ndcg, "MRR@10": ndcg, "R@100": 0.9}  # noqa: E731
    results = {"ragtune": {
        "eval": {"bm25": metrics(0.66), "dense:finetuned": metrics(ndcg_finetuned),
                 "hybrid + rerank:finetuned": metrics(0.71)},
        "stages": {"prepare": _usage(5.0), "mine": _usage(30.0), "train_embedder": _usage(90.0)},
        "splits": {"train": {"queries": train_queries}},
        "rerank_alpha": {"finetuned": {"alpha": 0.3, "test_ndcg@10_reranker_alone": {"hybrid": 0.69}}}}}
    if with_recipes:
        results["st"] = {"test": metrics(0.66), "steps": {"mine": 20.0, "train": 80.0}, "process": _usage(110.0)}
        results["flag"] = {"test": metrics(0.65), "steps": {"mine": 25.0, "train": 90.0}, "process": _usage(120.0)}
    return results


def test_summary_has_every_setting_named_as_specified(tmp_path):
    from bench.scifact import write_summary

    path = tmp_path / "scifact-summary.json"
    write_summary(path, "0", _run_results(0.64, 0, with_recipes=False), "c0")
    write_summary(path, "all", _run_results(0.69, 654), "c1")
    doc = write_summary(path, "100", _run_results(0.66, 100), "c1")
    assert json.loads(path.read_text()) == doc
    assert list(doc["settings"]) == ["all", "100", "0"] and doc["commit"] == "c1"
    s = doc["settings"]["all"]
    assert s["train_queries"] == 654
    assert s["ndcg@10"] == {"bm25": 0.66, "dense:finetuned": 0.69, "hybrid + rerank:finetuned": 0.71,
                            "reranker-alone:hybrid": 0.69, "recipe:sentence-transformers": 0.66,
                            "recipe:flagembedding": 0.65}
    assert s["wall_seconds"] == {"prepare": 5.0, "mine": 30.0, "train_embedder": 90.0,
                                 "sentence-transformers": 110.0, "flagembedding": 120.0}
    zero = doc["settings"]["0"]
    assert zero["train_queries"] == 0 and zero["commit"] == "c0" and "recipe:flagembedding" not in zero["ndcg@10"]
    # From the full setting, whichever setting ran last: (30 + 90) / (20 + 80); 5 + 30 + 90.
    assert doc["same_work_ratio_vs_sentence_transformers"] == 1.2 and doc["pipeline_wall_seconds"] == 125.0
