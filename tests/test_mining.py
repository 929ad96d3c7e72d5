import json

import pytest

from ragtune.errors import UserError
from ragtune.mining import mine
from ragtune.params import defaults

DOCS = {"pos": "apple banana cherry", "near": "apple banana cherry pie", "ab": "apple banana split",
        "ac": "apple cherry tart", "bc": "banana cherry smoothie", "a": "apple orchard trees",
        "b": "banana boat song", "c": "cherry blossom festival", "z1": "zebra crossing road",
        "z2": "quantum physics lecture", "z3": "volcano eruption lava", "z4": "ocean tide moon",
        "z5": "desert sand dune", "z6": "mountain snow peak"}
CORPUS = {k: {"title": "", "text": v} for k, v in DOCS.items()}
QUERIES = {"q": {"text": "apple banana cherry", "metadata": {}}, "v": {"text": "zebra volcano", "metadata": {}},
           "w": {"text": "ocean moon desert", "metadata": {}}}
# BM25 ranking for "apple banana cherry": pos, near (0.87 x pos), ab, ac, bc (tied), a, b, c (tied), z*: 0.
TRAIN = {"q": {"pos": 1}}
VAL = {"v": {"z1": 1}}


def cfg(**kw):
    c = defaults()["mine"]
    c.update(range_min=0, range_max=8, num_negatives=3, relative_margin=0.2, random_negatives=0)
    c.update(kw)
    return c


def run(c, train=TRAIN, val=VAL, seed=0, **kw):
    return mine(CORPUS, QUERIES, train, val, c, seed=seed, security=defaults()["security"], **kw)


def negs(group):
    inv = {v: k for k, v in DOCS.items()}
    return [inv[t] for t in group["neg"]]


def test_window_skips_positives_and_likely_false_negatives():
    train, val, stats = run(cfg())
    (g,) = train
    assert g["query"] == "apple banana cherry" and g["pos"] == ["apple banana cherry"]
    assert negs(g) == ["ab", "ac", "bc"]  # near scores >= 0.8 x the positive: filtered
    assert stats["false_negative_filtered"] == 1 and stats["positives_in_window"] == 1
    assert g["neg_scores"] == sorted(g["neg_scores"], reverse=True) and g["pos_scores"][0] > g["neg_scores"][0]
    assert stats["hard_negative_rank_mean"] == pytest.approx(4.0)  # ranks 3, 4, 5 (1-based)


def test_smaller_margin_keeps_the_near_duplicate():
    (g,), _, stats = run(cfg(relative_margin=0.05))
    assert negs(g) == ["near", "ab", "ac"] and stats["false_negative_filtered"] == 0


def test_range_min_skips_top_ranks():
    (g,), _, _ = run(cfg(range_min=3))  # window = ranks 4..8: ac, bc, a, b, c
    assert negs(g) == ["ac", "bc", "a"]


def test_judged_non_relevant_is_a_valid_negative_and_all_positives_are_kept():
    (g,), _, _ = run(cfg(relative_margin=0.0), train={"q": {"pos": 1, "near": 0, "ab": 2}})
    assert g["pos"] == ["apple banana cherry", "apple banana split"]
    assert "ab" not in negs(g) and "pos" not in negs(g)
    # margin 0 still drops candidates scoring at least the best positive; near is below it
    assert negs(g)[0] == "near"


def test_short_query_is_kept_and_topped_up_with_random_negatives():
    (g,), _, stats = run(cfg(range_max=4))  # top 4: pos, near (filtered), ab, ac
    assert negs(g)[:2] == ["ab", "ac"] and len(g["neg"]) == 3
    assert negs(g)[2] not in {"pos", "near", "ab", "ac"}
    assert stats["queries_short_of_negatives"] == 1 and stats["random_negatives_topup"] == 1


def test_random_negatives_are_added_never_positives_or_top_ranked():
    for seed in range(5):
        (g,), _, stats = run(cfg(range_max=4, num_negatives=2, random_negatives=3), seed=seed)
        n = negs(g)
        assert n[:2] == ["ab", "ac"] and len(n) == 5 and len(set(n)) == 5
        assert not set(n[2:]) & {"pos", "near", "ab", "ac"}
        assert stats["random_negatives_extra"] == 3


def test_val_groups_are_top_non_positives_without_filters():
    _, val, stats = run(cfg(range_max=3, val_depth=3), val={"v": {"z1": 1}, "w": {"z4": 1, "z5": 1}})
    assert [g["query"] for g in val] == ["zebra volcano", "ocean moon desert"]
    assert val[1]["pos"] == ["ocean tide moon", "desert sand dune"]
    # only docs with a BM25 match are ranked: z1 (positive) and z3 for v; z4, z5 (both positives) for w
    assert [negs(g) for g in val] == [["z3"], []]
    assert stats["val_groups"] == 2


def test_val_groups_hold_each_text_once_and_no_copy_of_a_positive():
    corpus = {**CORPUS, "z1copy": dict(CORPUS["z1"]), "z3copy": dict(CORPUS["z3"])}
    _, (v,), _ = mine(corpus, QUERIES, TRAIN, {"v": {"z1": 1, "z1copy": 1}}, cfg(range_max=3, val_depth=3), seed=0,
                      security=defaults()["security"])
    assert v["pos"] == ["zebra crossing road"] and v["neg"] == ["volcano eruption lava"]


def test_same_inputs_and_seed_give_identical_groups():
    c = cfg(range_max=4, random_negatives=4)
    assert json.dumps(run(c, seed=7)) == json.dumps(run(c, seed=7))


def test_recall_and_bad_inputs():
    _, _, stats = run(cfg(range_max=4), train={"q": {"pos": 1}, "w": {"z1": 1}, "missing": {"pos": 1}})
    assert stats["train_recall@4"] == pytest.approx(0.5)  # q finds its positive, w does not
    assert stats["skipped_train_queries"]["query_text_missing"] == 1
    with pytest.raises(UserError):
        run(cfg(), train={"q": {"pos": 0}})
    with pytest.raises(UserError):
        run(cfg(), val={"q": {"pos": 1}})


@pytest.mark.parametrize("first_stage", ["dense", "hybrid"])
def test_dense_and_hybrid_mining(tiny_model, tmp_path, first_stage):
    emb = dict(defaults()["embedder"], base=tiny_model, max_seq_length=32, encode_batch_size=4)
    c = cfg(first_stage=first_stage, range_min=1, range_max=10, num_negatives=4, relative_margin=0.0,
            val_depth=10)
    train = {"q": {"pos": 1, "ab": 1}}
    a = run(c, train=train, embedder=emb, device="cpu", cache_dir=tmp_path)
    (g,), (v,), stats = a
    assert len(g["neg"]) == 4 and not set(g["neg"]) & set(g["pos"])
    assert len(v["neg"]) == 10 and "zebra crossing road" not in v["neg"]
    assert json.dumps(a) == json.dumps(run(c, train=train, embedder=emb, device="cpu", cache_dir=tmp_path))
    assert stats["first_stage"] == first_stage
    # The base embedder's val score from mining's own embeddings is what the trainer's evaluator computes.
    from ragtune.embeddings import load_model, val_evaluator, val_samples

    model = load_model(tiny_model, "cpu", 32, security=defaults()["security"])
    expected = val_evaluator(val_samples([v]), name="val", batch_size=4)(model)
    assert stats["val_base_embedder"] == pytest.approx(
        {k: expected[f"val_{k}"] for k in ("ndcg@10", "mrr@10", "map")}, abs=1e-6)


def test_bm25_mining_has_no_base_embedder_score():
    assert run(cfg())[2]["val_base_embedder"] is None


def test_cross_encoder_rescoring(tiny_model):
    def texts(groups):
        return [(g["query"], g["pos"], g["neg"]) for g in groups]

    base = run(cfg())
    kept, _, stats = run(cfg(rescore_with=tiny_model, rescore_threshold=1.0))  # nothing above 1
    assert texts(kept) == texts(base[0])
    # The cross-encoder is the teacher: its sigmoid scores, not the first stage's, label the pairs.
    assert stats["teacher"].startswith("cross-encoder")
    assert all(0.0 <= s <= 1.0 for s in kept[0]["pos_scores"] + kept[0]["neg_scores"])
    assert kept[0]["neg_scores"] != base[0][0]["neg_scores"]
    (g,), _, stats = run(cfg(rescore_with=tiny_model, rescore_threshold=0.0))  # everything above 0
    assert stats["rescore_filtered"] == 6 and stats["random_negatives_topup"] == 3
    assert not set(negs(g)) & {"pos", "near", "ab", "ac", "bc", "a", "b", "c"}


def test_given_negatives_come_first_then_the_window_tops_up():
    # z1 and c are judged non-relevant (grade 0): trusted negatives, in the order judged, before mined ones.
    train = {"q": {"pos": 1, "z1": 0, "c": 0}}
    (g,), _, stats = run(cfg(given_negatives="first"), train=train)
    assert negs(g) == ["z1", "c", "ab"]  # z1 is not even retrieved; ab is the best mined candidate
    assert stats["given_negatives_used"] == 2
    (g,), _, _ = run(cfg(given_negatives="first", num_negatives=1), train=train)
    assert negs(g) == ["z1"]
    # only: no window; a query short of given negatives is topped up at random, never with a positive
    (g,), _, stats = run(cfg(given_negatives="only"), train=train)
    assert negs(g)[:2] == ["z1", "c"] and len(g["neg"]) == 3 and "pos" not in negs(g)
    assert stats["random_negatives_topup"] == 1 and stats["window_candidates"] == 0
    # ignore: mined as if unjudged (near is the top mined candidate when margin 0 lets it through)
    (g,), _, stats = run(cfg(given_negatives="ignore"), train=train)
    assert "z1" not in negs(g) and stats["given_negatives_used"] == 0
    # the near-duplicate "near" is never dropped by the margin when it is judged non-relevant
    (g,), _, _ = run(cfg(given_negatives="first"), train={"q": {"pos": 1, "near": 0}})
    assert negs(g)[0] == "near"


def test_hybrid_wsum_picks_the_bm25_weight_on_val(tiny_model, tmp_path):
    emb = dict(defaults()["embedder"], base=tiny_model, max_seq_length=32, encode_batch_size=4)
    c = cfg(first_stage="hybrid", fusion="wsum", fusion_grid=[1.0, 0.0], range_min=1, range_max=10,
            num_negatives=4, relative_margin=0.0, val_depth=10)
    (g,), _, stats = run(c, train={"q": {"pos": 1}}, embedder=emb, device="cpu", cache_dir=tmp_path)
    fusion = stats["hybrid_fusion"]
    assert set(fusion["val_ndcg@10_by_bm25_weight"]) == {"1", "0"} and fusion["bm25_weight"] in (1.0, 0.0)
    assert max(fusion["val_ndcg@10_by_bm25_weight"].values()) == fusion["val_ndcg@10_by_bm25_weight"][
        f"{fusion['bm25_weight']:g}"]
    assert len(g["neg"]) == 4
