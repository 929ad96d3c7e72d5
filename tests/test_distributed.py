"""ragtune.distributed: the nproc params, user mistakes, and the torchrun launcher (trainers: tests/e2e/test_ddp.py)."""
import sys

import pytest

from ragtune import distributed, params
from ragtune.errors import UserError


def test_nproc_is_one_by_default_and_at_least_one():
    p = params.validate({})
    assert p["embedder"]["nproc"] == 1 and p["reranker"]["nproc"] == 1
    assert params.validate({"reranker": {"nproc": 4}})["reranker"]["nproc"] == 4
    with pytest.raises(UserError, match=r"^params.yaml: embedder.nproc: must be >= 1, got 0$"):
        params.validate({"embedder": {"nproc": 0}})


def test_more_processes_than_gpus_is_one_clear_line(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError) as e:
        distributed.check(2, "cuda", "embedder.nproc")
    assert str(e.value) == ("params.yaml: embedder.nproc: 2 processes need 2 GPUs with device cuda, but 1 is "
                            "visible; set embedder.nproc: 1 or device: cpu")
    with pytest.raises(UserError, match=r"^params.yaml: reranker.nproc: 2 processes need device cpu or cuda"):
        distributed.check(2, "mps", "reranker.nproc")
    distributed.check(1, "cuda", "embedder.nproc")
    distributed.check(2, "cpu", "embedder.nproc")


def test_relaunch_refuses_before_starting_anything(monkeypatch):
    import torch

    from ragtune import models

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(models, "pick_device", lambda device: "cuda")  # device: auto on a 1-GPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(distributed, "launch", lambda *a: pytest.fail("launched despite the error"))
    with pytest.raises(UserError, match="2 processes need 2 GPUs"):
        distributed.relaunch("train_embedder", 2, "auto", "embedder.nproc", ["stages/train_embedder.py"])


def test_relaunch_only_outside_workers_and_for_several_processes(monkeypatch):
    monkeypatch.setattr(distributed, "launch", lambda *a: pytest.fail("must not launch"))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert distributed.relaunch("s", 1, "cpu", "embedder.nproc", ["x.py"]) is False
    # Inside a torchrun worker (ours, or one the user started): train here, never launch again.
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.relaunch("s", 2, "cpu", "embedder.nproc", ["x.py"]) is False
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (1, 2, False)


def test_launch_runs_the_command_on_n_workers_and_returns_a_failed_workers_code(tmp_path, capfd):
    script = tmp_path / "work.py"
    script.write_text(
        "import os, sys, pathlib\n"
        "here = pathlib.Path(__file__).parent\n"
        "(here / f\"rank{os.environ['RANK']}\").write_text(os.environ['WORLD_SIZE'] + ' ' + sys.argv[1])\n"
        "sys.exit(3 if os.environ['RANK'] == '1' else 0)\n")
    assert distributed.launch(2, [str(script), "--opt"]) == 3
    assert (tmp_path / "rank0").read_text() == "2 --opt" and (tmp_path / "rank1").read_text() == "2 --opt"
    out = capfd.readouterr()
    # torchrun's traceback and failure table are left out: the worker prints its own error.
    assert "Traceback" not in out.err and "ChildFailedError" not in out.err, out.err


def test_relaunch_exits_with_the_workers_code_and_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(distributed, "launch", lambda nproc, argv: 1)
    with pytest.raises(SystemExit) as e:
        distributed.relaunch("train_reranker", 2, "cpu", "reranker.nproc", ["stages/train_reranker.py"])
    assert e.value.code == 1
    assert capsys.readouterr().err == \
        "error: stage train_reranker: a worker of 2 failed (exit code 1); its error is above\n"
    monkeypatch.setattr(distributed, "launch", lambda nproc, argv: 0)
    assert distributed.relaunch("train_reranker", 2, "cpu", "reranker.nproc", [sys.argv[0]]) is True
