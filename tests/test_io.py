import json

import pytest

from ragtune import io
from ragtune.errors import UserError


def test_atomic_output_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "out.json"
    io.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left behind


def test_atomic_dir_replaces_whole_directory(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with io.atomic_output(target, is_dir=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_unwritable_directory_is_a_clear_error(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(UserError, match="cannot create output directory"):
        io.write_json(blocked / "sub" / "out.json", {})


@pytest.mark.parametrize("lines, message", [
    (['{"_id": "d1", "text": "a"}', '{"_id": "d2", "text": "b"'], ":2: malformed JSON"),
    (['{"text": "a"}'], ":1: field '_id': missing"),
    (['{"_id": "d1"}'], ":1: field 'text': missing"),
    (['{"_id": "d1", "text": "a"}', '{"_id": "d1", "text": "b"}'], ":2: field '_id': duplicate id 'd1'"),
    (['{"_id": "d1", "text": "  "}'], ":1: field 'text': empty text for document 'd1'"),
    (['[1, 2]'], ":1: expected a JSON object"),
])
def test_corpus_errors_name_file_line_and_field(tmp_path, lines, message):
    f = tmp_path / "corpus.jsonl"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as e:
        io.read_corpus(f)
    assert str(e.value).startswith(str(f))
    assert message in str(e.value)


def test_corpus_queries_qrels_round_trip(tmp_path):
    corpus = {"d1": {"title": "T", "text": "body"}, "d2": {"title": "", "text": "other"}}
    queries = {"q1": {"text": "what", "metadata": {"domain": "x"}}}
    qrels = {"q1": {"d1": 2, "d2": 0}}
    io.write_corpus(tmp_path / "c.jsonl", corpus)
    io.write_queries(tmp_path / "q.jsonl", queries)
    io.write_qrels(tmp_path / "qrels" / "test.tsv", qrels)
    assert io.read_corpus(tmp_path / "c.jsonl") == corpus
    assert io.read_queries(tmp_path / "q.jsonl") == queries
    assert io.read_qrels(tmp_path / "qrels" / "test.tsv")[0] == qrels
    assert io.doc_text(corpus["d1"]) == "T body" and io.doc_text(corpus["d2"]) == "other"


def test_qrels_errors(tmp_path):
    f = tmp_path / "test.tsv"
    f.write_text("query-id\tcorpus-id\tscore\nq1\td1\tyes\n")
    with pytest.raises(UserError, match=r"test.tsv:2: field 'score': not a number"):
        io.read_qrels(f)
    f.write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(UserError, match=r"test.tsv:2: expected 3 tab-separated columns"):
        io.read_qrels(f)
