import pytest
import torch

from ragtune.errors import UserError
from ragtune.merge import load_state_dict, merge_models, merge_state_dicts


def test_weighted_average_over_shared_keys_keeps_finetuned_head():
    base = {"encoder.w": torch.zeros(2, 2), "embeddings.position_ids": torch.arange(4)}
    finetuned = {"bert.encoder.w": torch.ones(2, 2), "classifier.weight": torch.full((1, 2), 3.0)}
    merged, stats = merge_state_dicts(finetuned, base, weight=0.25)
    assert torch.allclose(merged["bert.encoder.w"], torch.full((2, 2), 0.25))
    assert torch.equal(merged["classifier.weight"], finetuned["classifier.weight"])  # base has no head
    assert stats == {"shared_keys": 1, "finetuned_only_keys": 1, "shape_mismatch_keys": 0}


def test_disjoint_models_are_refused():
    with pytest.raises(UserError, match="share no parameters"):
        merge_state_dicts({"a": torch.ones(1)}, {"b": torch.ones(1)}, 0.5)


def test_merge_folders_keeps_pooling_and_loads(tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    finetuned = SentenceTransformer(tiny_model, device="cpu")
    with torch.no_grad():
        for p in finetuned.parameters():
            p.add_(1.0)
    finetuned.save(str(tmp_path / "ft"))
    for weight in (0.0, 1.0, 0.5):
        merge_models(tmp_path / "ft", tiny_model, weight, tmp_path / "merged")
        merged = load_state_dict(tmp_path / "merged")
        base, ft = load_state_dict(tiny_model), load_state_dict(tmp_path / "ft")
        key = "encoder.layer.0.attention.self.query.weight"
        assert torch.allclose(merged[key], weight * ft[key] + (1 - weight) * base[key], atol=1e-6)
    assert (tmp_path / "merged" / "1_Pooling" / "config.json").is_file()
    model = SentenceTransformer(str(tmp_path / "merged"), device="cpu")
    assert model.encode(["a query"]).shape == (1, 32)


def test_auto_weight_scores_the_grid_on_val(tiny_model, tmp_path):
    from ragtune.io import write_jsonl
    from ragtune.merge import pick_weight
    from ragtune.params import defaults

    val = tmp_path / "val.jsonl"
    write_jsonl(val, [{"query": "python function", "pos": ["the python function"], "neg": ["a file error", "data"]},
                      {"query": "file path", "pos": ["the file path"], "neg": ["python model", "rank score"]}])
    params = defaults()
    params["device"] = "cpu"
    weight, scores = pick_weight("embedder", tiny_model, tiny_model, val, [0.0, 0.5, 1.0], params)
    assert list(scores) == ["0", "0.5", "1"] and weight == 1.0  # identical models tie: the larger weight
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_auto_weight_for_a_reranker_merges_body_and_keeps_head(tiny_model, tmp_path):
    from ragtune.io import write_jsonl
    from ragtune.merge import pick_weight
    from ragtune.params import defaults
    from ragtune.train_reranker import convert_to_cross_encoder

    reranker = convert_to_cross_encoder(tiny_model, tmp_path / "ce", seed=0,
                                        security=defaults()["security"])  # fresh head on the body
    val = tmp_path / "val.jsonl"
    write_jsonl(val, [{"query": "python function", "pos": ["the python function"], "neg": ["a file error", "data"]}])
    params = defaults()
    params["device"] = "cpu"
    weight, scores = pick_weight("reranker", reranker, tiny_model, val, [0.0, 1.0], params)
    assert set(scores) == {"0", "1"} and weight in (0.0, 1.0)
    stats = merge_models(reranker, tiny_model, weight, tmp_path / "merged")
    assert stats["finetuned_only_keys"] == 2  # classifier weight and bias: the base has no head
