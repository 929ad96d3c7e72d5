"""ragtune.metrics against values computed by hand (arithmetic in the comments)."""
import math

import pytest
import pytrec_eval

from ragtune.errors import UserError
from ragtune.metrics import evaluate_run, metric_names, score_ranked_lists
from ragtune.params import defaults

CFG = {"ndcg_cutoffs": [1, 3], "mrr_cutoffs": [1, 3, 10], "recall_cutoffs": [1, 3, 100],
       "precision_cutoffs": [1, 3], "hit_cutoffs": [1, 3], "map_cutoff": 3}
LOG2_3 = math.log2(3)


def one(run_docs, judged, cfg=CFG):
    means, per_query = evaluate_run({"q": run_docs}, {"q": judged}, cfg)
    assert means == per_query["q"]
    return means


def test_metric_names_order_and_defaults():
    assert metric_names(CFG) == ["nDCG@1", "nDCG@3", "MRR@1", "MRR@3", "MRR@10", "R@1", "R@3", "R@100",
                                 "P@1", "P@3", "F1@1", "F1@3", "MAP@3", "Hit@1", "Hit@3"]
    names = metric_names(defaults()["evaluate"])  # what the evaluate stage computes by default
    assert names[:5] == ["nDCG@1", "nDCG@3", "nDCG@5", "nDCG@10", "nDCG@100"]
    assert "MAP@100" in names and "MRR@10" in names and "R@100" in names
    means, _ = evaluate_run({"q": {"a": 1.0}}, {"q": {"a": 1}}, defaults()["evaluate"])
    assert list(means) == names
    # Only the families asked for: a caller that wants nDCG@10 alone gets nDCG@10 alone.
    assert list(evaluate_run({"q": {"a": 1.0}}, {"q": {"a": 1}}, {"ndcg_cutoffs": [10]})[0]) == ["nDCG@10"]


def test_graded_ndcg_and_binary_rest():
    # judged: a=2, b=1, c=0 (c is not relevant for binary metrics). Ranking: b, x, a, c.
    m = one({"b": 0.9, "x": 0.8, "a": 0.7, "c": 0.6}, {"a": 2, "b": 1, "c": 0})
    # DCG@1 = 1/log2(2) = 1; ideal@1 = 2 (a first): linear gain, not 2^g - 1 (which would give 1/3).
    assert m["nDCG@1"] == pytest.approx(0.5)
    # DCG@3 = 1/log2(2) + 0/log2(3) + 2/log2(4) = 1 + 1 = 2; ideal@3 = 2/1 + 1/log2(3) = 2.6309
    assert m["nDCG@3"] == pytest.approx(2 / (2 + 1 / LOG2_3))  # 0.76018
    assert m["MRR@1"] == 1.0  # b at rank 1
    assert m["R@1"] == 0.5 and m["R@3"] == 1.0  # relevant {a, b}: 1/2, 2/2
    assert m["P@1"] == 1.0 and m["P@3"] == pytest.approx(2 / 3)
    # F1@1 = 2*1*0.5/(1+0.5) = 2/3; F1@3 = 2*(2/3)*1/(2/3+1) = (4/3)/(5/3) = 0.8
    assert m["F1@1"] == pytest.approx(2 / 3) and m["F1@3"] == pytest.approx(0.8)
    # AP@3: relevant at ranks 1 and 3 -> (1/1 + 2/3) / 2 relevant = 0.8333
    assert m["MAP@3"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["Hit@1"] == 1.0


def test_ties_broken_by_docid_descending():
    # All scores equal: trec_eval orders c, b, a (doc id descending) -> b at rank 2.
    for order in (["a", "b", "c"], ["c", "b", "a"], ["b", "a", "c"]):
        m = one({d: 1.0 for d in order}, {"b": 1})
        assert m["MRR@3"] == 0.5 and m["MRR@1"] == 0.0 and m["Hit@1"] == 0.0 and m["P@1"] == 0.0
    # String order, not numeric: '9' > '10', so '9' ranks first and '10' second.
    assert one({"10": 1.0, "9": 1.0}, {"10": 1})["MRR@3"] == 0.5
    # A higher score always wins over the tie-break.
    assert one({"a": 1.0, "b": 1.0 + 1e-9}, {"a": 1})["MRR@3"] == 0.5


def test_missing_and_empty_queries_score_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    for run in ({"q1": {"a": 1.0}}, {"q1": {"a": 1.0}, "q2": {}},
                {"q1": {"a": 1.0}, "q3": {"b": 1.0}}):  # q3 is not judged: ignored
        means, per_query = evaluate_run(run, qrels, CFG)
        assert set(per_query) == {"q1", "q2"}
        assert all(v == 0.0 for v in per_query["q2"].values())
        assert means["nDCG@1"] == 0.5  # (1 + 0) / 2 queries, not 1/1
        assert means["R@100"] == 0.5
    means, per_query = evaluate_run({}, qrels, CFG)
    assert all(v == 0.0 for v in means.values()) and len(per_query) == 2


def test_judged_doc_absent_from_corpus_counts_in_denominators():
    # 'ghost' is judged relevant but no system can retrieve it.
    m = one({"a": 0.9, "x": 0.5}, {"a": 1, "ghost": 1})
    assert m["R@3"] == 0.5 and m["R@100"] == 0.5  # 1 of 2 relevant
    assert m["nDCG@3"] == pytest.approx(1 / (1 + 1 / LOG2_3))  # DCG 1; ideal 1 + 1/log2(3) -> 0.6131
    assert m["MAP@3"] == 0.5  # (1/1) / 2 relevant
    assert m["F1@1"] == pytest.approx(2 / 3)  # P@1 = 1, R@1 = 0.5


def test_mrr_cutoff_matches_truncated_run():
    docs = {f"d{i:02d}": 1.0 - i / 100 for i in range(1, 13)}  # d01 best ... d12 worst
    for rank in (1, 3, 4, 10, 11):
        m = one(docs, {f"d{rank:02d}": 1})
        # rank 3: MRR@1 = 0, MRR@3 = 1/3; rank 10: MRR@10 = 0.1 exactly at the edge; rank 11: 0
        assert m["MRR@1"] == (1.0 if rank == 1 else 0.0)
        assert m["MRR@3"] == pytest.approx(1 / rank if rank <= 3 else 0.0)
        assert m["MRR@10"] == pytest.approx(1 / rank if rank <= 10 else 0.0)
        # Same as trec_eval's recip_rank on the run cut to its top 10.
        top10 = dict(sorted(docs.items(), key=lambda kv: kv[1], reverse=True)[:10])
        rr = pytrec_eval.RelevanceEvaluator({"q": {f"d{rank:02d}": 1}}, {"recip_rank"}).evaluate({"q": top10})
        assert m["MRR@10"] == rr["q"]["recip_rank"]


def test_hit_needs_relevance_at_least_one():
    m = one({"a": 0.9, "x": 0.8, "b": 0.7}, {"a": 0, "b": 1})  # a is judged non-relevant
    assert m["Hit@1"] == 0.0 and m["Hit@3"] == 1.0
    assert m["P@3"] == pytest.approx(1 / 3) and m["MRR@3"] == pytest.approx(1 / 3)


def test_means_average_per_query_rows():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}
    run = {"q1": {"a": 1.0}, "q2": {"x": 1.0, "b": 0.5}, "q3": {"x": 1.0}}
    means, per_query = evaluate_run(run, qrels, CFG)
    assert means["MRR@3"] == pytest.approx((1 + 0.5 + 0) / 3)
    for name in means:
        assert means[name] == pytest.approx(sum(r[name] for r in per_query.values()) / 3)


def test_no_judged_queries_is_a_user_error():
    with pytest.raises(UserError, match="no judged queries"):
        evaluate_run({"q": {"a": 1.0}}, {"q": {}}, CFG)


def _ndcg(scores: list[float], labels: list[int]) -> float:
    """nDCG@10 of one list given in any order: score_ranked_lists wants the relevant ones first."""
    pos = [s for s, rel in zip(scores, labels) if rel]
    neg = [s for s, rel in zip(scores, labels) if not rel]
    return score_ranked_lists([(pos + neg, len(pos))])["ndcg"]


def test_ranked_lists_ndcg():
    assert _ndcg([3, 2, 1], [1, 0, 0]) == 1.0
    assert _ndcg([1, 2, 3], [1, 0, 0]) == pytest.approx(0.5)
    assert _ndcg([0.1] * 12 + [0.0], [0] * 12 + [1]) == 0.0
    assert _ndcg([3, 2, 1], [0, 0, 0]) == 0.0
    assert _ndcg([1, 1, 1], [1, 0, 0]) == pytest.approx(0.5)  # ties: no credit for input order


def test_ranked_lists_match_evaluate_run():
    """Val (lists) and test (runs) are scored by the same code: the same ranking gives the same numbers."""
    lists = [([0.9, 0.2, 0.5, 0.5], 2), ([0.1, 0.3, 0.3, 0.8, 0.0], 1)]
    run = {f"q{i}": {f"d{j}": s for j, s in enumerate(scores)} for i, (scores, _) in enumerate(lists)}
    qrels = {f"q{i}": {f"d{j}": 1 for j in range(n)} for i, (_, n) in enumerate(lists)}
    means, _ = evaluate_run(run, qrels, {"ndcg_cutoffs": [10], "mrr_cutoffs": [10], "recall_cutoffs": [10],
                                         "precision_cutoffs": [10], "map_cutoff": [1000], "hit_cutoffs": [10]})
    got = score_ranked_lists(lists)
    assert got["ndcg"] == pytest.approx(means["nDCG@10"]) and got["mrr"] == pytest.approx(means["MRR@10"])
    assert got["map"] == pytest.approx(means["MAP@1000"])
