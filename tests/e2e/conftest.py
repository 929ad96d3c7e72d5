"""Fixtures for end-to-end runs: a copy of the project in a temp git repo, with DVC initialised."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ["dvc.yaml", "params.yaml", "stages", "ragtune", "data/input", ".dvcignore"]


def env_for(cwd: Path, **extra: str) -> dict:
    """The environment a stage in the project copy at `cwd` runs with: this venv, offline."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(cwd)  # the stage scripts import the copy's ragtune package
    env["HF_HUB_OFFLINE"] = "1"
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
