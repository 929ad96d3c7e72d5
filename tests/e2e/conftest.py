"""Fixtures for end-to-end runs: a copy of the project in a temp git repo, with DVC initialised.

`reproduced` is the one complete default `dvc repro` of the session (traced, committed), built once in the
background while the first tests run (`python -m e2e.reproduce`); each worker reads its own copy, tests that
change something work on `reproduced_copy`. Each full tiny repro costs about a minute, so modules no longer
build their own.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import built_once, needs_repro, shared_dir

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ["dvc.yaml", "params.yaml", "stages", "ragtune", "data/input", ".dvcignore"]


def env_for(cwd: Path, **extra: str) -> dict:
    """The environment a stage in the project copy at `cwd` runs with: this venv, offline."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(cwd)  # the stage scripts import the copy's ragtune package
    env["HF_HUB_OFFLINE"] = "1"
    # Tiny models run fastest on one thread, and `make test` runs two tests at once on two cores.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env_for(cwd), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def tiny_params(model: str) -> dict:
    """params.yaml for a fast run: the tiny random BERT for both models, a small pydoc corpus."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["ingest"].update(max_passages=120, max_queries=60)
    p["embedder"].update(base=model, batch_size=8, max_seq_length=64)
    p["reranker"].update(base=model, batch_size=2, group_size=4, max_length=64)
    p["mine"].update(range_max=20, num_negatives=3)
    p["evaluate"].update(rerank_depth=5)
    return p


def make_project(parent: Path, model: str) -> Path:
    """A fresh git + DVC repo under `parent` holding a copy of the project, set up for `model`."""
    repo = parent / "repo"
    repo.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, repo / name)
    (repo / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params(model), sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "config", "user.email", "test@example.com"], repo)
    run(["git", "config", "user.name", "test"], repo)
    run(["dvc", "init", "-q"], repo)
    shutil.copy2(ROOT / ".dvc" / "config", repo / ".dvc" / "config")  # analytics off, cache link type
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots", dirs_exist_ok=True)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "init"], repo)
    return repo


@pytest.fixture
def project(tmp_path, tiny_model) -> Path:
    return make_project(tmp_path, tiny_model)


@dataclass
class Reproduced:
    repo: Path
    proc: subprocess.CompletedProcess  # the first `dvc repro`: its stdout (results table) and stderr (the log)
    untracked_after_repro: list[str]  # `git status` right after it, before committing
    params_read: dict[str, set[str]]  # stage -> params keys it read ($RAGTUNE_PARAMS_TRACE)


def reproduce(folder: Path, model: str) -> dict:
    """One complete, traced `dvc repro` of a new project under `folder`, committed; what it did as a dict."""
    repo = make_project(folder, model)
    trace = folder / "params-read.txt"
    proc = subprocess.run(["dvc", "repro"], cwd=repo, env=env_for(repo, RAGTUNE_PARAMS_TRACE=str(trace)),
                          capture_output=True, text=True, timeout=1800)
    record = {"repo": str(repo), "returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
    if proc.returncode == 0:
        status = run(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout.splitlines()
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "repro"], repo)
        record["untracked_after_repro"] = [line[3:] for line in status]
        record["params_read"] = [line.split() for line in trace.read_text().splitlines()]
    return record


@pytest.fixture(scope="session", autouse=True)
def _reproduced_started(request, tmp_path_factory):
    """Start the session's one e2e repro in the background (one worker starts it; the others find it),
    when any selected test reads it: the tests that read it run last (tests/conftest.py)."""
    if not any(map(needs_repro, request.session.items)):
        yield None
        return
    model = request.getfixturevalue("tiny_model")
    started: list[subprocess.Popen] = []

    def start(folder: Path) -> str:
        folder.mkdir()
        with open(folder / "build.log", "w") as log:
            started.append(subprocess.Popen([sys.executable, "-m", "e2e.reproduce", model, str(folder)],
                                            cwd=ROOT / "tests", stdout=log, stderr=subprocess.STDOUT))
        return str(folder)

    yield Path(built_once(shared_dir(tmp_path_factory) / "reproduced", start))
    for proc in started:
        proc.wait(timeout=1800)  # another worker may still be waiting for it


@pytest.fixture(scope="session")
def reproduced(_reproduced_started, tmp_path_factory) -> Reproduced:
    """A project after one complete, traced `dvc repro`, committed: this worker's own copy of the session's
    build. Read it only; change a copy (`reproduced_copy`)."""
    folder = _reproduced_started
    done, deadline = folder / "record.json", time.monotonic() + 1800
    while not done.is_file():
        assert time.monotonic() < deadline, f"the session's repro did not finish: {folder / 'build.log'}"
        time.sleep(1)
    record = json.loads(done.read_text())
    proc = subprocess.CompletedProcess(["dvc", "repro"], record["returncode"], record["stdout"], record["stderr"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    repo = copy_project(Path(record["repo"]), tmp_path_factory.mktemp("reproduced") / "repo")
    read: dict[str, set[str]] = {}
    for stage, key in record["params_read"]:
        read.setdefault(stage, set()).add(key)
    return Reproduced(repo, proc, record["untracked_after_repro"], read)


def copy_project(src: Path, dest: Path) -> Path:
    """A private copy of a reproduced repo (workspace, git history and DVC cache), linked to its own cache."""
    shutil.copytree(src, dest, symlinks=True)
    run(["dvc", "checkout", "--relink"], dest)  # copytree made copies; link them to this copy's cache again
    return dest


@pytest.fixture
def reproduced_copy(reproduced, tmp_path) -> Path:
    return copy_project(reproduced.repo, tmp_path / "repo")
