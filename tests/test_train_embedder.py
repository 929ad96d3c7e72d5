import csv
import json
from pathlib import Path

import pytest

from ragtune.errors import UserError
from ragtune.io import write_jsonl
from ragtune.params import defaults
from ragtune.io import read_groups
from ragtune.embeddings import val_samples
from ragtune.train_embedder import build_rows, train_embedder

TOPICS = ["python function", "module class", "method return", "list dict", "string file", "path error",
          "data model", "query document", "search index", "retrieval rank", "score train", "test split"]


def _groups(n: int, offset: int = 0) -> list[dict]:
    out = []
    for i in range(n):
        t = TOPICS[(i + offset) % len(TOPICS)]
        u = TOPICS[(i + offset + 5) % len(TOPICS)]
        out.append({"query": f"{t} {i}",
                    "pos": [f"the {t} is {i}", f"a {t} of {i} {i}"] if i % 3 == 0 else [f"the {t} is {i}"],
                    "neg": [f"the {u} is {i}", f"an {u} on {i}"]})
    return out


@pytest.fixture
def data(tmp_path) -> dict:
    write_jsonl(tmp_path / "train.jsonl", _groups(12))
    write_jsonl(tmp_path / "val.jsonl", _groups(6, offset=3))
    return {"train_path": tmp_path / "train.jsonl", "val_path": tmp_path / "val.jsonl"}


def _cfg(**over) -> dict:
    # min_steps 0: one pass per epoch, so step counts below follow from rows and batch size alone.
    cfg = dict(defaults()["embedder"], batch_size=4, max_seq_length=32, encode_batch_size=16, lr=1e-3, min_steps=0)
    cfg.update(over)
    return cfg


def _run(tiny_model, data, tmp_path, name="out", **kw):
    args = dict(base=tiny_model, out_dir=tmp_path / name, cfg=_cfg(), epochs=1, seed=7, device="cpu",
                checkpoint_dir=tmp_path / f"ckpt-{name}", live_dir=tmp_path / f"live-{name}",
                security=defaults()["security"])
    args.update(data)
    args.update(kw)
    return train_embedder(**args)


def test_build_rows_cycles_negatives_and_drops_groups_without():
    groups = [{"query": "q1", "pos": ["p1", "p2"], "neg": ["n1", "n2", "n3"]},
              {"query": "q2", "pos": ["p3"], "neg": ["m1"]},
              {"query": "q3", "pos": ["p4"], "neg": []}]
    cols, counts = build_rows(groups, 2)
    assert list(cols) == ["anchor", "positive", "negative_1", "negative_2"]
    assert cols["anchor"] == ["q1", "q1", "q2"]
    # The second positive of q1 starts further down the mined list; q2 reuses its only negative.
    assert [cols["negative_1"], cols["negative_2"]] == [["n1", "n3", "m1"], ["n2", "n1", "m1"]]
    assert counts == {"rows": 3, "rows_padded": 1, "rows_dropped_no_negatives": 1,
                      "groups_dropped_no_negatives": 1}
    cols, counts = build_rows(groups, 0)
    assert list(cols) == ["anchor", "positive"] and counts["rows"] == 4


def test_val_samples_skip_queries_without_negatives():
    samples = val_samples([{"query": "a", "pos": ["x"], "neg": []}, {"query": "b", "pos": ["y"], "neg": ["z"]}])
    assert samples == [{"query": "b", "positive": ["y"], "negative": ["z"]}]


def test_read_groups_names_file_line_and_field(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text(json.dumps({"query": "q", "pos": ["a"], "neg": []}) + "\n"
                 + json.dumps({"query": "q", "pos": "a", "neg": []}) + "\n")
    with pytest.raises(UserError, match=r"g.jsonl:2: field 'pos'"):
        read_groups(p)
    p.write_text(json.dumps({"query": "q", "pos": ["a", "b", "a"], "neg": ["b", "c", "c"]}) + "\n")
    assert read_groups(p) == [{"query": "q", "pos": ["a", "b"], "neg": ["c"]}]
    p.write_text(json.dumps({"query": "q", "pos": [], "neg": ["b"]}) + "\n")
    with pytest.raises(UserError, match=r"g.jsonl:1: field 'pos': no positives"):
        read_groups(p)


def test_val_without_negatives_is_a_user_error(tiny_model, data, tmp_path):
    write_jsonl(data["val_path"], [{"query": "q", "pos": ["a"], "neg": []}])
    with pytest.raises(UserError, match="val.jsonl: no val group has negatives"):
        _run(tiny_model, data, tmp_path)


def test_train_saves_best_checkpoint_as_sentence_transformer(tiny_model, data, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    monkeypatch.chdir(Path(tiny_model).parent)
    name = Path(tiny_model).name  # a relative folder name, as a user may write it in params
    stats = _run(name, data, tmp_path, epochs=2)
    out = tmp_path / "out"
    # 12 groups with 16 positives -> 16 rows, batch 4 -> 4 steps per epoch.
    assert stats["train_rows"] == 16 and stats["steps_per_epoch"] == 4 and stats["steps"] == 8
    assert stats["val_queries"] == 6 and stats["train_groups"] == 12
    assert stats["base_model"] == name  # the name given in params, not where it resolved on this machine
    assert list(stats["val_ndcg@10_by_step"]) == ["4", "8"]
    assert stats["val_ndcg@10_best"] == max(stats["val_ndcg@10_by_step"].values())
    assert stats["best_step"] in (4, 8)
    assert stats["improved"] == (stats["val_ndcg@10_best"] > stats["val_ndcg@10_before"])
    for key in ("wall_seconds", "cpu_seconds", "train_loss", "epochs"):
        assert key in stats
    # A plain SentenceTransformer folder: safetensors, base pooling + Normalize, our max_seq_length.
    assert (out / "model.safetensors").is_file() and (out / "modules.json").is_file()
    assert not list(out.glob("*.bin")) and not list(out.glob("optimizer*"))
    model = SentenceTransformer(str(out), device="cpu")
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Normalize"]
    assert model.max_seq_length == 32
    base = SentenceTransformer(tiny_model, device="cpu")
    assert not (model.encode(["python function"]) == base.encode(["python function"])).all()
    # The saved model scores what the trainer reported for the best checkpoint.
    from sentence_transformers.sentence_transformer.evaluation import RerankingEvaluator

    samples = val_samples(read_groups(data["val_path"]))
    score = RerankingEvaluator(samples, name="val", write_csv=False)(model)["val_ndcg@10"]
    assert score == pytest.approx(stats["val_ndcg@10_best"], abs=1e-5)
    # DVCLive curves in live_dir only: no dvc.yaml, base score first, then loss and val nDCG@10.
    live = tmp_path / "live-out"
    assert not list(live.rglob("dvc.yaml"))
    curve = (live / "plots" / "metrics" / "eval" / "val_ndcg@10.tsv").read_text().splitlines()
    assert len(curve) == 1 + 3  # header, base, 2 evaluations
    assert float(curve[1].split("\t")[-1]) == pytest.approx(stats["val_ndcg@10_before"], abs=1e-5)
    # At the trainer's steps, as in the stats (DVCLive's own callback counted log calls instead).
    steps = [int(row["step"]) for row in _tsv(live / "plots" / "metrics" / "eval" / "val_ndcg@10.tsv")]
    assert steps == [0, *map(int, stats["val_ndcg@10_by_step"])]
    assert int(_tsv(live / "plots" / "metrics" / "loss.tsv")[-1]["step"]) == stats["steps"]


def test_min_steps_repeats_a_small_training_set_within_each_epoch(tiny_model, data, tmp_path, caplog):
    caplog.set_level("INFO", logger="ragtune")
    # 16 rows, batch 4: 4 steps per pass; min_steps 10 -> 3 passes, 12 steps per epoch; val once per epoch.
    stats = _run(tiny_model, data, tmp_path, epochs=2, cfg=_cfg(min_steps=10))
    assert stats["passes_per_epoch"] == 3 and stats["steps_per_epoch"] == 12 and stats["min_steps"] == 10
    assert stats["epochs"] == 2 and stats["steps"] == 24
    assert list(stats["val_ndcg@10_by_step"]) == ["12", "24"]
    assert "3 passes over the rows, to reach embedder.min_steps 10" in caplog.text
    # A set that already makes min_steps in one pass is not repeated.
    one = _run(tiny_model, data, tmp_path, name="one", cfg=_cfg(min_steps=4))
    assert one["passes_per_epoch"] == 1 and one["steps"] == 4


def test_attention_dropout_reaches_the_model_config(tiny_model, data, tmp_path):
    from ragtune.models import attention_dropout_overrides

    security = defaults()["security"]
    key = "embedder.attention_dropout"
    assert attention_dropout_overrides(tiny_model, None, security, key) == {}
    assert attention_dropout_overrides(tiny_model, 0.0, security, key) == {"attention_probs_dropout_prob": 0.0}
    stats = _run(tiny_model, data, tmp_path, cfg=_cfg(attention_dropout=0.0))
    assert stats["steps"] == 4  # trains as before
    from sentence_transformers import SentenceTransformer

    assert SentenceTransformer(str(tmp_path / "out"), device="cpu")[0].auto_model.config.attention_probs_dropout_prob == 0.0


def test_passes_per_epoch():
    from ragtune.training import passes_per_epoch

    assert [passes_per_epoch(s, 16) for s in (1, 4, 5, 15, 16, 17, 100)] == [16, 4, 4, 2, 1, 1, 1]
    assert passes_per_epoch(4, 0) == 1 and passes_per_epoch(0, 16) == 1


def _tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_same_seed_gives_identical_files(tiny_model, data, tmp_path):
    ckpt = tmp_path / "ckpt"
    _run(tiny_model, data, tmp_path, name="a", checkpoint_dir=ckpt)
    (ckpt / "checkpoint-99").mkdir()  # a stale checkpoint from some older, longer run
    _run(tiny_model, data, tmp_path, name="b", checkpoint_dir=ckpt)
    # A fresh run (no resume) removes old checkpoints instead of rotating or resuming from them.
    assert sorted(p.name for p in ckpt.glob("checkpoint-*")) == ["checkpoint-4"]
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and Path("model.safetensors") in files_a
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_resume_continues_from_last_checkpoint(tiny_model, data, tmp_path):
    first = _run(tiny_model, data, tmp_path, epochs=1)
    assert first["steps"] == 4 and first["resumed_from_step"] is None
    assert (tmp_path / "ckpt-out" / "checkpoint-4").is_dir()
    second = _run(tiny_model, data, tmp_path, epochs=2, resume=True)
    assert second["resumed_from_step"] == 4 and second["steps"] == 8
    assert list(second["val_ndcg@10_by_step"]) == ["4", "8"]  # the first run's evaluation is kept
    # The DVCLive curve continues: base, step 4, then step 8 appended by the resumed run.
    curve = (tmp_path / "live-out" / "plots" / "metrics" / "eval" / "val_ndcg@10.tsv").read_text().splitlines()
    assert len(curve) == 1 + 3


def test_cached_loss_and_matryoshka_run(tiny_model, data, tmp_path):
    stats = _run(tiny_model, data, tmp_path, cfg=_cfg(loss="cached_mnrl", mini_batch_size=2,
                                                      matryoshka_dims=[32, 16], num_negatives=2))
    assert stats["loss"] == "cached_mnrl" and stats["train_rows"] == 16 and stats["rows_padded"] == 0
    with pytest.raises(UserError, match="matryoshka_dims"):
        _run(tiny_model, data, tmp_path, name="bad", cfg=_cfg(matryoshka_dims=[64]))


def test_no_improvement_is_reported_loudly(tiny_model, data, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="ragtune.train_embedder"):
        stats = _run(tiny_model, data, tmp_path, cfg=_cfg(lr=0.0))  # weights never move
    assert stats["improved"] is False
    assert stats["val_ndcg@10_best"] == pytest.approx(stats["val_ndcg@10_before"])
    assert "DID NOT IMPROVE" in caplog.text
    assert (tmp_path / "out" / "model.safetensors").is_file()  # the best checkpoint is still saved


def _weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


def test_the_first_step_trains(tiny_model, data, tmp_path):
    # One step in all (16 rows, batch 32) with warmup: transformers' own schedule gave that step a
    # learning rate of 0, so the "fine-tuned" model was the base bit for bit.
    stats = _run(tiny_model, data, tmp_path, cfg=_cfg(batch_size=32, warmup=0.1))
    assert stats["steps"] == 1 and stats["best_step"] == 1
    base, tuned = _weights(tiny_model), _weights(tmp_path / "out")
    changed = [k for k in tuned if k in base and not (tuned[k] == base[k]).all()]
    assert changed, "the saved model is the base model: step 1 did not train"


def test_build_rows_labels_are_the_teacher_scores_of_the_chosen_texts():
    groups = [{"query": "q1", "pos": ["p1", "p2"], "neg": ["n1", "n2", "n3"],
               "pos_scores": [1.0, 0.9], "neg_scores": [0.5, 0.4, 0.3]}]
    cols, _ = build_rows(groups, 2, labels=True)
    assert cols["negative_1"] == ["n1", "n3"] and cols["negative_2"] == ["n2", "n1"]
    assert cols["label"] == [[1.0, 0.5, 0.4], [0.9, 0.3, 0.5]]


@pytest.mark.parametrize("loss", ["margin_mse", "distill_kl"])
def test_distillation_losses_learn_from_teacher_scores(tiny_model, tmp_path, loss):
    groups = _groups(12)
    for g in groups:  # teacher: positives high, the second negative lower than the first
        g["pos_scores"], g["neg_scores"] = [1.0] * len(g["pos"]), [0.6, 0.2]
    write_jsonl(tmp_path / "train.jsonl", groups)
    write_jsonl(tmp_path / "val.jsonl", _groups(6, offset=3))
    data = {"train_path": tmp_path / "train.jsonl", "val_path": tmp_path / "val.jsonl"}
    stats = _run(tiny_model, data, tmp_path, cfg=_cfg(loss=loss, num_negatives=2))
    assert stats["loss"] == loss and stats["train_rows"] == 16
    # Groups without teacher scores: one line before any model loads.
    with pytest.raises(UserError, match="needs teacher scores"):
        _run(tiny_model, {**data, "train_path": tmp_path / "val.jsonl"}, tmp_path, name="bad",
             cfg=_cfg(loss=loss))


def test_base_val_metrics_come_from_mine_when_it_scored_the_same_model(tiny_model, data, tmp_path, caplog):
    from ragtune.embeddings import model_fingerprint
    from ragtune.io import BASE_VAL_METRICS, write_json

    metrics = {"ndcg@10": 0.123456, "mrr@10": 0.2, "map": 0.1}
    scored = data["val_path"].parent / BASE_VAL_METRICS
    write_json(scored, {"model_fingerprint": model_fingerprint(tiny_model), "max_seq_length": 32,
                        "metrics": metrics})
    with caplog.at_level("INFO", logger="ragtune.train_embedder"):
        assert _run(tiny_model, data, tmp_path, name="mined")["val_ndcg@10_before"] == 0.123456
    assert "val metrics of the base model from" in caplog.text
    # Another max_seq_length (or other model files) than mine used: the trainer encodes val itself.
    write_json(scored, {"model_fingerprint": model_fingerprint(tiny_model), "max_seq_length": 64,
                        "metrics": metrics})
    assert _run(tiny_model, data, tmp_path, name="own")["val_ndcg@10_before"] != 0.123456
    # Mine scored in bfloat16 (inference_dtype), the evaluator runs in float32: not the same numbers.
    write_json(scored, {"model_fingerprint": model_fingerprint(tiny_model), "max_seq_length": 32,
                        "inference_dtype": "bfloat16", "metrics": metrics})
    assert _run(tiny_model, data, tmp_path, name="bf16")["val_ndcg@10_before"] != 0.123456


def test_bfloat16_training_is_mixed_precision_and_saves_float32(tiny_model, data, tmp_path):
    import torch
    from safetensors.torch import load_file

    full = _run(tiny_model, data, tmp_path, name="fp32", train_dtype="float32")
    mixed = _run(tiny_model, data, tmp_path, name="bf16", train_dtype="bfloat16")
    assert (full["train_dtype"], mixed["train_dtype"]) == ("float32", "bfloat16")
    w32, w16 = (load_file(tmp_path / n / "model.safetensors") for n in ("fp32", "bf16"))
    # The steps ran in bfloat16 (other weights), the saved weights are the float32 master copy.
    assert {t.dtype for t in w16.values()} == {t.dtype for t in w32.values()} == {torch.float32}
    assert any(not torch.equal(w32[k], w16[k]) for k in w32)
