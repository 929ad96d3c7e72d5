from ragtune.evaluate import _by_group_means, _group_means, system_name


def test_per_group_means_use_each_querys_metadata():
    per_query = {"bm25": {"q1": {"nDCG@10": 1.0}, "q2": {"nDCG@10": 0.0}, "q3": {"nDCG@10": 0.5}}}
    queries = {"q1": {"metadata": {"domain": "a"}}, "q2": {"metadata": {"domain": "a"}},
               "q3": {"metadata": {"domain": "b"}}}
    groups = _group_means(per_query, queries, "domain")
    assert groups == {"bm25": {"a": {"nDCG@10": 0.5}, "b": {"nDCG@10": 0.5}}}
    assert _by_group_means(groups) == {"a": {"bm25": {"nDCG@10": 0.5}}, "b": {"bm25": {"nDCG@10": 0.5}}}
    assert _group_means(per_query, queries, None) == {}


def test_system_names():
    assert system_name("bm25", "none") == "bm25"
    assert system_name("hybrid", "merged") == "hybrid + rerank:merged"
