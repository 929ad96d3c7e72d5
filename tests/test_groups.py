import json

import pytest

from ragtune.errors import UserError
from ragtune.groups import read_groups_folder, text_id
from ragtune.ingest import ingest
from ragtune.params import defaults


def _folder(tmp_path, **files):
    folder = tmp_path / "groups"
    folder.mkdir(exist_ok=True)
    for name, rows in files.items():
        (folder / f"{name}.jsonl").write_text(
            "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return folder


def test_texts_become_documents_with_stable_ids_and_graded_judgments(tmp_path):
    folder = _folder(tmp_path, train=[
        {"query": "how do cats purr", "pos": ["Cats purr with their larynx."], "neg": ["Dogs bark.", "Fish swim."],
         "prompt": "Represent this query: ", "type": "retrieval"},
        {"query": "why do dogs bark", "pos": ["Dogs bark."], "neg": ["  Cats purr with their larynx. "]}],
        test=[{"query": "do fish sleep", "positive": ["Fish rest but do not close their eyes."],
               "negative": ["Fish swim."]}])
    corpus, queries, qrels, stats = read_groups_folder(folder)
    cat, dog, fish = (text_id("d", t) for t in ("Cats purr with their larynx.", "Dogs bark.", "Fish swim."))
    assert len(corpus) == 4 and corpus[dog] == {"title": "", "text": "Dogs bark."}  # identical texts merged
    assert stats["repeated_document_texts"] == 3 and stats["grades"] == "binary"
    q1, q2 = text_id("q", "how do cats purr"), text_id("q", "why do dogs bark")
    assert qrels["train"] == {q1: {cat: 1, dog: 0, fish: 0}, q2: {dog: 1, cat: 0}}
    assert queries[q1] == {"text": "how do cats purr", "metadata": {"prompt": "Represent this query: ",
                                                                    "type": "retrieval"}}
    assert list(qrels["test"].values()) == [{text_id("d", "Fish rest but do not close their eyes."): 1, fish: 0}]
    # the same data gives the same ids on every run
    assert read_groups_folder(folder)[0].keys() == corpus.keys()


def test_repeated_query_lines_are_merged_and_a_positive_wins(tmp_path):
    folder = _folder(tmp_path, train=[{"query": "q", "pos": ["a"], "neg": ["b"]},
                                      {"query": "q", "pos": ["b"], "neg": ["c", "a"]}])
    _, queries, qrels, stats = read_groups_folder(folder)
    assert len(queries) == 1 and stats["merged_query_lines"] == 1
    assert list(qrels["train"].values()) == [{text_id("d", "a"): 1, text_id("d", "b"): 1, text_id("d", "c"): 0}]


def test_integer_pos_scores_are_grades_else_teacher_scores(tmp_path):
    folder = _folder(tmp_path, train=[{"query": "q", "pos": ["a", "b"], "pos_scores": [3, 1.0],
                                       "neg": ["c"], "neg_scores": [0.2]}])
    _, _, qrels, stats = read_groups_folder(folder)
    assert stats["grades"] == "pos_scores"
    assert list(qrels["train"].values()) == [{text_id("d", "a"): 3, text_id("d", "b"): 1, text_id("d", "c"): 0}]
    folder = _folder(tmp_path, train=[{"query": "q", "pos": ["a", "b"], "pos_scores": [3, 0.93]}])
    _, _, qrels, stats = read_groups_folder(folder)
    assert stats["grades"] == "binary" and set(list(qrels["train"].values())[0].values()) == {1}


def test_query_in_two_splits_is_an_error_unless_not_strict(tmp_path):
    folder = _folder(tmp_path, train=[{"query": "q", "pos": ["a"]}, {"query": "r", "pos": ["b"]}],
                     test=[{"query": "q", "pos": ["a"], "neg": ["b"]}])
    with pytest.raises(UserError, match=r"test.jsonl:1: field 'query': the same query text is in train.jsonl:1"):
        read_groups_folder(folder)
    _, queries, qrels, stats = read_groups_folder(folder, strict=False)
    assert stats["queries_in_two_splits_dropped"] == 1
    assert list(qrels["train"]) == [text_id("q", "r")] and list(qrels["test"]) == [text_id("q", "q")]


@pytest.mark.parametrize("row, message", [
    ({"pos": ["a"]}, r"train.jsonl:2: field 'query': missing$"),
    ({"query": "  ", "pos": ["a"]}, r"train.jsonl:2: field 'query': expected a non-empty string"),
    ({"query": "q", "pos": []}, r"train.jsonl:2: field 'pos': missing or empty"),
    ({"query": "q", "neg": ["a"]}, r"train.jsonl:2: field 'pos': missing or empty"),
    ({"query": "q", "positive": []}, r"train.jsonl:2: field 'positive': missing or empty"),
    ({"query": "q", "pos": ["a", 3]}, r"train.jsonl:2: field 'pos\[1\]': expected a non-empty string, got int"),
    ({"query": "q", "pos": "a"}, r"train.jsonl:2: field 'pos': expected a list of strings, got str"),
    ({"query": "q", "pos": ["a"], "neg": [None]}, r"field 'neg\[0\]': expected a non-empty string, got NoneType"),
    ({"query": "q", "pos": ["a"], "positive": ["b"]}, r"give either pos/neg or positive/negative"),
    ({"query": "q", "pos": ["a"], "pos_scores": [1, 2]}, r"field 'pos_scores': expected a list of 1 numbers"),
    ({"query": "q", "pos": ["a"], "pos_scores": ["high"]}, r"field 'pos_scores\[0\]': expected a number, got 'high'"),
    ({"query": "q", "pos": ["a"], "neg": ["b"], "neg_scores": [True]}, r"field 'neg_scores\[0\]': expected a number"),
    ({"query": "q", "pos": ["a"], "prompt": 3}, r"train.jsonl:2: field 'prompt': expected a string, got int"),
    ("[1, 2]", r"train.jsonl:2: expected a JSON object"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, row, message):
    folder = _folder(tmp_path, train=[{"query": "ok", "pos": ["fine"]}, row])
    with pytest.raises(UserError, match=message) as e:
        read_groups_folder(folder)
    assert "\n" not in str(e.value)


def test_folder_without_split_files(tmp_path):
    folder = _folder(tmp_path, toy_finetune_data=[{"query": "q", "pos": ["a"]}])
    with pytest.raises(UserError, match=r"no split files; expected train.jsonl .* found jsonl files: "
                                        r"toy_finetune_data.jsonl"):
        read_groups_folder(folder)
    _folder(tmp_path, val=[{"query": "q", "pos": ["a"]}], dev=[{"query": "r", "pos": ["a"]}])
    with pytest.raises(UserError, match=r"split 'val' given twice \(dev.jsonl and val.jsonl\)"):
        read_groups_folder(folder)


def test_ingest_writes_beir(tmp_path):
    from ragtune import io

    folder = _folder(tmp_path, train=[{"query": "how do cats purr", "pos": ["Cats purr."], "neg": ["Dogs bark."]}],
                     dev=[{"query": "why do dogs bark", "pos": ["Dogs bark."]}])
    cfg = dict(defaults()["ingest"], source="groups", path=str(folder))
    stats = ingest(cfg, seed=0, out_dir=tmp_path / "raw")
    assert stats["documents"] == 2 and stats["judged_queries"] == {"dev": 1, "train": 1}
    assert len(io.read_corpus(tmp_path / "raw" / "corpus.jsonl")) == 2
    assert sorted(p.name for p in (tmp_path / "raw" / "qrels").iterdir()) == ["dev.tsv", "train.tsv"]


def test_stage_prints_one_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    folder = _folder(tmp_path, train=[{"query": "q", "pos": ["a"]}, {"query": "r", "pos": ["b"], "pos_scores": [0.5, 1]}])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"ingest": {"source": "groups", "path": str(folder)}}))
    proc = subprocess.run([sys.executable, str(root / "stages" / "ingest.py")], cwd=tmp_path, capture_output=True,
                          text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {folder / 'train.jsonl'}:2: field 'pos_scores': expected a list of 1 numbers (one per 'pos' "
        f"text), got 2 scores")
    assert "Traceback" not in proc.stderr and not (tmp_path / "data").exists()
