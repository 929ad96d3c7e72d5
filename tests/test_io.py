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


BOM = "\ufeff"


@pytest.mark.parametrize("name, reader, lines, field", [
    ("corpus.jsonl", io.read_corpus, ['{"_id": "d1", "text": "a"}', '{"_id": "doc with spaces", "text": "b"}'], "_id"),
    ("queries.jsonl", io.read_queries, ['{"_id": "q1", "text": "a"}', '{"_id": "q\\t2", "text": "b"}'], "_id"),
    ("test.tsv", io.read_qrels, ["query-id\tcorpus-id\tscore", "q1\tdoc one\t1"], "corpus-id"),
    ("test.tsv", io.read_qrels, ["query-id\tcorpus-id\tscore", "q 1\td1\t1"], "query-id"),
])
def test_ids_with_whitespace_are_refused_where_they_enter(tmp_path, name, reader, lines, field):
    f = tmp_path / name
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as e:
        reader(f)
    assert str(e.value).startswith(f"{f}:2: field '{field}': id ")
    assert "contains whitespace, which TREC run files cannot hold" in str(e.value)


@pytest.mark.parametrize("name, reader, lines", [
    ("corpus.jsonl", io.read_corpus, ['{"_id": "d1", "text": "ok"}', '{"_id": "d2", "text": "caf\xe9"}']),
    ("queries.jsonl", io.read_queries, ['{"_id": "q1", "text": "ok"}', '{"_id": "q2", "text": "caf\xe9"}']),
    ("test.tsv", io.read_qrels, ["query-id\tcorpus-id\tscore", "q1\td\xe9\t1"]),
])
def test_a_byte_that_is_not_utf8_names_line_offset_and_fix(tmp_path, name, reader, lines):
    f = tmp_path / name
    data = "\n".join(lines).encode("latin-1") + b"\n"
    f.write_bytes(data)
    offset = data.index(b"\xe9")
    with pytest.raises(UserError) as e:
        reader(f)
    assert str(e.value) == (f"{f}:2: not UTF-8: byte 0xe9 at byte offset {offset}; re-encode the "
                            f"file as UTF-8 (e.g. iconv -f latin1 -t UTF-8 {name} > fixed{f.suffix})")


def test_utf16_is_named_as_such(tmp_path):
    f = tmp_path / "corpus.jsonl"
    f.write_text('{"_id": "d1", "text": "a"}\n', encoding="utf-16")
    with pytest.raises(UserError, match=r"corpus.jsonl:1: UTF-16 text, not UTF-8; re-encode"):
        io.read_corpus(f)


@pytest.mark.parametrize("name, reader, text, expected", [
    ("corpus.jsonl", io.read_corpus, '{"_id": "d1", "text": "a"}\n', {"d1": {"title": "", "text": "a"}}),
    ("queries.jsonl", io.read_queries, '{"_id": "q1", "text": "a"}\n', {"q1": {"text": "a", "metadata": {}}}),
    ("beir.tsv", lambda f: io.read_qrels(f)[0], "query-id\tcorpus-id\tscore\nq1\td1\t1\n", {"q1": {"d1": 1}}),
    ("beir-no-header.tsv", lambda f: io.read_qrels(f)[0], "q1\td1\t1\n", {"q1": {"d1": 1}}),
    ("trec.txt", lambda f: io.read_qrels(f)[0], "q1 0 d1 1\n", {"q1": {"d1": 1}}),
])
def test_a_utf8_bom_is_accepted_silently(tmp_path, name, reader, text, expected):
    f = tmp_path / name
    f.write_text(BOM + text, encoding="utf-8")
    assert reader(f) == expected


@pytest.mark.parametrize("text", [
    "q1 0 d1 1\nq1 0 d2 0\nq2 0 d2 2\n",            # trec_eval's own layout, space separated
    "q1\t0\td1\t1\nq1\t0\td2\t0\nq2\t0\td2\t2\n",   # the same, tab separated
    "q1 Q0 d1 1\r\nq1 Q0 d2 0\r\nq2 Q0 d2 2\r\n",   # Q0 in the iteration column, CRLF
    "q1\td1\t1\t\nq1\td2\t0\nq2\td2\t2 \n",         # BEIR with a stray trailing tab and space
])
def test_trec_qrels_are_read_and_beir_stays(tmp_path, text):
    f = tmp_path / "test.tsv"
    f.write_text(text)
    qrels, lines = io.read_qrels(f)
    assert qrels == {"q1": {"d1": 1, "d2": 0}, "q2": {"d2": 2}}
    assert lines[("q2", "d2")] == 3


def test_qrels_layout_must_not_change_within_a_file(tmp_path):
    f = tmp_path / "test.tsv"
    f.write_text("q1 0 d1 1\nq2\td2\t1\n")
    with pytest.raises(UserError, match=r"test.tsv:2: expected 4 columns like the first judgment \(line 1\), got 3"):
        io.read_qrels(f)


def test_fractional_grades_are_refused_whole_floats_accepted(tmp_path):
    f = tmp_path / "test.tsv"
    f.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1.0\nq1\td2\t0.5\n")
    with pytest.raises(UserError) as e:
        io.read_qrels(f)
    assert str(e.value).startswith(f"{f}:3: field 'score': '0.5' is not a whole number; relevance grades are "
                                   f"integers")
    f.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1.0\nq1\td2\t-1\n")
    assert io.read_qrels(f)[0] == {"q1": {"d1": 1, "d2": -1}}
