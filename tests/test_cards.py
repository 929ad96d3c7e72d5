"""Model cards: front matter that parses, numbers equal to eval.json's, no absolute path, no query text."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from ragtune import cards
from ragtune.params import defaults

SYSTEMS = ["bm25", "dense:base", "dense:finetuned", "dense:merged", "hybrid",
           "bm25 + rerank:finetuned", "dense:finetuned + rerank:finetuned", "bm25 + rerank:merged"]


def _scores(i: int) -> dict:
    return {"nDCG@10": 0.4 + i / 100 + 0.000123, "MRR@10": 0.3 + i / 100, "R@10": 0.6 + i / 100,
            "R@100": 0.9, "MAP@100": 0.35 + i / 100, "P@10": 0.07}


FACTS = {
    "ingest": {"source": "pydoc", "documents": 1200, "queries": 400},
    "splits": {"group_by": None, "train": {"queries": 280}, "val": {"queries": 40}, "test": {"queries": 80}},
    "mining": {"first_stage": "bm25", "window": "ranks 4..50 (1-based)", "groups": 277},
    "train_embedder": {"base_model": "/abs/site-packages/all-MiniLM-L6-v2", "epochs": 1, "steps": 9,
                       "effective_batch_size": 32, "loss": "mnrl", "val_ndcg@10_before": 0.61,
                       "val_ndcg@10_best": 0.66, "best_step": 9, "improved": True},
    "train_reranker": {"base": "/abs/site-packages/all-MiniLM-L6-v2", "start": "bi-encoder + fresh 1-logit head",
                       "epochs": 1, "steps": 70, "effective_batch_size": 4, "val_ndcg@10_before": None,
                       "val_ndcg@10_after": 0.5, "val_ndcg@10_best": 0.52, "best_step": 35},
    "merge": {"embedder": {"weight": 0.5, "shared_keys": 100},
              "reranker": {"weight": 0.75, "shared_keys": 99, "val_ndcg@10_by_weight": {"0.5": 0.4, "0.75": 0.5}}},
    "eval": {s: _scores(i) for i, s in enumerate(SYSTEMS)},
    "rerank_alpha": {"finetuned": {"alpha": {"bm25": 0.3, "hybrid": 0.3}}, "merged": {"alpha": {"bm25": 0.6, "hybrid": 0.0}}},
}


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


@pytest.fixture
def st_folder(tmp_path) -> Path:
    """The files of a sentence-transformers folder that the card reads (pooling and normalisation)."""
    folder = tmp_path / "embedder"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.sentence_transformer.modules.Normalize"}]))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["BertModel"], "hidden_size": 384, "num_hidden_layers": 6, "vocab_size": 30522}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    return folder


@pytest.mark.parametrize("model", cards.MODELS)
def test_card_front_matter_and_numbers_match_eval(model, st_folder):
    card = cards.model_card(model, defaults(), FACTS, st_folder, f"release/{model}")
    fm = _front_matter(card)
    assert fm["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert fm["library_name"] == "sentence-transformers"
    assert fm["pipeline_tag"] == ("sentence-similarity" if model.startswith("embedder") else "text-ranking")
    assert "license" in fm and fm["license"] is None  # the user's to fill
    results = fm["model-index"][0]["results"]
    own = cards.systems_of(model, FACTS["eval"])
    assert own and len(results) == len(own)
    for system, entry in zip(own, results):
        assert entry["dataset"]["split"] == "test"
        values = {m["name"]: m["value"] for m in entry["metrics"]}
        assert values[f"nDCG@10 ({system})"] == FACTS["eval"][system]["nDCG@10"]
        assert {m["type"] for m in entry["metrics"]} >= {"ndcg_at_10", "mrr_at_10", "recall_at_100"}
        assert f"{FACTS['eval'][system]['nDCG@10']:.4f}" in card  # the body's table too
    assert "/abs/" not in card  # the trainers' resolved base path never reaches a card
    # What the hub reads: huggingface_hub parses the front matter and the model-index into eval results.
    from huggingface_hub import ModelCard

    hub = ModelCard(card).data
    assert hub.base_model == fm["base_model"] and hub.pipeline_tag == fm["pipeline_tag"]
    assert {(r.metric_name, r.metric_value) for r in hub.eval_results} >= {
        (f"nDCG@10 ({s})", FACTS["eval"][s]["nDCG@10"]) for s in own}


def test_which_systems_each_model_is_in():
    ev = FACTS["eval"]
    assert cards.systems_of("embedder", ev) == ["dense:finetuned", "dense:finetuned + rerank:finetuned"]
    assert cards.systems_of("embedder-merged", ev) == ["dense:merged"]
    assert cards.systems_of("reranker", ev) == ["bm25 + rerank:finetuned", "dense:finetuned + rerank:finetuned"]
    assert cards.systems_of("reranker-merged", ev) == ["bm25 + rerank:merged"]
    assert cards.baselines_of("reranker", ev) == ["bm25", "dense:finetuned"]
    assert cards.baselines_of("embedder", ev) == ["dense:base"]


def test_body_says_how_it_was_made(st_folder):
    params = defaults()
    card = cards.model_card("reranker-merged", params, FACTS, st_folder, "release/reranker-merged")
    for fact in ("1200 passages", "400 judged queries", "train 280, val 40, test 80", "277 training groups",
                 "ranks 4..50", "0.75 x fine-tuned + 0.25 x base", "step 35", "0.5200", "picked on val",
                 "bm25 0.6, hybrid 0", "set in params", "CrossEncoder(", "FlagReranker(", "AutoModelForSequenceClassification"):
        assert fact in card, fact
    card = cards.model_card("embedder", params, FACTS, st_folder, "release/embedder")
    for fact in ("MultipleNegativesRankingLoss", "0.6100 before training", "0.6600 for the saved model",
                 "step 9", "SentenceTransformer(\"release/embedder\")", "mean pooling, then unit length",
                 "torch.nn.functional.normalize", "BertModel, 6 layers, hidden size 384",
                 "384-dimensional vectors, cosine similarity", "Max sequence length:** 128 tokens",
                 "sentence-transformers ", "arXiv:1908.10084"):
        assert fact in card, fact


def test_cls_pooling_without_normalize_is_told_truthfully(st_folder):
    (st_folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    (st_folder / "modules.json").write_text(json.dumps(json.loads((st_folder / "modules.json").read_text())[:2]))
    card = cards.model_card("embedder", defaults(), FACTS, st_folder, "release/embedder")
    assert "cls pooling" in card and "tokens[:, 0]" in card and "normalize(" not in card


def test_local_base_folder_is_never_named_by_path(tmp_path, st_folder):
    params = defaults()
    params["embedder"]["base"] = str(st_folder)  # an absolute local path
    params["ingest"].update(source="beir", path=str(tmp_path / "data" / "scifact"))
    card = cards.model_card("embedder", params, FACTS, st_folder, "release/embedder")
    fm = _front_matter(card)
    assert "base_model" not in fm
    assert str(tmp_path) not in card
    assert not re.search(r"(^|[\s`(\"'])/(tmp|home|work|root|usr)/", card)
    assert fm["model-index"][0]["results"][0]["dataset"]["name"] == "scifact"


def test_metric_types():
    assert cards.metric_type("nDCG@10") == "ndcg_at_10"
    assert cards.metric_type("R@100") == "recall_at_100"
    assert cards.metric_type("MAP@100") == "map_at_100"


def test_model_left_out_of_evaluation_says_so(st_folder):
    facts = copy.deepcopy(FACTS)
    facts["eval"] = {"bm25": _scores(0)}
    card = cards.model_card("embedder", defaults(), facts, st_folder, "release/embedder")
    assert "not part of any evaluated system" in card
    assert _front_matter(card)["model-index"][0]["results"] == []


def test_a_fine_tuning_that_did_not_help_is_said_plainly(st_folder):
    facts = copy.deepcopy(FACTS)
    facts["train_embedder"].update({"val_ndcg@10_best": 0.6, "improved": False})
    card = cards.model_card("embedder", defaults(), facts, st_folder, "release/embedder")
    assert "Fine-tuning did not beat the base model on val" in card
    assert "did not beat" not in cards.model_card("embedder", defaults(), FACTS, st_folder, "release/embedder")
