import numpy as np
import pytest

from ragtune.errors import UserError
from ragtune.params import defaults
from ragtune.rerank import interpolate, rerank, score_pairs

SECURITY = defaults()["security"]  # the loaders take params["security"] explicitly

CORPUS = {f"d{i}": {"title": "", "text": "the python " + "data " * i} for i in range(6)}
QUERIES = {"q1": "python data", "q2": "file"}


@pytest.fixture(scope="module")
def reranker(tiny_model, tmp_path_factory) -> str:
    from ragtune.train_reranker import convert_to_cross_encoder

    return convert_to_cross_encoder(tiny_model, tmp_path_factory.mktemp("ce") / "model", seed=0, security=SECURITY)


PAIRS = [("python data", "the python"), ("file", "the file error is a very long file error text"),
         ("python", "data data data"), ("a", "b")]


def test_score_pairs_matches_crossencoder_in_input_order(reranker):
    scores = score_pairs(reranker, PAIRS, batch_size=3, max_length=64, security=SECURITY)
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert len(set(scores.tolist())) == 4
    one_by_one = [score_pairs(reranker, [p], batch_size=1, max_length=64, security=SECURITY)[0] for p in PAIRS]
    np.testing.assert_allclose(scores, one_by_one, atol=1e-5)  # padding and sorting change nothing

    import torch
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(reranker, device="cpu").predict([list(p) for p in PAIRS], activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(scores, ce, atol=1e-5)
    assert score_pairs(reranker, [], batch_size=2, security=SECURITY).shape == (0,)


def test_rerank_orders_top_depth_and_keeps_the_rest_below(reranker):
    run = {"q1": {f"d{i}": 10.0 - i for i in range(6)}}
    cache: dict = {}
    out = rerank(run, QUERIES, CORPUS, reranker, depth=3, batch_size=2, max_length=64, cache=cache, security=SECURITY)
    assert set(cache) == {("q1", "d0"), ("q1", "d1"), ("q1", "d2")}
    ranked = sorted(out["q1"], key=lambda d: -out["q1"][d])
    assert set(ranked[:3]) == {"d0", "d1", "d2"} and ranked[3:] == ["d3", "d4", "d5"]
    assert ranked[:3] == sorted(["d0", "d1", "d2"], key=lambda d: -cache[("q1", d)])
    for d in ("d0", "d1", "d2"):
        assert out["q1"][d] == pytest.approx(cache[("q1", d)])


def test_rerank_uses_the_cache_and_scores_each_pair_once(reranker):
    # Pre-filled (fake) scores must win over the model: proof that cached pairs are not rescored.
    cache = {("q1", "d0"): -5.0, ("q1", "d1"): 7.0, ("q1", "d2"): 1.0}
    run_a = {"q1": {"d0": 3.0, "d1": 2.0, "d2": 1.0}}
    out = rerank(run_a, QUERIES, CORPUS, reranker, depth=3, cache=cache, security=SECURITY)
    assert sorted(out["q1"], key=lambda d: -out["q1"][d]) == ["d1", "d2", "d0"]
    run_b = {"q1": {"d1": 5.0, "d3": 4.0}, "q2": {"d0": 1.0}}
    rerank(run_b, QUERIES, CORPUS, reranker, depth=2, cache=cache, security=SECURITY)
    assert set(cache) == {("q1", "d0"), ("q1", "d1"), ("q1", "d2"), ("q1", "d3"), ("q2", "d0")}
    assert cache[("q1", "d1")] == 7.0


def test_rerank_rejects_unknown_ids(reranker):
    with pytest.raises(UserError, match="query 'q9'"):
        rerank({"q9": {"d0": 1.0}}, QUERIES, CORPUS, reranker, depth=2, cache={}, security=SECURITY)
    with pytest.raises(UserError, match="document 'zz'"):
        rerank({"q1": {"zz": 1.0}}, QUERIES, CORPUS, reranker, depth=2, cache={}, security=SECURITY)


def _order(run, qid="q"):
    return sorted(run[qid], key=lambda d: (-run[qid][d], d))


def test_interpolate():
    first = {"q": {"a": 10.0, "b": 9.0, "c": 8.0, "d": 1.0}}
    reranked = {"q": {"c": 3.0, "b": 2.0, "a": -1.0, "d": -10.0}}  # d below depth: placeholder score
    assert _order(interpolate(first, reranked, 1.0, depth=3)) == ["c", "b", "a", "d"]
    assert _order(interpolate(first, reranked, 0.0, depth=3)) == ["a", "b", "c", "d"]
    mixed = interpolate(first, reranked, 0.5, depth=3)["q"]
    # a: 0.5*0 + 0.5*1 = 0.5; b: 0.5*0.75 + 0.5*0.5 = 0.625; c: 0.5*1 + 0.5*0 = 0.5
    assert mixed["b"] == pytest.approx(0.625) and mixed["a"] == pytest.approx(0.5)
    assert mixed["d"] < min(mixed["a"], mixed["b"], mixed["c"])
    # A query the reranker did not see keeps its first-stage scores.
    assert interpolate({"x": {"a": 1.0}}, reranked, 0.5, depth=3)["x"] == {"a": 1.0}
    with pytest.raises(UserError, match="alpha"):
        interpolate(first, reranked, 1.5)


def test_bfloat16_autocast_scores_close_to_float32(reranker):
    from ragtune.models import inference_precision

    full = score_pairs(reranker, PAIRS, batch_size=3, max_length=64, security=SECURITY)
    with inference_precision("bfloat16", "cpu"):
        half = score_pairs(reranker, PAIRS, batch_size=3, max_length=64, security=SECURITY)
    assert half.dtype == np.float32 and not np.array_equal(half, full)
    np.testing.assert_allclose(half, full, atol=0.05 * np.abs(full).max())
