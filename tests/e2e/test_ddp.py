"""Both train stages on 2 CPU processes (`<kind>.nproc: 2`: torch DDP over gloo), on the tiny model.

The proof that the processes train one model together: 2 processes x batch B follow the same training
curve (loss and gradient norm per step) as 1 process x batch 2B. Processes that trained apart would each
log their own gradient norm. The tiny model gets no dropout here, so that the curves can match exactly.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from .conftest import ROOT, env_for

WORDS = ["python", "function", "module", "class", "method", "string", "file", "error", "index", "token",
         "corpus", "model", "query", "search", "split", "value"]


@pytest.fixture(scope="module")
def model(tiny_model, tmp_path_factory) -> str:
    """The tiny model without dropout: then the only randomness is the data order, which is seeded."""
    dst = tmp_path_factory.mktemp("nodropout") / "st"
    shutil.copytree(tiny_model, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (dst / "config.json").write_text(json.dumps(config))
    return str(dst)


def _groups(n: int, offset: int) -> list[dict]:
    # Every text unique: sentence-transformers' no-duplicates batches are then plain slices of one seeded
    # order, so batch 2B is exactly two batches of B.
    return [{"query": f"{WORDS[i % 16]} query {i + offset}",
             "pos": [f"the {WORDS[i % 16]} data is {i + offset}"],
             "neg": [f"an {WORDS[(i + j) % 16]} error on {i + offset} {j}" for j in range(1, 6)]}
            for i in range(n)]


@pytest.fixture
def workdir(tmp_path, model) -> Path:
    neg = tmp_path / "neg"
    neg.mkdir()
    for name, groups in (("train", _groups(32, 0)), ("val", _groups(8, 100))):
        (neg / f"{name}.jsonl").write_text("".join(json.dumps(g) + "\n" for g in groups))
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["device"] = "cpu"
    # float32: in bfloat16 autocast the two half-batches round apart from the whole one (grad norms 1e-2
    # apart), which would hide whether the processes train one model.
    p["train_dtype"] = "float32"
    p["embedder"].update(base=model, batch_size=4, max_seq_length=32, encode_batch_size=16, lr=1e-3, nproc=2)
    p["reranker"].update(base=model, batch_size=2, group_size=4, max_length=32, lr=3e-3, nproc=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return tmp_path


def _stage(kind: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "stages" / f"train_{kind}.py"), "--params", "params.yaml",
           "--negatives", "neg", "--out", f"models/{kind}", "--stats", f"{kind}.json", "--live", f"live-{kind}",
           "--checkpoints", f"ck-{kind}"]
    return subprocess.run(cmd, cwd=cwd, env=env_for(cwd, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                          timeout=600)


def _curve(live: Path, name: str) -> list[float]:
    with open(live / "plots" / "metrics" / f"{name}.tsv", encoding="utf-8", newline="") as f:
        return [float(row[name]) for row in csv.DictReader(f, delimiter="\t")]


def _check_two_process_run(kind: str, proc: subprocess.CompletedProcess, cwd: Path, per_step: str) -> dict:
    assert proc.returncode == 0, proc.stderr[-5000:]
    log = proc.stderr
    assert "[rank 0] ragtune.distributed: distributed: rank 0 of world size 2, backend gloo" in log, log[-3000:]
    assert f"per process x 2 processes = {per_step} per step" in log
    # Rank 1 trained (the curves below prove it) but logs warnings only, and writes nothing.
    assert f"[rank 0] ragtune.train_{kind}:" in log and f"[rank 1] ragtune.train_{kind}:" not in log
    assert log.count("ragtune: result:") == 1
    stats = json.loads((cwd / f"{kind}.json").read_text())
    assert stats["nproc"] == 2
    leftovers = [p.name for p in cwd.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    assert not leftovers
    assert not list((cwd / f"live-{kind}").rglob("dvc.yaml"))
    return stats


def _same_curves(live_ddp: Path, live_one: Path) -> None:
    # Equal up to rounding (the matrices have other shapes); processes that train apart differ by > 1e-3
    # from the first step on, in the gradient norm (rank 0 logs its own) before the loss.
    for name in ("grad_norm", "loss"):
        ddp, one = _curve(live_ddp, name), _curve(live_one, name)
        assert len(ddp) == len(one) and len(ddp) >= 4, (name, ddp, one)
        assert ddp == pytest.approx(one, rel=1e-4), (name, ddp, one)


def test_embedder_trains_one_model_on_two_processes(workdir, model):
    proc = _stage("embedder", workdir)
    stats = _check_two_process_run("embedder", proc, workdir, "8 rows")
    # 32 rows, 8 per step: 4 steps per pass; embedder.min_steps (16) counts the steps of both processes.
    assert stats["passes_per_epoch"] == 4 and stats["steps"] == 4 * (32 // 8) and stats["effective_batch_size"] == 8

    from sentence_transformers import SentenceTransformer

    from ragtune.params import load
    from ragtune.train_embedder import train_embedder

    saved = SentenceTransformer(str(workdir / "models" / "embedder"), device="cpu")
    assert saved.encode(["python function"]).shape == (1, 32)

    # One process with the effective batch: the same curve, so the same model.
    params = load(workdir / "params.yaml")
    cfg = dict(params["embedder"], batch_size=8, nproc=1)
    one = train_embedder(base=model, train_path=workdir / "neg" / "train.jsonl",
                         val_path=workdir / "neg" / "val.jsonl", out_dir=workdir / "one", cfg=cfg,
                         epochs=params["epochs"], seed=params["seed"], device="cpu", checkpoint_dir=workdir / "ck-one", live_dir=workdir / "live-one",
                         security=params["security"])
    assert one["steps"] == stats["steps"]
    _same_curves(workdir / "live-embedder", workdir / "live-one")
    reference = SentenceTransformer(str(workdir / "one"), device="cpu")
    texts = ["python function", "an error on 3"]
    assert saved.encode(texts) == pytest.approx(reference.encode(texts), abs=1e-3)


def test_reranker_trains_one_model_on_two_processes(workdir, model):
    proc = _stage("reranker", workdir)
    stats = _check_two_process_run("reranker", proc, workdir, "4 groups")
    assert stats["steps"] == 32 // 4 and stats["effective_batch_size"] == 4

    from sentence_transformers import CrossEncoder

    from ragtune.params import load
    from ragtune.train_reranker import train_reranker

    params = load(workdir / "params.yaml")
    cfg = dict(params["reranker"], batch_size=4, nproc=1)
    one = train_reranker(base=model, train_path=workdir / "neg" / "train.jsonl",
                         val_path=workdir / "neg" / "val.jsonl", out_dir=workdir / "one", cfg=cfg,
                         epochs=params["epochs"], seed=params["seed"], device="cpu", checkpoint_dir=workdir / "ck-one", live_dir=workdir / "live-one",
                         security=params["security"])
    assert one["steps"] == stats["steps"]
    _same_curves(workdir / "live-reranker", workdir / "live-one")
    import torch

    pairs = [("python query 3", "the python data is 3"), ("python query 3", "an error on 3 1"),
             ("module query 2", "the module data is 2"), ("module query 2", "an class error on 2 1")]

    def logits(path):
        scores = CrossEncoder(str(path), device="cpu").predict(pairs, activation_fn=torch.nn.Identity())
        # Centred: the listwise loss ignores a shift of all logits, so the head's bias only gets rounding
        # noise as gradient, which Adam scales up to full steps; it drifts apart between any two runs.
        return scores - scores.mean()

    assert logits(workdir / "models" / "reranker") == pytest.approx(logits(workdir / "one"), abs=1e-4)


def test_encode_corpus_on_two_processes_fills_the_cache_mine_reads(workdir, model):
    """stages/encode_corpus.py --processes 2: torchrun workers fill .cache/embeddings/; the cached array is
    what encode_corpus in one process computes (and so what mine and evaluate then read)."""
    from ragtune.embeddings import encode_corpus
    from ragtune.io import doc_text, read_corpus
    from ragtune.params import defaults

    docs = [{"_id": f"d{i}", "title": "", "text": f"the {WORDS[i % 16]} data is {i}"} for i in range(12)]
    (workdir / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    cmd = [sys.executable, str(ROOT / "stages" / "encode_corpus.py"), "--corpus", "corpus.jsonl", "--processes", "2"]
    proc = subprocess.run(cmd, cwd=workdir, env=env_for(workdir, PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "[rank 0] ragtune.distributed: distributed: rank 0 of world size 2" in proc.stderr
    assert proc.stderr.count("ragtune: result: 12 documents encoded") == 1
    (cached,) = (workdir / ".cache" / "embeddings").glob("*.npy")
    corpus = read_corpus(workdir / "corpus.jsonl")
    texts = [doc_text(corpus[d]) for d in corpus]
    from ragtune.models import inference_precision

    with inference_precision(defaults()["inference_dtype"], "cpu"):  # as the stage encodes
        fresh = encode_corpus(model, texts, max_seq_length=32, device="cpu", cache_dir=workdir / "fresh",
                              security=defaults()["security"])
    np.testing.assert_allclose(np.load(cached), fresh, atol=1e-6)
    (again,) = (workdir / "fresh").glob("*.npy")
    assert again.name == cached.name  # the same key: mine would find the cache filled
