"""ragtune.pipeline: the stage functions."""
from __future__ import annotations

import json
from pathlib import Path

from ragtune.params import defaults
from ragtune.pipeline.train import run_training


def test_trainers_get_the_model_name_from_params_not_this_machines_path(tiny_model, tmp_path, monkeypatch):
    """metrics/train_*.json record the base model as the user named it: a path resolved on one machine
    would show up as a change in `dvc metrics diff` on another."""
    monkeypatch.chdir(Path(tiny_model).parent)
    params = defaults()
    params["embedder"]["base"] = Path(tiny_model).name  # relative, as a user may write it
    seen = {}

    def train(**kwargs):  # the trainers' signature; records what it was given
        seen.update(kwargs)
        return {"base_model": kwargs["base"], "val_ndcg@10_before": 0.5, "val_ndcg@10_best": 0.6, "val_queries": 40}

    stats_path = tmp_path / "train_embedder.json"
    run_training("embedder", train, params, negatives_dir=str(tmp_path), out_dir=str(tmp_path / "out"),
                 stats_path=str(stats_path), live_dir=str(tmp_path / "live"), checkpoint_dir=str(tmp_path / "c"),
                 resume=False)
    assert seen["base"] == Path(tiny_model).name
    assert json.loads(stats_path.read_text())["base_model"] == Path(tiny_model).name
