"""The package stage: release/<model>/ = the model's files hard-linked + a model card; atomic; checked first."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ragtune import cards
from ragtune.errors import UserError
from ragtune.params import defaults
from ragtune.pipeline.package import run as package
from test_cards import FACTS


@pytest.fixture
def run_dir(tmp_path, tiny_model) -> Path:
    """A workspace with the four model folders (the tiny model) and the metrics files a card quotes."""
    for model in cards.MODELS:
        shutil.copytree(tiny_model, tmp_path / "models" / model)
    (tmp_path / "metrics").mkdir()
    for key, name in cards.FACT_FILES.items():
        (tmp_path / "metrics" / name).write_text(json.dumps(FACTS[key]))
    return tmp_path


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_release_folders_are_hard_links_plus_a_card(run_dir):
    package(defaults(), models_dir=str(run_dir / "models"), metrics_dir=str(run_dir / "metrics"),
            out_dir=str(run_dir / "release"))
    for model in cards.MODELS:
        src, dst = run_dir / "models" / model, run_dir / "release" / model
        shipped = [f for f in _files(src) if f != "README.md"]  # sentence-transformers' own card is replaced
        assert _files(dst) == sorted(shipped + ["README.md"])
        for name in shipped:
            assert (src / name).stat().st_ino == (dst / name).stat().st_ino  # no second copy on disk
        card = (dst / "README.md").read_text()
        fm = yaml.safe_load(card.split("---\n", 2)[1])  # what the hub parses
        assert fm["model-index"][0]["name"] == model
        assert f'"release/{model}"' in card  # usage examples name the relative folder
        assert str(run_dir) not in card


def test_a_card_in_the_model_folder_is_replaced_not_edited(run_dir):
    stale = run_dir / "models" / "embedder" / "README.md"
    stale.write_text("old card")
    package(defaults(), models_dir=str(run_dir / "models"), metrics_dir=str(run_dir / "metrics"),
            out_dir=str(run_dir / "release"))
    assert stale.read_text() == "old card"  # a hard-linked file (DVC's cache) is never written through
    assert (run_dir / "release" / "embedder" / "README.md").read_text().startswith("---\n")


def test_bad_metrics_or_missing_model_leave_the_previous_release(run_dir):
    kw = dict(models_dir=str(run_dir / "models"), metrics_dir=str(run_dir / "metrics"),
              out_dir=str(run_dir / "release"))
    package(defaults(), **kw)
    before = (run_dir / "release" / "reranker" / "README.md").read_text()
    (run_dir / "metrics" / "eval.json").write_text("{not json")
    with pytest.raises(UserError, match=r"eval\.json:1: malformed JSON"):
        package(defaults(), **kw)
    shutil.rmtree(run_dir / "models" / "reranker-merged")
    with pytest.raises(UserError, match=r"reranker-merged: no such model folder"):
        package(defaults(), **kw)
    assert (run_dir / "release" / "reranker" / "README.md").read_text() == before
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []  # no temp folder left
