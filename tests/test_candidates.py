import pytest

from ragtune.candidates import bm25_scores, candidates, markdown, view

CORPUS = {"a": {"title": "", "text": "cats purr when content"}, "b": {"title": "", "text": "dogs bark at cats"},
          "c": {"title": "", "text": "fish swim"}, "z": {"title": "", "text": "cats cats cats purr purr"}}
QRELS = {"q1": {"a": 1, "b": 0, "c": 0}, "q2": {"c": 1, "b": 0}}


def test_each_query_ranks_only_its_given_candidates():
    cands = candidates(QRELS)
    assert cands == {"q1": ["a", "b", "c"], "q2": ["c", "b"]}
    run = bm25_scores(cands, {"q1": "why do cats purr", "q2": "do fish swim"}, CORPUS, "en")
    assert set(run["q1"]) == {"a", "b", "c"}  # z would outrank a in retrieval, but it is no candidate of q1
    assert view({"bm25": run}, QRELS)["bm25"] == {"MAP": 1.0, "MRR@10": 1.0, "nDCG@10": 1.0}


def test_map_and_mrr_over_candidates():
    run = {"q1": {"b": 3.0, "a": 2.0, "c": 1.0}, "q2": {"c": 1.0, "b": 0.5}}
    m = view({"x": run}, QRELS)["x"]
    assert m["MAP"] == pytest.approx((0.5 + 1.0) / 2) and m["MRR@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert "| x | 0.7500 | 0.7500 |" in markdown({"x": m}, 2)
