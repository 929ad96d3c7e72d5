import csv
import json
import random
from pathlib import Path

import pytest

from ragtune.errors import UserError
from ragtune.io import write_jsonl
from ragtune.models import is_trained_reranker
from ragtune.params import defaults
from ragtune.train_reranker import (
    distill_loss,
    read_groups,
    sample_group,
    teacher_scores,
    text_pool,
    train_reranker,
)

TOPICS = ["python", "function", "module", "class", "method", "string", "file", "error", "index", "token",
          "corpus", "model", "query", "search", "split", "value"]


def _groups(topics, seed):
    """Easy groups: positives say "data", negatives "error" (a tiny model learns that in a few steps)."""
    rng = random.Random(seed)
    out = []
    for t in topics:
        others = [o for o in TOPICS if o != t]
        out.append({"query": f"{t} {t}",
                    "pos": [f"the {t} data is a {t} data"],
                    "neg": [f"the {o} error is a {o} error" for o in rng.sample(others, 5)]})
    return out


@pytest.fixture(scope="module")
def tiny(tiny_model) -> str:
    return tiny_model


@pytest.fixture
def data(tmp_path):
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    write_jsonl(train, _groups(TOPICS * 2, 0))
    write_jsonl(val, _groups(TOPICS[:8], 1))
    return train, val


def _cfg(**over):
    cfg = defaults()["reranker"]
    cfg.update(max_length=32, group_size=4, batch_size=4, lr=3e-3, warmup=0.0, random_negatives=1)
    cfg.update(over)
    return cfg


def _train(model, data, tmp_path, name="out", epochs=1, resume=False, live=True, train_dtype="float32", **over):
    train, val = data
    return train_reranker(base=model, train_path=train, val_path=val, out_dir=tmp_path / name,
                          cfg=_cfg(**over), epochs=epochs, seed=7, device="cpu", train_dtype=train_dtype,
                          checkpoint_dir=tmp_path / f"ckpt-{name}",
                          live_dir=tmp_path / f"live-{name}" if live else None, resume=resume,
                          security=defaults()["security"])


def _tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_trained_model_loads_with_flagreranker_and_crossencoder(tiny, data, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(tiny).parent)
    name = Path(tiny).name  # a relative folder name, as a user may write it in params
    stats = _train(name, data, tmp_path, epochs=2)
    out = tmp_path / "out"
    assert (out / "model.safetensors").is_file() and not (out / "training_args.bin").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))
    assert is_trained_reranker(out) and not is_trained_reranker(tiny)
    for key in ("train_groups", "steps", "val_ndcg@10_before", "val_ndcg@10_after", "val_ndcg@10_best", "best_step",
                "wall_seconds", "cpu_seconds", "val_ndcg@10_by_step"):
        assert key in stats
    assert stats["base_model"] == name  # the name given in params, not where it resolved on this machine
    assert stats["train_groups"] == 32 and stats["steps"] == 16  # 2 epochs x 8 batches of 4 groups
    # A fresh head is scored at step 0 (the chance level, the curve's start) but never kept as the best
    # model; every epoch end is scored.
    assert list(stats["val_ndcg@10_by_step"]) == ["8", "16"] and stats["val_ndcg@10_before"] is not None
    assert stats["val_ndcg@10_best"] == max(stats["val_ndcg@10_by_step"].values())
    assert stats["best_step"] in (8, 16)
    # The easy task is learnt: the head and encoder really train through FlagEmbedding's loss.
    import ragtune.train_reranker as tr
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    start = tmp_path / "ckpt-out" / "start"
    fresh = tr.val_ndcg(AutoModelForSequenceClassification.from_pretrained(start),
                        AutoTokenizer.from_pretrained(start), tr.read_groups(data[1], need_neg=False),
                        max_length=32, batch_size=8, device="cpu", n_negatives=9)
    assert stats["val_ndcg@10_best"] > fresh + 0.1
    assert stats["val_ndcg@10_before"] == pytest.approx(fresh, abs=1e-6)

    from FlagEmbedding import FlagReranker
    from sentence_transformers import CrossEncoder

    pairs = [["python python", "the python is a python"], ["python python", "the error of the file"],
             ["file", "the file is a file"]]
    flag = FlagReranker(str(out), use_fp16=False, devices="cpu", normalize=True).compute_score(pairs)
    ce = CrossEncoder(str(out), device="cpu").predict(pairs)
    assert flag == pytest.approx([float(x) for x in ce], abs=1e-5)

    # DVCLive curves at the trainer's steps: the val curve is step 0 then by_step, the loss within 1..16.
    metrics = Path(tmp_path / "live-out" / "plots" / "metrics")
    val = _tsv(metrics / "val" / "ndcg@10.tsv")
    assert [(int(r["step"]), float(r["ndcg@10"])) for r in val] == [
        (0, stats["val_ndcg@10_before"]), *((int(k), v) for k, v in stats["val_ndcg@10_by_step"].items())]
    loss_steps = [int(r["step"]) for r in _tsv(metrics / "loss.tsv")]
    assert loss_steps == sorted(loss_steps) and loss_steps[0] >= 1 and loss_steps[-1] == 16


def test_same_seed_same_bytes_and_resume_continues(tiny, data, tmp_path, monkeypatch):
    a = _train(tiny, data, tmp_path, name="a", epochs=2, live=False)
    _train(tiny, data, tmp_path, name="b", epochs=2, live=False)
    weights = lambda n: (tmp_path / n / "model.safetensors").read_bytes()  # noqa: E731
    assert weights("a") == weights("b")

    # Interrupt a run in its last validation (after the epoch-1 checkpoint), then resume: the same
    # model and history as the straight run (weights, optimizer, data order, negatives restored).
    import ragtune.train_reranker as tr

    real, calls = tr.val_ndcg, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the epoch-2 validation (after step 0's and epoch 1's)
            raise KeyboardInterrupt("test")
        return real(*args, **kwargs)

    monkeypatch.setattr(tr, "val_ndcg", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny, data, tmp_path, name="c", epochs=2, live=False)
    assert not (tmp_path / "c").exists()
    monkeypatch.setattr(tr, "val_ndcg", real)
    c = _train(tiny, data, tmp_path, name="c", epochs=2, resume=True, live=False)
    assert c["steps"] == 16 and c["val_ndcg@10_by_step"] == a["val_ndcg@10_by_step"]
    assert weights("c") == weights("a")


def test_lora_is_merged_into_a_plain_model(tiny, data, tmp_path):
    stats = _train(tiny, data, tmp_path, lora=True, lora_r=4, lora_alpha=8, lr=1e-2, live=False,
                   eval_steps=4)
    out = tmp_path / "out"
    assert not (out / "adapter_config.json").exists()
    from safetensors.torch import load_file

    sd = load_file(str(out / "model.safetensors"))
    assert not any("lora" in k for k in sd)
    start = load_file(str(tmp_path / "ckpt-out" / "start" / "model.safetensors"))
    assert list(stats["val_ndcg@10_by_step"]) == ["4", "8"]
    if stats["best_step"]:  # a trained best: merged weights differ from the start model's
        assert any(not (sd[k] == start[k]).all() for k in sd if k in start and "encoder" in k)
    from ragtune.rerank import score_pairs

    assert score_pairs(str(out), [("python", "the python")], batch_size=2, max_length=32,
                       security=defaults()["security"]).shape == (1,)


def test_attention_dropout_reaches_the_trained_model(tiny, data, tmp_path):
    stats = _train(tiny, data, tmp_path, attention_dropout=0.0, live=False)
    assert stats["steps"] > 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["attention_probs_dropout_prob"] == 0.0


def test_bad_lora_targets_name_the_param(tiny, data, tmp_path):
    with pytest.raises(UserError, match="reranker.lora_target_modules"):
        _train(tiny, data, tmp_path, lora=True, lora_target_modules=["nonexistent"], live=False)


def test_read_groups_names_file_and_line(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text(json.dumps({"query": "q", "pos": ["a"], "neg": []}) + "\n"
                 + json.dumps({"query": "q", "pos": "a", "neg": []}) + "\n")
    with pytest.raises(UserError, match=r"g.jsonl:2: field 'pos'"):
        read_groups(p)
    p.write_text(json.dumps({"query": "q", "pos": ["a"], "neg": []}) + "\n")
    with pytest.raises(UserError, match="no negatives"):
        read_groups(p)


def test_sample_group_mixes_hard_and_random_negatives():
    groups = [{"query": "q0", "pos": ["p0"], "neg": ["h1", "h2", "h3"]},
              {"query": "q1", "pos": ["p1"], "neg": ["x1", "x2"]}]
    pool = text_pool(groups)
    for seed in range(20):
        texts = sample_group(groups[0], pool, 5, 2, random.Random(seed))
        assert texts[0] == "p0" and len(texts) == 5
        assert set(texts[1:3]) <= {"h1", "h2", "h3"} and len(set(texts[1:3])) == 2
        assert "p0" not in texts[3:]
    # Too few hard negatives repeat; no hard negatives at all means random only.
    assert set(sample_group(groups[1], pool, 6, 1, random.Random(0))[1:5]) <= {"x1", "x2"}
    only_random = sample_group({"query": "q", "pos": ["p0"], "neg": []}, pool, 4, 1, random.Random(0))
    assert len(only_random) == 4 and "p0" not in only_random[1:]
    assert sample_group(groups[0], pool, 5, 2, random.Random(3)) == sample_group(groups[0], pool, 5, 2,
                                                                                  random.Random(3))


def test_the_first_step_trains(tiny, data, tmp_path):
    # One step in all (32 groups, batch 32) with warmup: transformers' own schedule gave it a learning
    # rate of 0, so the saved model was its start (the base with a fresh head) bit for bit.
    from safetensors.torch import load_file

    stats = _train(tiny, data, tmp_path, batch_size=32, warmup=0.1, live=False)
    assert stats["steps"] == 1 and stats["best_step"] == 1
    start = load_file(str(tmp_path / "ckpt-out" / "start" / "model.safetensors"))
    tuned = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert [k for k in tuned if not (tuned[k] == start[k]).all()], "step 1 did not train"


def test_teacher_scores_follow_the_sampled_texts():
    g = {"query": "q", "pos": ["p"], "neg": ["n1", "n2"], "pos_scores": [1.0], "neg_scores": [0.7, 0.2]}
    assert teacher_scores(g, ["p", "n2", "other group's passage", "n1"]) == [1.0, 0.2, 0.2, 0.7]


def test_distill_loss_pulls_toward_the_teachers_order():
    import torch

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    agree, disagree = torch.tensor([1.0, 0.5, 0.0]), torch.tensor([0.0, 0.5, 1.0])
    assert distill_loss(logits, agree, 1.0) < distill_loss(logits, disagree, 1.0)
    assert distill_loss(logits, agree, 0.0) == 0


def test_reranker_distills_from_teacher_scores(tiny, tmp_path):
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    groups = _groups(TOPICS * 2, 0)
    for g in groups:
        g["pos_scores"], g["neg_scores"] = [1.0], [0.8, 0.6, 0.4, 0.2, 0.0]
    write_jsonl(train, groups)
    write_jsonl(val, _groups(TOPICS[:8], 1))
    plain = _train(tiny, (train, val), tmp_path, name="plain", live=False)
    distilled = _train(tiny, (train, val), tmp_path, name="kd", live=False, distill_weight=1.0)
    assert distilled["distill_weight"] == 1.0 and distilled["train_loss"] != plain["train_loss"]
    with pytest.raises(UserError, match="needs teacher scores"):
        _train(tiny, (val, val), tmp_path, name="bad", live=False, distill_weight=1.0)


def test_bfloat16_training_is_mixed_precision_and_saves_float32(tiny, data, tmp_path):
    import torch
    from safetensors.torch import load_file

    full = _train(tiny, data, tmp_path, name="fp32", live=False, train_dtype="float32")
    mixed = _train(tiny, data, tmp_path, name="bf16", live=False, train_dtype="bfloat16")
    assert (full["train_dtype"], mixed["train_dtype"]) == ("float32", "bfloat16")
    w32, w16 = (load_file(tmp_path / n / "model.safetensors") for n in ("fp32", "bf16"))
    assert {t.dtype for t in w16.values()} == {t.dtype for t in w32.values()} == {torch.float32}
    assert any(not torch.equal(w32[k], w16[k]) for k in w32)
