import pytest

from ragtune.errors import UserError
from ragtune.params import defaults
from ragtune.splits import split_queries

CFG = dict(defaults()["prepare"])  # val_fraction 0.1, test_fraction 0.2, no group_by, no test_split


def _queries(n, group=None):
    return {f"q{i}": {"text": f"question number {i}", "metadata": {"conv": f"c{i // 3}"} if group else {}}
            for i in range(n)}


def _qrels(qids):
    return {q: {f"d{q}": 1} for q in qids}


def test_all_is_carved_by_fractions_and_seeded():
    queries = _queries(100)
    splits, stats = split_queries(queries, {"all": _qrels(queries)}, CFG, seed=1)
    assert {s: len(splits[s]) for s in splits} == {"train": 70, "val": 10, "test": 20}
    assert stats["carved"] == ["val", "test"]
    assert stats["test"] == {"queries": 20, "judgments": 20, "positives": 20, "groups": 20}
    again, _ = split_queries(queries, {"all": _qrels(queries)}, CFG, seed=1)
    other, _ = split_queries(queries, {"all": _qrels(queries)}, CFG, seed=2)
    assert again == splits and other["test"].keys() != splits["test"].keys()


def test_given_test_stays_and_val_is_carved_from_train():
    queries = _queries(50)
    train, test = [f"q{i}" for i in range(40)], [f"q{i}" for i in range(40, 50)]
    splits, stats = split_queries(queries, {"train": _qrels(train), "test": _qrels(test)}, CFG, seed=0)
    assert set(splits["test"]) == set(test)
    assert len(splits["val"]) == 4 and set(splits["val"]) <= set(train)
    assert stats["carved"] == ["val"]


def test_dev_is_val_and_nothing_is_carved_when_all_given():
    queries = _queries(10)
    given = {"train": _qrels(["q0", "q1", "q2"]), "dev": _qrels(["q3"]), "test": _qrels(["q4"])}
    splits, stats = split_queries(queries, given, CFG, seed=0)
    assert list(splits["val"]) == ["q3"] and stats["carved"] == []


def test_groups_never_span_two_splits():
    queries = _queries(90, group=True)
    cfg = dict(CFG, group_by="conv")
    splits, stats = split_queries(queries, {"all": _qrels(queries)}, cfg, seed=3)
    owner = {}
    for s, qs in splits.items():
        for q in qs:
            assert owner.setdefault(queries[q]["metadata"]["conv"], s) == s
    assert stats["train"]["groups"] + stats["val"]["groups"] + stats["test"]["groups"] == 30


def test_user_given_group_overlap_is_an_error():
    queries = _queries(6, group=True)  # q0-q2 are conversation c0
    given = {"train": _qrels(["q0", "q1"]), "test": _qrels(["q2", "q3"])}
    with pytest.raises(UserError, match=r"qrels/test.tsv and qrels/train.tsv: .*'c0'"):
        split_queries(queries, given, dict(CFG, group_by="conv"), seed=0)


def test_user_given_id_overlap_is_an_error():
    queries = _queries(4)
    with pytest.raises(UserError, match=r"query id\(s\) in both splits, e.g. 'q1'"):
        split_queries(queries, {"train": _qrels(["q0", "q1"]), "test": _qrels(["q1"])}, CFG, seed=0)


def test_no_positive_and_leaking_train_queries_are_dropped_and_counted():
    queries = _queries(6)
    queries["q1"]["text"] = "  Question NUMBER 4 "  # the test query q4's text, other case/spacing
    queries["q2"]["text"] = "text of doc five"     # the text of test positive dq5
    queries["d5"] = {"text": "a query whose id is a test positive document", "metadata": {}}
    corpus = {"dq5": {"title": "", "text": "Text of  doc five"}}
    given = {"train": {"q0": {"d0": 1}, "q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 0}, "d5": {"x": 1}},
             "test": {"q4": {"dq4": 1, "d5": 2, "dq5": 1}}}
    splits, stats = split_queries(queries, given, dict(CFG, val_fraction=0.0), seed=0, corpus=corpus)
    assert list(splits["train"]) == ["q0"]
    assert stats["dropped"]["no_positive"] == 1            # q3
    assert stats["dropped"]["duplicate_of_eval_text"] == 1  # q1
    assert stats["dropped"]["test_positive_as_query"] == 2  # d5 by id, q2 by text
    assert stats["train"]["queries"] == 1


def test_unknown_split_name_is_an_error():
    with pytest.raises(UserError, match="unknown split name 'holdout'"):
        split_queries(_queries(2), {"holdout": _qrels(["q0"])}, CFG, seed=0)


def test_all_mixed_with_train_is_an_error():
    with pytest.raises(UserError, match="either qrels/all.tsv"):
        split_queries(_queries(2), {"all": _qrels(["q0"]), "train": _qrels(["q1"])}, CFG, seed=0)


def _conv_queries(n):
    return {f"q{i}": {"text": f"question number {i}", "metadata": {"conversation_id": f"c{i // 4}", "turn": i % 4}}
            for i in range(n)}


def test_conversation_id_is_the_default_group():
    queries = _conv_queries(80)
    splits, stats = split_queries(queries, {"all": _qrels(queries)}, CFG, seed=5)
    assert stats["group_by"] == "conversation_id"
    owner = {}
    for s, qs in splits.items():
        for q in qs:
            assert owner.setdefault(queries[q]["metadata"]["conversation_id"], s) == s
    assert sum(stats[s]["groups"] for s in ("train", "val", "test")) == 20
    # Only when every query has one; an explicit group_by wins.
    queries["q0"]["metadata"] = {}
    assert split_queries(queries, {"all": _qrels(queries)}, CFG, seed=5)[1]["group_by"] is None
    assert split_queries(_conv_queries(8), {"all": _qrels(_conv_queries(8))}, dict(CFG, group_by="turn"),
                         seed=5)[1]["group_by"] == "turn"


def test_test_split_names_the_split_to_evaluate_on():
    queries = _queries(60)
    given = {"train": _qrels([f"q{i}" for i in range(40)]), "dev": _qrels([f"q{i}" for i in range(40, 50)]),
             "test": _qrels([f"q{i}" for i in range(50, 60)])}
    splits, stats = split_queries(queries, given, dict(CFG, test_split="dev"), seed=0)
    assert set(splits["test"]) == {f"q{i}" for i in range(40, 50)}
    assert not set(splits["val"]) & set(given["test"]) and set(splits["val"]) <= set(given["train"])
    assert stats["left_out_splits"] == ["test"] and stats["carved"] == ["val"]
    # null: the source's own test split
    splits, _ = split_queries(queries, given, CFG, seed=0)
    assert set(splits["test"]) == set(given["test"])


def test_requested_split_that_does_not_exist_is_an_error():
    queries = _queries(10)
    given = {"train": _qrels(["q0", "q1"]), "test": _qrels(["q2"])}
    with pytest.raises(UserError, match=r"params.yaml: prepare.test_split: the data has no split 'dev' "
                                        r"\(qrels/dev.tsv\); its splits are: test, train"):
        split_queries(queries, given, dict(CFG, test_split="dev"), seed=0)
    with pytest.raises(UserError, match=r"prepare.test_split: 'all' holds every query"):
        split_queries(queries, {"all": _qrels(["q0"])}, dict(CFG, test_split="all"), seed=0)


def test_train_queries_subsamples_train_only_seeded():
    queries = _queries(100)
    full, _ = split_queries(queries, {"all": _qrels(queries)}, CFG, seed=1)
    few, stats = split_queries(queries, {"all": _qrels(queries)}, dict(CFG, train_queries=7), seed=1)
    assert len(few["train"]) == 7 and set(few["train"]) <= set(full["train"])
    assert few["val"] == full["val"] and few["test"] == full["test"]  # the same questions to compare on
    assert stats["train_queries_before_limit"] == 70 and stats["train"]["queries"] == 7
    assert split_queries(queries, {"all": _qrels(queries)}, dict(CFG, train_queries=7), seed=1)[0] == few
    none, _ = split_queries(queries, {"all": _qrels(queries)}, dict(CFG, train_queries=0), seed=1)
    assert none["train"] == {} and none["test"] == full["test"]
