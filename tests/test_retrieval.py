import numpy as np
import pytest

from ragtune.params import defaults
from ragtune.retrieval import BM25Index, DenseIndex, dense_search, rrf, top_k

DOCS = {"pos": "apple banana cherry", "near": "apple banana cherry pie", "ab": "apple banana split",
        "ac": "apple cherry tart", "bc": "banana cherry smoothie", "a": "apple orchard trees",
        "b": "banana boat song", "c": "cherry blossom festival", "z1": "zebra crossing road",
        "z2": "quantum physics lecture"}
CORPUS = {k: {"title": "", "text": v} for k, v in DOCS.items()}


def test_bm25_ranks_by_overlap_and_breaks_ties_by_doc_id():
    run = BM25Index(CORPUS).search({"q": "apple banana cherry"}, k=20)
    assert list(run["q"]) == ["pos", "near", "ab", "ac", "bc", "a", "b", "c"]  # z1, z2 score 0: left out
    assert run["q"]["ab"] == run["q"]["ac"] == run["q"]["bc"]
    assert all(isinstance(s, float) and s > 0 for s in run["q"].values())


def test_bm25_does_not_depend_on_corpus_order_and_cuts_at_k():
    reversed_corpus = dict(reversed(list(CORPUS.items())))
    a = BM25Index(CORPUS).search({"q": "apple banana cherry"}, k=4)
    b = BM25Index(reversed_corpus).search({"q": "apple banana cherry"}, k=4)
    assert a == b and list(a["q"]) == ["pos", "near", "ab", "ac"]


def test_bm25_index_reused_for_several_query_sets_and_query_objects():
    index = BM25Index(CORPUS)
    one = index.search({"q1": "zebra road"}, k=3)
    two = index.search({"q2": {"text": "the quantum lecture", "metadata": {}}, "q3": "the of and"}, k=3)
    assert list(one["q1"]) == ["z1"]
    assert list(two["q2"]) == ["z2"]
    assert two["q3"] == {}  # only stopwords: nothing matches
    scores = index.score_query("apple banana cherry")
    assert scores[index.position("pos")] == pytest.approx(BM25Index(CORPUS).search({"q": "apple banana cherry"}, 1)["q"]["pos"])


def test_bm25_uses_title_too():
    corpus = {"d1": {"title": "Kangaroo", "text": "an animal"}, "d2": {"title": "", "text": "an animal"}}
    assert list(BM25Index(corpus).search({"q": "kangaroo"}, k=2)["q"]) == ["d1"]


def test_top_k_ties_at_the_cut_go_to_the_lower_index():
    scores = np.array([1.0, 3.0, 2.0, 2.0, 2.0], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [1, 2, 3]
    assert top_k(scores, 10).tolist() == [1, 2, 3, 4, 0]


def test_dense_index_exact_search_and_tie_break():
    emb = np.array([[1, 0], [0, 1], [0.6, 0.8], [0.6, 0.8]], dtype=np.float32)
    index = DenseIndex(emb, ["d", "c", "b", "a"])
    run = index.search(np.array([[0.6, 0.8], [1, 0]], dtype=np.float32), ["q1", "q2"], k=3)
    assert list(run["q1"]) == ["a", "b", "c"]  # a and b tie at 1.0: id order
    assert run["q1"]["a"] == pytest.approx(1.0) and run["q1"]["c"] == pytest.approx(0.8)
    assert list(run["q2"]) == ["d", "a", "b"]
    assert len(index.search(np.array([[1, 0]], dtype=np.float32), ["q"], k=10)["q"]) == 4


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_dense_index_approximate_agrees_with_flat_on_easy_queries(kind):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(10_000, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(len(emb))]
    approx = DenseIndex(emb, ids, kind)
    assert approx.kind == kind
    queries = emb[:20] + 0.01 * rng.normal(size=(20, 16)).astype(np.float32)
    run = approx.search(queries, [f"q{i}" for i in range(20)], k=5)
    hits = sum(next(iter(run[f"q{i}"])) == f"d{i}" for i in range(20))
    assert hits >= 18


def test_dense_index_small_corpus_falls_back_to_flat_and_rejects_bad_shapes():
    emb = np.eye(3, dtype=np.float32)
    assert DenseIndex(emb, ["a", "b", "c"], "ivf").kind == "flat"
    with pytest.raises(ValueError):
        DenseIndex(emb, ["a", "b"])
    with pytest.raises(ValueError):
        DenseIndex(emb, ["a", "b", "c"], "annoy")


def test_rrf_sums_reciprocal_ranks_within_depth():
    r1 = {"q": {"a": 10.0, "b": 5.0, "c": 1.0}}
    r2 = {"q": {"c": 0.9, "a": 0.8}, "q2": {"x": 1.0}}
    fused = rrf([r1, r2], k=60, depth=2)
    assert fused["q"]["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["q"]["b"] == pytest.approx(1 / 62)
    assert fused["q"]["c"] == pytest.approx(1 / 61)  # rank 3 in r1 is beyond depth 2
    assert list(fused["q"]) == ["a", "c", "b"]
    assert fused["q2"] == {"x": pytest.approx(1 / 61)}
    assert rrf([r1], k=1, depth=100)["q"]["c"] == pytest.approx(1 / 4)


def test_dense_search_with_tiny_model(tiny_model, tmp_path):
    corpus = {"d1": {"title": "python", "text": "python function module class"},
              "d2": {"title": "", "text": "search index retrieval rank score"},
              "d3": {"title": "", "text": "train test split corpus"}}
    run = dense_search(tiny_model, corpus, {"q": "python class"}, k=2, batch_size=2, device="cpu",
                       cache_dir=tmp_path, security=defaults()["security"])
    assert len(run["q"]) == 2 and set(run["q"]) <= set(corpus)
    scores = list(run["q"].values())
    assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
    assert len(list(tmp_path.glob("*.npy"))) == 1  # corpus embeddings cached


def test_wsum_is_a_convex_combination_of_minmax_scores_and_its_weight_is_picked_on_val():
    from ragtune.retrieval import pick_wsum, wsum

    bm25 = {"q": {"a": 10.0, "b": 5.0, "c": 0.0}}
    dense = {"q": {"c": 0.9, "d": 0.8, "b": 0.4}}
    fused = wsum([bm25, dense], [0.5, 0.5])
    assert fused["q"] == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.5, "d": 0.4})
    assert list(wsum([bm25, dense], [1.0, 0.0])["q"])[:3] == ["a", "b", "c"]
    # Val says d is relevant: only a dense-heavy weight ranks it in the top 3... and the grid picks it.
    def score(run):
        return 1.0 if "d" in list(run["q"])[:3] else 0.0
    w, by_w = pick_wsum(bm25, dense, score, [1.0, 0.8, 0.0], depth=100)
    assert w == 0.0 and by_w == {"1": 0.0, "0.8": 0.0, "0": 1.0}


# bm25s runs a JAX op on import where JAX is installed; JAX on a GPU then takes 75% of its memory (108 GiB
# on the H200 run, bench/results/2026-12-04-gpu). A stand-in jax package records the platform it was given.
FAKE_JAX = """import os, sys
print("jax platforms at import:", os.environ.get("JAX_PLATFORMS"), file=sys.stderr)
"""


@pytest.mark.parametrize("user_choice, seen", [(None, "cpu"), ("cuda", "cuda")])
def test_bm25_keeps_jax_on_the_cpu_unless_the_user_chose(tmp_path, user_choice, seen):
    import os
    import subprocess
    import sys

    (tmp_path / "jax").mkdir()
    (tmp_path / "jax" / "__init__.py").write_text(FAKE_JAX)
    (tmp_path / "jax" / "lax.py").write_text("def top_k(x, k):\n    return x[:k], list(range(k))\n")
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    if user_choice:
        env["JAX_PLATFORMS"] = user_choice
    code = "from ragtune.retrieval import BM25Index; BM25Index({'a': {'title': '', 'text': 'apple pie'}})"
    err = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stderr
    assert f"jax platforms at import: {seen}" in err
