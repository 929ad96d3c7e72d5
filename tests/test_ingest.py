import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ragtune import io
from ragtune.errors import UserError
from ragtune.ingest import ingest
from ragtune.params import defaults


def _cfg(**kw):
    cfg = defaults()["ingest"]
    cfg.update(kw)
    return cfg


def _beir(folder, corpus=None, queries=None, qrels=None):
    """A tiny BEIR folder; each argument is the raw file content (lines) to write."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = corpus if corpus is not None else [
        {"_id": "d1", "title": "Cats", "text": "Cats purr when content."},
        {"_id": "d2", "title": "", "text": "Dogs bark at strangers."}]
    queries = queries if queries is not None else [
        {"_id": "q1", "text": "why do cats purr", "metadata": {"conv": "a"}},
        {"_id": "q2", "text": "what do dogs do"}]
    qrels = qrels if qrels is not None else {"test": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"}
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        (folder / name).write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    (folder / "qrels").mkdir(exist_ok=True)
    for split, text in qrels.items():
        (folder / "qrels" / f"{split}.tsv").write_text(text)
    return folder


def test_beir_roundtrip_keeps_metadata_and_splits(tmp_path):
    src = _beir(tmp_path / "src", qrels={"train": "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
                                          "test": "query-id\tcorpus-id\tscore\nq2\td2\t1\n"})
    stats = ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")
    assert stats["documents"] == 2 and stats["queries"] == 2
    assert stats["judgments"] == {"test": 1, "train": 1}
    assert io.read_queries(tmp_path / "raw" / "queries.jsonl")["q1"]["metadata"] == {"conv": "a"}
    assert io.read_qrels(tmp_path / "raw" / "qrels" / "train.tsv")[0] == {"q1": {"d1": 1}}
    assert sorted(p.name for p in (tmp_path / "raw" / "qrels").iterdir()) == ["test.tsv", "train.tsv"]


@pytest.mark.parametrize("corpus, message", [
    (['{"_id": "d1", "text": "ok"}', '{"_id": "d2", "text": '], r"corpus.jsonl:2: malformed JSON"),
    (['{"_id": "d1", "text": "ok"}', '{"text": "no id"}'], r"corpus.jsonl:2: field '_id': missing"),
    (['{"_id": "d1"}'], r"corpus.jsonl:1: field 'text': missing"),
    (['{"_id": "d1", "text": "ok"}', '{"_id": "d1", "text": "again"}'], r"corpus.jsonl:2: .*duplicate id 'd1'"),
    (['{"_id": "d1", "text": "  "}'], r"corpus.jsonl:1: field 'text': empty text"),
])
def test_beir_bad_corpus_names_file_and_line(tmp_path, corpus, message):
    src = _beir(tmp_path / "src", corpus=corpus)
    with pytest.raises(UserError, match=message):
        ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()  # validated before anything was written


def test_beir_bad_queries_names_file_and_line(tmp_path):
    src = _beir(tmp_path / "src", queries=['{"_id": "q1", "text": "a"}', '{"_id": "q1", "text": "b"}'])
    with pytest.raises(UserError, match=r"queries.jsonl:2: field '_id': duplicate id 'q1'"):
        ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")


@pytest.mark.parametrize("row, message", [
    ("qX\td1\t1", r"qrels/test.tsv:3: field 'query-id': unknown query id 'qX'"),
    ("q1\tdX\t1", r"qrels/test.tsv:3: field 'corpus-id': unknown document id 'dX'"),
])
def test_beir_unknown_ids_strict_is_an_error_else_dropped(tmp_path, row, message):
    src = _beir(tmp_path / "src", qrels={"test": f"query-id\tcorpus-id\tscore\nq1\td1\t1\n{row}\nq2\td2\t1\n"})
    with pytest.raises(UserError, match=message):
        ingest(_cfg(source="beir", path=str(src), strict=True), 0, tmp_path / "raw")
    stats = ingest(_cfg(source="beir", path=str(src), strict=False), 0, tmp_path / "raw")
    assert stats["judgments"] == {"test": 2}
    assert sum(stats["dropped_judgments"].values()) == 1
    assert io.read_qrels(tmp_path / "raw" / "qrels" / "test.tsv")[0] == {"q1": {"d1": 1}, "q2": {"d2": 1}}


def test_beir_bad_qrels_score_and_missing_files(tmp_path):
    src = _beir(tmp_path / "src", qrels={"test": "query-id\tcorpus-id\tscore\nq1\td1\tyes\n"})
    with pytest.raises(UserError, match=r"qrels/test.tsv:2: field 'score': not a number"):
        ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")
    (src / "qrels" / "test.tsv").unlink()
    with pytest.raises(UserError, match=r"no qrels files"):
        ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")
    with pytest.raises(UserError, match=r"ingest.path: no such folder"):
        ingest(_cfg(source="beir", path=str(tmp_path / "nope")), 0, tmp_path / "raw")


def test_beir_scifact(scifact, tmp_path):
    stats = ingest(_cfg(source="beir", path=str(scifact)), 0, tmp_path / "raw")
    assert stats["documents"] == 5183 and stats["queries"] == 1109
    assert stats["judged_queries"] == {"test": 300, "train": 809}
    assert (tmp_path / "raw" / "corpus.jsonl").stat().st_size > 1_000_000


def test_documents_are_chunked_with_generated_queries(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    sentences = [f"The {w} module handles {w} files and keeps a cache of {w} entries for speed." for w in
                 ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")]
    (docs / "a.md").write_text("# Guide\n\n" + " ".join(sentences[:5]) + "\n\n" + " ".join(sentences[5:]))
    (docs / "b.html").write_text("<html><title>Page B</title><script>x=1</script><p>"
                                 + " ".join(s.replace("module", "tool") for s in sentences) + "</p></html>")
    (docs / "c.jsonl").write_text(json.dumps({"_id": "x", "title": "T", "text": " ".join(sentences[:3])}) + "\n")
    cfg = _cfg(source="documents", path=str(docs), chunk_size=300, chunk_overlap=50)
    stats = ingest(cfg, 0, tmp_path / "raw")
    corpus = io.read_corpus(tmp_path / "raw" / "corpus.jsonl")
    queries = io.read_queries(tmp_path / "raw" / "queries.jsonl")
    qrels, _ = io.read_qrels(tmp_path / "raw" / "qrels" / "all.tsv")
    assert stats["documents"] == len(corpus) and len(corpus) >= 6
    assert all(len(d["text"]) <= 300 for d in corpus.values())
    assert "x=1" not in " ".join(d["text"] for d in corpus.values())
    assert {d["title"] for d in corpus.values()} == {"a", "Page B", "T"}
    assert queries and set(qrels) == set(queries)
    for qid, q in queries.items():
        (docid,) = qrels[qid]
        assert q["text"] not in corpus[docid]["text"]  # the query sentence was removed from its passage
        assert q["metadata"]["source"] in ("a.md", "b.html", "c.jsonl")
    again = tmp_path / "again"
    ingest(cfg, 0, again)
    assert (again / "queries.jsonl").read_bytes() == (tmp_path / "raw" / "queries.jsonl").read_bytes()


def test_documents_bad_jsonl_line(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "c.jsonl").write_text('{"text": "fine text here"}\n{"title": "no text"}\n')
    with pytest.raises(UserError, match=r"c.jsonl:2: field 'text': missing or empty"):
        ingest(_cfg(source="documents", path=str(docs)), 0, tmp_path / "raw")


def test_conversations_source_is_dispatched(tmp_path):
    src = tmp_path / "conv"
    src.mkdir()
    (src / "corpus.jsonl").write_text('{"_id": "d1", "text": "Cats purr."}\n')
    (src / "conversations.jsonl").write_text(json.dumps(
        {"id": "c1", "turns": [{"speaker": "user", "text": "why do cats purr", "relevant": ["d1"]}]}) + "\n")
    stats = ingest(_cfg(source="conversations", path=str(src)), 0, tmp_path / "raw")
    assert stats["queries"] == 1 and stats["conversations"] == 1 and stats["judgments"] == {"all": 1}
    assert io.read_queries(tmp_path / "raw" / "queries.jsonl") == {
        "c1::1": {"text": "why do cats purr", "metadata": {"conversation_id": "c1", "turn": 1}}}


def test_documents_with_llm_queries_never_write_the_api_key(tmp_path, monkeypatch, caplog):
    from llm_stub import StubServer

    secret = "sk-test-PLANTED-7f3a9c1e"
    monkeypatch.setenv("RAGTUNE_TEST_KEY", secret)
    monkeypatch.chdir(tmp_path)  # the query cache goes to .cache/querygen in the working directory
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a", "b", "c"):
        (docs / f"{name}.txt").write_text(f"Document {name} explains how the {name} widget stores its data. "
                                          f"It keeps a journal and replays it after a crash.")
    with StubServer() as srv:
        cfg = _cfg(source="documents", path=str(docs), generator="llm", queries_per_chunk=2)
        cfg["llm"].update(base_url=srv.base_url, api_key_env="RAGTUNE_TEST_KEY", max_retries=1)
        with caplog.at_level("DEBUG"):
            stats = ingest(cfg, 0, tmp_path / "raw")
            io.write_json(tmp_path / "metrics" / "ingest.json", stats)
        assert all(r["headers"]["Authorization"] == f"Bearer {secret}" for r in srv.requests)
        assert len(srv.requests) == 3
        ingest(cfg, 0, tmp_path / "raw2")
        assert len(srv.requests) == 3  # the rerun is served from .cache/querygen
    assert stats["queries"] == 6 and stats["generation"]["bad_response"] == 0
    assert len(list((tmp_path / ".cache" / "querygen").rglob("*.json"))) == 3
    written = [p for p in tmp_path.rglob("*") if p.is_file() and docs not in p.parents]
    assert len(written) >= 10
    for p in written:
        assert secret not in p.read_text(errors="replace"), p
    assert secret not in caplog.text and secret not in json.dumps(stats)
    assert (tmp_path / "raw" / "queries.jsonl").read_bytes() == (tmp_path / "raw2" / "queries.jsonl").read_bytes()


def test_pydoc_small_is_consistent_and_deterministic(tmp_path):
    cfg = _cfg(max_passages=60, max_queries=20)
    stats = ingest(cfg, 7, tmp_path / "a")
    ingest(cfg, 7, tmp_path / "b")
    assert stats["documents"] == 60 and stats["queries"] == 20 and stats["judgments"] == {"all": 20}
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/all.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


BOM = "\ufeff"
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("corpus, queries, qrels, message", [
    ([{"_id": "doc 1", "text": "Cats purr."}], None, None,
     r"corpus.jsonl:1: field '_id': id 'doc 1' contains whitespace"),
    (None, [{"_id": "q1", "text": "a"}, {"_id": "q 2", "text": "b"}], None,
     r"queries.jsonl:2: field '_id': id 'q 2' contains whitespace"),
    (None, None, {"test": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td 2\t1\n"},
     r"qrels/test.tsv:3: field 'corpus-id': id 'd 2' contains whitespace"),
])
def test_beir_ids_with_whitespace_are_refused_at_ingest(tmp_path, corpus, queries, qrels, message):
    src = _beir(tmp_path / "src", corpus=corpus, queries=queries, qrels=qrels)
    with pytest.raises(UserError, match=message):
        ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_beir_non_utf8_byte_is_one_line_before_anything_is_written(tmp_path):
    src = _beir(tmp_path / "src")
    (src / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "why do cats purr"}\n'
                                        b'{"_id": "q2", "text": "caf\xe9 dogs"}\n')
    with pytest.raises(UserError, match=r"queries.jsonl:2: not UTF-8: byte 0xe9 at byte offset 68; re-encode") as e:
        ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
    # The fix the message gives works.
    command = re.search(r"\(e\.g\. (iconv .*)\)$", str(e.value)).group(1)
    subprocess.run(command, shell=True, cwd=src, check=True)
    (src / "fixed.jsonl").replace(src / "queries.jsonl")
    ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")
    assert io.read_queries(tmp_path / "raw" / "queries.jsonl")["q2"]["text"] == "caf\u00e9 dogs"


def test_beir_files_with_a_bom_are_read(tmp_path):
    src = _beir(tmp_path / "src")
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        (src / name).write_text(BOM + (src / name).read_text(), encoding="utf-8")
    stats = ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")
    assert stats["documents"] == 2 and stats["judgments"] == {"test": 2}
    assert io.read_corpus(tmp_path / "raw" / "corpus.jsonl")["d1"]["text"] == "Cats purr when content."


def test_beir_trec_qrels_are_ingested(tmp_path):
    src = _beir(tmp_path / "src", qrels={"test": "q1 0 d1 1\nq2 0 d2 1\nq2 0 d1 0\n"})
    stats = ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")
    assert stats["judgments"] == {"test": 3}
    assert io.read_qrels(tmp_path / "raw" / "qrels" / "test.tsv")[0] == {"q1": {"d1": 1}, "q2": {"d2": 1, "d1": 0}}
    assert (tmp_path / "raw" / "qrels" / "test.tsv").read_text().startswith("query-id\tcorpus-id\tscore\n")


def test_beir_fractional_score_is_refused(tmp_path):
    src = _beir(tmp_path / "src", qrels={"test": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0.5\n"})
    with pytest.raises(UserError, match=r"qrels/test.tsv:3: field 'score': '0.5' is not a whole number"):
        ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")


def test_beir_unknown_split_name_is_refused_at_ingest(tmp_path):
    src = _beir(tmp_path / "src", qrels={"test": "q1\td1\t1\n", "heldout": "q2\td2\t1\n"})
    with pytest.raises(UserError) as e:
        ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")
    assert str(e.value) == (f"{src / 'qrels'}/heldout.tsv: unknown split name 'heldout'; allowed: train, val, "
                            f"valid (= val), validation (= val), dev (= val), test, all")
    assert not (tmp_path / "raw").exists()


def test_very_long_documents_are_cut_and_counted(tmp_path, caplog):
    long_text = "word " * (io.MAX_TEXT_CHARS // 5) + "tail beyond the cap"
    src = _beir(tmp_path / "src", corpus=[{"_id": "d1", "text": long_text},
                                          {"_id": "d2", "title": "", "text": "Dogs bark at strangers."}])
    with caplog.at_level("WARNING"):
        stats = ingest(_cfg(source="beir", path=str(src)), 0, tmp_path / "raw")
    assert stats["truncated_documents"] == 1
    corpus = io.read_corpus(tmp_path / "raw" / "corpus.jsonl")
    assert corpus["d1"]["text"] == long_text[:io.MAX_TEXT_CHARS] and corpus["d2"]["text"] == "Dogs bark at strangers."
    assert f"1 document(s) longer than {io.MAX_TEXT_CHARS} characters were cut" in caplog.text and "d1" in caplog.text
    stats = ingest(_cfg(source="beir", path=str(_beir(tmp_path / "ok"))), 0, tmp_path / "raw2")
    assert stats["truncated_documents"] == 0


def _prose(topic: str) -> str:
    return " ".join(f"The {topic} module number {i} keeps a journal of {topic} events and replays it after a "
                    f"crash." for i in range(8))


def test_documents_binary_files_are_skipped_and_counted(tmp_path, caplog):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(_prose("storage"))
    (docs / "zeros.txt").write_bytes(b"\0" * 4096)
    (docs / "archive.txt").write_bytes(gzip.compress(b"hello"))
    (docs / "notes.txt.gz").write_bytes(gzip.compress(b"hello"))
    with caplog.at_level("WARNING"):
        stats = ingest(_cfg(source="documents", path=str(docs)), 0, tmp_path / "raw")
    assert stats["files"] == 1 and stats["skipped_files"] == {"binary": 2, "other_suffix": 1}
    assert "skipped 2 binary file(s)" in caplog.text and "zeros.txt" in caplog.text
    assert {d.split("#")[0] for d in io.read_corpus(tmp_path / "raw" / "corpus.jsonl")} == {"a.txt"}


def test_documents_non_utf8_text_is_one_line(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_bytes(b"First line.\nCaf\xe9 au lait.\n")
    with pytest.raises(UserError, match=r"a.txt:2: not UTF-8: byte 0xe9 at byte offset 15; re-encode"):
        ingest(_cfg(source="documents", path=str(docs)), 0, tmp_path / "raw")


def test_documents_with_a_bom_per_file_kind(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(BOM + _prose("storage"), encoding="utf-8")
    (docs / "b.md").write_text(BOM + "# B\n\n" + _prose("network"), encoding="utf-8")
    (docs / "c.html").write_text(BOM + "<html><title>C</title><p>" + _prose("billing") + "</p></html>",
                                 encoding="utf-8")
    (docs / "d.jsonl").write_text(BOM + json.dumps({"_id": "x", "title": "D", "text": _prose("login")}) + "\n",
                                  encoding="utf-8")
    stats = ingest(_cfg(source="documents", path=str(docs), chunk_size=2000, chunk_overlap=0), 0, tmp_path / "raw")
    corpus = io.read_corpus(tmp_path / "raw" / "corpus.jsonl")
    assert stats["files"] == 4 and sorted(corpus) == ["a.txt#0", "b.md#0", "c.html#0", "d.jsonl:x#0"]
    assert not any(BOM in d["title"] + d["text"] for d in corpus.values())
    assert corpus["c.html#0"]["title"] == "C"


def test_documents_ids_never_hold_whitespace(tmp_path):
    docs = tmp_path / "docs"
    (docs / "my guide").mkdir(parents=True)
    (docs / "my guide" / "set up.md").write_text(_prose("storage"))
    (docs / "100%.txt").write_text(_prose("network"))
    ingest(_cfg(source="documents", path=str(docs), chunk_size=2000, chunk_overlap=0), 0, tmp_path / "raw")
    corpus = io.read_corpus(tmp_path / "raw" / "corpus.jsonl")
    assert sorted(corpus) == ["100%25.txt#0", "my%20guide/set%20up.md#0"]
    sources = {q["metadata"]["source"] for q in io.read_queries(tmp_path / "raw" / "queries.jsonl").values()}
    assert sources <= {"my guide/set up.md", "100%.txt"}  # metadata keeps the real path
    (docs / "t.jsonl").write_text(json.dumps({"_id": "ticket 17", "text": _prose("login")}) + "\n")
    with pytest.raises(UserError, match=r"t.jsonl:1: field '_id': id 'ticket 17' contains whitespace"):
        ingest(_cfg(source="documents", path=str(docs)), 0, tmp_path / "raw")


def test_documents_default_folder_placeholder_is_not_a_document(tmp_path):
    """The project's own data/input holds only a placeholder: with `source: documents` it must not become
    a document (and a query)."""
    docs = tmp_path / "input"
    shutil.copytree(ROOT / "data" / "input", docs)
    with pytest.raises(UserError, match=r"input: no documents"):
        ingest(_cfg(source="documents", path=str(docs)), 0, tmp_path / "raw")
    (docs / "guide.md").write_text(_prose("storage"))
    ingest(_cfg(source="documents", path=str(docs)), 0, tmp_path / "raw")
    queries = io.read_queries(tmp_path / "raw" / "queries.jsonl")
    assert {q["metadata"]["source"] for q in queries.values()} == {"guide.md"}


def test_conversations_bom_is_accepted_and_id_with_whitespace_refused(tmp_path):
    src = tmp_path / "conv"
    src.mkdir()
    (src / "corpus.jsonl").write_text(BOM + '{"_id": "d1", "text": "Cats purr."}\n', encoding="utf-8")
    turn = {"speaker": "user", "text": "why do cats purr", "relevant": ["d1"]}
    (src / "conversations.jsonl").write_text(BOM + json.dumps({"id": "c1", "turns": [turn]}) + "\n"
                                             + json.dumps({"id": "chat 2", "turns": [turn]}) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"conversations.jsonl:2: field 'id': id 'chat 2' contains whitespace"):
        ingest(_cfg(source="conversations", path=str(src)), 0, tmp_path / "raw")
    (src / "conversations.jsonl").write_text(BOM + json.dumps({"id": "c1", "turns": [turn]}) + "\n", encoding="utf-8")
    assert ingest(_cfg(source="conversations", path=str(src)), 0, tmp_path / "raw")["queries"] == 1  # BOMs accepted
