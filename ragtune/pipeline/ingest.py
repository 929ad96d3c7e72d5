"""Stage ingest: build the default corpus, or validate and normalise the user's data."""
from __future__ import annotations

from pathlib import Path

from ..ingest import ingest as build
from ..io import write_json
from ..logs import summary


def run(params: dict, *, out_dir: str, stats_path: str) -> None:
    stats = build(params["ingest"], seed=params["seed"], out_dir=Path(out_dir))
    write_json(stats_path, stats)
    summary(f"{stats.get('documents')} documents, {stats.get('queries')} queries -> {out_dir}")
