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


GERMAN_TOPICS = ["Speicher", "Netzwerk", "Abrechnung", "Anmeldung", "Sicherung", "Suche", "Export", "Zwischenspeicher",
                 "Warnungen", "Protokolle"]


def test_german_corpus_with_a_non_bert_model(tmp_path, tiny_xlmr):
    """language: de with a tiny XLM-RoBERTa (Unigram tokenizer) as embedder and reranker: every stage runs."""
    from ragtune import io

    from .conftest import make_project

    repo = make_project(tmp_path, tiny_xlmr)
    folder = tmp_path / "input-de"
    io.write_corpus(folder / "corpus.jsonl", {f"d{i}": {"title": "", "text": (
        f"Der Dienst {GERMAN_TOPICS[i % 10]} Nummer {i} schreibt ein Journal seiner Ereignisse und spielt es nach "
        f"einem Absturz wieder ab.")} for i in range(40)})
    io.write_queries(folder / "queries.jsonl", {f"q{i}": {"text": f"Welcher Dienst {GERMAN_TOPICS[i % 10]} {i} "
                                                                 f"spielt sein Journal ab?"} for i in range(30)})
    io.write_qrels(folder / "qrels" / "train.tsv", {f"q{i}": {f"d{i}": 1} for i in range(24)})
    io.write_qrels(folder / "qrels" / "test.tsv", {f"q{i}": {f"d{i}": 1} for i in range(24, 30)})
    _set(repo, language="de", ingest={"source": "beir", "path": str(folder)})
    run(["dvc", "repro"], repo)
    mining = json.loads((repo / "metrics" / "mining.json").read_text())
    assert mining["language"] == "de" and mining["train_recall@20"] == 1.0
    results = json.loads((repo / "metrics" / "eval.json").read_text())
    assert results["bm25"]["nDCG@10"] > 0.9  # the number and the topic find the passage
    assert {"dense:finetuned", "dense:merged", "bm25 + rerank:finetuned"} <= set(results)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(repo / "models" / "embedder"), device="cpu")
    assert type(model.tokenizer).__name__.startswith("XLMRoberta") and model.encode(["Katze"]).shape == (1, 32)


def test_conversations_llm_rewrite_repro(project, tmp_path):
    """query_mode: llm_rewrite against the local fake endpoint: every judged turn rewritten, cached in .cache/rewrite/."""
    from llm_stub import StubServer

    folder = tmp_path / "input-conv"
    _jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "text": f"The {TOPICS[i % 10]} service number {i} keeps a "
                                                               f"journal and replays it after a crash."}
                                     for i in range(60)])
    convs = []
    for c in range(15):
        turns = []
        for t in range(3):
            d = c * 3 + t
            turns += [{"speaker": "user", "text": f"and what about the {TOPICS[d % 10]} service {d}?",
                       "relevant": [f"d{d}"]},
                      {"speaker": "agent", "text": f"It keeps a journal of {TOPICS[d % 10]} events."}]
        convs.append({"id": f"conv{c}", "turns": turns})
    _jsonl(folder / "conversations.jsonl", convs)
    with StubServer() as srv:
        _set(project, ingest={"source": "conversations", "path": str(folder),
                              "conversation": {"query_mode": "llm_rewrite"},
                              "llm": {"base_url": srv.base_url, "api_key_env": "RAGTUNE_UNSET_KEY"}})
        run(["dvc", "repro"], project)
        assert len(srv.requests) == 45  # one per judged turn
    ingest = json.loads((project / "metrics" / "ingest.json").read_text())
    assert ingest["query_mode"] == "llm_rewrite" and ingest["rewrite"]["asked"] == 45
    queries = [json.loads(x) for x in (project / "data/raw/queries.jsonl").read_text().splitlines()]
    q = next(q for q in queries if q["_id"] == "conv0::2")
    assert q["text"] == "and what about the network service 1? (about: and what about the storage service 0?)"
    assert len(list((project / ".cache" / "rewrite").rglob("*.json"))) == 45
    assert "nDCG@10" in (project / "metrics" / "report.md").read_text()
