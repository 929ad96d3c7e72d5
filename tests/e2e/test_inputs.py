"""Each kind of input (BEIR folder, raw documents, conversations, and SciFact) through `dvc repro prepare`:
ingest + prepare only (no model), checking data/prepared and metrics/splits.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, make_project, run

SPLITS = ("train", "val", "test")


def _set_ingest(repo: Path, **ingest) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["ingest"].update(ingest)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _prepared(repo: Path) -> tuple[dict, dict[str, dict]]:
    from ragtune import io

    queries = io.read_queries(repo / "data" / "prepared" / "queries.jsonl")
    qrels = {s: io.read_qrels(repo / "data" / "prepared" / "qrels" / f"{s}.tsv")[0] for s in SPLITS}
    return queries, qrels


def _repro_prepare(repo: Path) -> dict:
    proc = run(["dvc", "repro", "prepare"], repo)
    assert "Running stage 'ingest'" in proc.stdout and "Running stage 'prepare'" in proc.stdout
    assert not (repo / "data" / "negatives").exists()  # nothing past prepare ran
    return json.loads((repo / "metrics" / "splits.json").read_text())


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _sentence(i: int) -> str:
    topics = ["storage", "network", "billing", "login", "backup", "search", "export", "cache", "alerts", "logs"]
    t = topics[i % len(topics)]
    return f"The {t} service number {i} keeps a journal of {t} events and replays it after a crash."


@pytest.fixture
def beir_folder(tmp_path) -> Path:
    folder = tmp_path / "input-beir"
    _jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "title": f"Doc {i}", "text": _sentence(i)} for i in range(40)])
    _jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": f"which service {i} replays its journal",
                                       "metadata": {"team": f"t{i % 5}"}} for i in range(30)])
    (folder / "qrels").mkdir()
    for split, ids in (("train", range(0, 24)), ("test", range(24, 30))):
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in ids))
    return folder


@pytest.fixture
def documents_folder(tmp_path) -> Path:
    folder = tmp_path / "input-docs"
    (folder / "guide").mkdir(parents=True)
    (folder / "notes.txt").write_text("\n\n".join(" ".join(_sentence(i + k) for k in range(3))
                                                  for i in range(0, 30, 3)))
    (folder / "guide" / "setup.md").write_text("# Setup\n\n" + "\n\n".join(
        " ".join(_sentence(i + k).replace("service", "module") for k in range(3)) for i in range(30, 60, 3)))
    (folder / "page.html").write_text("<html><head><title>Ops page</title><style>p{}</style></head><body>"
                                      + "".join(f"<p>{_sentence(i).replace('service', 'daemon')} "
                                                f"{_sentence(i + 1).replace('service', 'daemon')}</p>"
                                                for i in range(60, 80, 2)) + "</body></html>")
    _jsonl(folder / "faq.jsonl", [{"_id": f"f{i}", "title": "FAQ", "text": " ".join(
        _sentence(i + k).replace("service", "feature") for k in range(3))} for i in range(80, 110, 3)])
    return folder


@pytest.fixture
def conversations_folder(tmp_path) -> Path:
    folder = tmp_path / "input-conv"
    _jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "text": _sentence(i)} for i in range(60)])
    convs = []
    for c in range(15):
        turns = []
        for t in range(3):
            d = c * 3 + t
            turns += [{"speaker": "user", "text": f"conversation {c} asks about service number {d}",
                       "rewrite": f"what does service number {d} keep a journal of",
                       "relevant": [f"d{d}", {"id": f"d{d + 1}", "score": 0}]},
                      {"speaker": "agent", "text": f"Service {d} keeps a journal."}]
        convs.append({"id": f"conv{c}", "domain": ["cloud", "gov"][c % 2], "turns": turns})
    _jsonl(folder / "conversations.jsonl", convs)
    return folder


def test_beir_folder(project, beir_folder):
    _set_ingest(project, source="beir", path=str(beir_folder))
    stats = _repro_prepare(project)
    queries, qrels = _prepared(project)
    assert stats["source_splits"] == ["test", "train"] and stats["carved"] == ["val"]
    assert set(qrels["test"]) == {f"q{i}" for i in range(24, 30)}  # the given test split is honoured
    assert len(qrels["val"]) >= 1 and set(qrels["val"]) <= {f"q{i}" for i in range(24)}
    assert queries["q0"]["metadata"] == {"team": "t0"}
    ingest = json.loads((project / "metrics" / "ingest.json").read_text())
    assert ingest["documents"] == 40 and ingest["queries"] == 30


def test_documents_folder(project, documents_folder):
    _set_ingest(project, source="documents", path=str(documents_folder), chunk_size=300, chunk_overlap=50)
    stats = _repro_prepare(project)
    queries, qrels = _prepared(project)
    ingest = json.loads((project / "metrics" / "ingest.json").read_text())
    assert ingest["files"] == 4 and ingest["generator"] == "heuristic"
    assert stats["carved"] == ["val", "test"] and all(qrels[s] for s in SPLITS)
    assert {q["metadata"]["source"] for q in queries.values()} <= {"notes.txt", "guide/setup.md", "page.html",
                                                                   "faq.jsonl"}
    from ragtune import io

    corpus = io.read_corpus(project / "data" / "raw" / "corpus.jsonl")
    assert all(len(d["text"]) <= 300 for d in corpus.values()) and "p{}" not in json.dumps(corpus)


def test_conversations_folder(project, conversations_folder):
    _set_ingest(project, source="conversations", path=str(conversations_folder),
                conversation={"query_mode": "last_n_turns", "last_n": 2, "rewrite_field": "rewrite"})
    stats = _repro_prepare(project)
    queries, qrels = _prepared(project)
    assert stats["group_by"] == "conversation_id"  # prepare.group_by is null: conversations grouped anyway
    owner = {}
    for s in SPLITS:
        assert qrels[s], s
        for qid in qrels[s]:
            conv = queries[qid]["metadata"]["conversation_id"]
            assert owner.setdefault(conv, s) == s, f"conversation {conv} in {owner[conv]} and {s}"
    assert sum(stats[s]["groups"] for s in SPLITS) == 15
    q = queries["conv0::2"]
    assert q["metadata"] == {"conversation_id": "conv0", "turn": 2, "domain": "cloud"}
    assert q["text"] == "Service 0 keeps a journal.\nconversation 0 asks about service number 1"
    assert qrels[owner["conv0"]]["conv0::2"] == {"d1": 1, "d2": 0}


def test_scifact(project, scifact):
    _set_ingest(project, source="beir", path=str(scifact))
    stats = _repro_prepare(project)
    _, qrels = _prepared(project)
    assert stats["source_splits"] == ["test", "train"] and stats["carved"] == ["val"]
    assert stats["test"]["queries"] == 300 and len(qrels["test"]) == 300
    from ragtune import io

    source_train = io.read_qrels(scifact / "qrels" / "train.tsv")[0]
    assert set(qrels["val"]) <= set(source_train) and set(qrels["train"]) <= set(source_train)
    assert not (set(qrels["train"]) | set(qrels["val"])) & set(qrels["test"])
    assert 60 <= stats["val"]["queries"] <= 100  # about 10% of SciFact's 809 train queries


def test_missing_ingest_path_message_is_the_one_readme_explains(tmp_path):
    """DVC checks a stage's deps before it runs the stage, so a missing `ingest.path` is DVC's message,
    not ours: README's "When things go wrong" must show that message and the fix."""
    repo = make_project(tmp_path, "no-model-needed")  # fails before any stage runs
    _set_ingest(repo, source="beir", path="data/mydata")
    proc = run(["dvc", "repro", "ingest"], repo, check=False)
    assert proc.returncode != 0 and "Running stage" not in proc.stdout
    dvc_says = "failed to reproduce 'ingest': [Errno 2] No such file or directory:"
    assert f"ERROR: {dvc_says} '{repo / 'data' / 'mydata'}'" in proc.stderr + proc.stdout
    readme = (ROOT / "README.md").read_text()
    assert f"`ERROR: {dvc_says} '/home/me/project/data/mydata'`" in readme
    proc = run(["python", "stages/ingest.py"], repo, check=False)
    ours = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 1 and ours == ["error: params.yaml: ingest.path: no such folder: data/mydata"]
    assert f"`{ours[0]}`" in readme
