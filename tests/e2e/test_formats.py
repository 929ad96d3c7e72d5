"""The inputs users already have, each through one `dvc repro` on the tiny model: FlagEmbedding training
files / MTEB reranking sets (ingest.source: groups)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .conftest import run

TOPICS = ["storage", "network", "billing", "login", "backup", "search", "export", "cache", "alerts", "logs"]


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _set(repo: Path, **sections) -> dict:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in sections.items():
        if isinstance(value, dict):
            params[key].update(value)
        else:
            params[key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    return params


def _groups_line(i: int) -> dict:
    t, other = TOPICS[i % 10], TOPICS[(i + 3) % 10]
    return {"query": f"how does the {t} service {i} replay its journal",
            "pos": [f"The {t} service {i} keeps a journal of {t} events and replays it after a crash."],
            "neg": [f"The {other} service {i} sends a weekly report.", f"The {t} desk {i + 1} closes at noon.",
                    f"Service {i + 2} of {other} has no journal."]}


def test_groups_source_repro(project, tmp_path):
    folder = tmp_path / "flag-data"
    _jsonl(folder / "train.jsonl", [_groups_line(i) for i in range(30)])
    # MTEB's field names in the test file; the same negative text as a train line's: one document.
    _jsonl(folder / "test.jsonl", [{"query": q["query"], "positive": q["pos"], "negative": q["neg"]}
                                   for q in map(_groups_line, range(30, 40))])
    _set(project, ingest={"source": "groups", "path": str(folder)}, mine={"num_negatives": 4})
    run(["dvc", "repro"], project)

    ingest = json.loads((project / "metrics" / "ingest.json").read_text())
    assert ingest["source"] == "groups" and ingest["queries"] == 40 and ingest["grades"] == "binary"
    assert ingest["judged_queries"] == {"test": 10, "train": 30}
    splits = json.loads((project / "metrics" / "splits.json").read_text())
    assert splits["test"]["queries"] == 10 and splits["carved"] == ["val"]
    # Given negatives are each train group's first negatives, topped up by mining to num_negatives.
    lines = {g["query"]: g for g in map(_groups_line, range(30))}
    groups = [json.loads(x) for x in (project / "data/negatives/train.jsonl").read_text().splitlines()]
    assert groups and all(g["neg"][:3] == lines[g["query"]]["neg"] and len(g["neg"]) == 4 for g in groups)
    mining = json.loads((project / "metrics" / "mining.json").read_text())
    assert mining["given_negatives_used"] == 3 * len(groups)
    # The reranking view beside the retrieval view.
    view = json.loads((project / "metrics" / "eval_candidates.json").read_text())
    assert {"bm25", "dense:base", "dense:finetuned", "rerank:finetuned"} <= set(view)
    assert all(0.25 <= m["MAP"] <= 1.0 and 0.0 < m["MRR@10"] <= 1.0 for m in view.values())  # 1 pos in 4
    assert view["bm25"]["MRR@10"] > 0.9  # the positive shares the query's words
    assert "Reranking view" in (project / "metrics" / "report.md").read_text()
    assert "bm25" in json.loads((project / "metrics" / "eval.json").read_text())
