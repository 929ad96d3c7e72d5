"""Synthetic training queries: never from val/test queries, consistency-filtered, teacher-labelled, seeded."""
import filecmp

import pytest

from ragtune.errors import UserError
from ragtune.io import read_groups, read_json, write_corpus, write_jsonl, write_qrels, write_queries
from ragtune.mining import mine
from ragtune.params import defaults, validate
from ragtune.synthetic import HeldOut, synthesize

SECURITY = defaults()["security"]

TOPICS = ["apple", "banana", "cherry", "volcano", "glacier", "harbor", "violin", "tractor", "comet", "parrot",
          "cactus", "lantern"]


def _doc(i: int, w: str) -> str:
    return (f"The {w} archive number {i} describes how {w} specimens were catalogued in detail. "
            f"Researchers measured every {w} sample with careful instruments over many seasons. "
            f"Later surveys of the {w} collection confirmed the earlier careful measurements again.")


# A val question that paraphrases a corpus sentence (SciFact's claims do this): the query generated
# from d3 (its only query-like sentence; the lowercase line is context) must never be a training query.
VAL_TEXT = "Volcano ash layers were dated using argon isotopes"
CORPUS = {f"d{i}": {"title": "", "text": _doc(i, w)} for i, w in enumerate(TOPICS)}
CORPUS["d3"]["text"] = ("Volcano ash layers were dated using argon isotopes from three eruptions.\n\n"
                        "field notes: ash samples from the northern crater, logged by the station team")
QUERIES = {"t1": {"text": "apple archive catalogue", "metadata": {}},
           "v1": {"text": VAL_TEXT, "metadata": {}},
           "e1": {"text": "comet survey confirmed measurements", "metadata": {}}}


def params(tmp_model: str, n: int = 20):
    p = defaults()
    p["synthetic"].update(queries=n, top_k=3)
    p["ingest"].update(queries_per_chunk=2)
    p["mine"].update(first_stage="bm25", range_min=0, range_max=8, num_negatives=2, relative_margin=0.0)
    p["embedder"].update(base=tmp_model)
    return p


def test_near_duplicate_is_containment_of_content_tokens():
    held = HeldOut([VAL_TEXT])
    assert held.near_duplicate("Volcano ash layers were dated using argon isotopes from three eruptions.")
    assert held.near_duplicate("volcano  ASH layers were dated, using argon isotopes")
    assert not held.near_duplicate("Glacier ice layers were dated using carbon isotopes.")
    assert not HeldOut([]).near_duplicate(VAL_TEXT)


def test_synthetic_queries_skip_val_and_test_near_duplicates_and_are_seeded():
    ingest = dict(defaults()["ingest"], queries_per_chunk=2)
    out, stats = synthesize(CORPUS, [VAL_TEXT], 1000, ingest, seed=1)
    assert stats["generated"] == 2 * (len(CORPUS) - 1) + 1
    assert stats["near_duplicate_of_val_or_test"] == 1  # the planted paraphrase, and only it
    assert stats["kept"] == len(out) == stats["generated"] - 1
    assert not any(HeldOut([VAL_TEXT]).near_duplicate(q["text"]) for q in out.values())
    for q in out.values():  # inverse cloze: the positive no longer holds the query sentence
        assert q["text"] not in q["pos_text"] and q["docid"] in CORPUS
    few, _ = synthesize(CORPUS, [VAL_TEXT], 5, ingest, seed=1)
    assert len(few) == 5 and few == synthesize(CORPUS, [VAL_TEXT], 5, ingest, seed=1)[0]
    assert few != synthesize(CORPUS, [VAL_TEXT], 5, ingest, seed=2)[0]
    assert synthesize(CORPUS, [VAL_TEXT], 0, ingest, seed=1)[0] == {}


def test_inconsistent_synthetic_queries_are_dropped_and_teacher_scores_written():
    cfg = params("unused")["mine"]
    synthetic = {"synthetic-0": {"text": "banana specimens catalogued", "docid": "d1", "pos_text": "banana rest"},
                 # its source passage is not what the first stage finds: inconsistent, dropped
                 "synthetic-1": {"text": "violin specimens catalogued", "docid": "d0", "pos_text": "apple rest"}}
    train, _, stats = mine(CORPUS, QUERIES, {"t1": {"d0": 1}}, {"v1": {"d3": 1}}, cfg, seed=0,
                           synthetic=synthetic, consistency_k=1, security=SECURITY)
    assert stats["groups_real"] == 1 and stats["groups_synthetic"] == 1 and stats["synthetic_inconsistent"] == 1
    assert stats["queries"] == 1 and stats["teacher"].startswith("first stage (bm25")
    syn = next(g for g in train if g["query"] == "banana specimens catalogued")
    assert syn["pos"] == ["banana rest"]  # the student sees the cloze passage
    # Normalized first-stage scores: the consistent source passage is the top (1.0), negatives below.
    assert syn["pos_scores"] == [1.0] and all(s < 1.0 for s in syn["neg_scores"])
    assert len(syn["neg_scores"]) == len(syn["neg"]) == 2
    assert syn["synthetic"] is True and all("synthetic" not in g for g in train if g is not syn)


def test_a_trainer_not_in_synthetic_trainers_reads_the_real_groups_only(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [{"query": "real one", "pos": ["a"], "neg": ["b"]},
                       {"query": "made up", "pos": ["c"], "neg": ["d"], "synthetic": True}])
    assert [g["query"] for g in read_groups(path)] == ["real one", "made up"]
    assert [g["query"] for g in read_groups(path, synthetic=False)] == ["real one"]
    write_jsonl(path, [{"query": "made up", "pos": ["c"], "neg": ["d"], "synthetic": True}])
    with pytest.raises(UserError, match="1 synthetic ones are left out .*synthetic.trainers"):
        read_groups(path, synthetic=False)


def test_with_no_real_queries_every_trainer_must_learn_from_the_synthetic_ones():
    p = defaults()
    p["prepare"]["train_queries"], p["synthetic"]["queries"] = 0, 100
    validate(p)
    p["synthetic"]["trainers"] = ["reranker"]
    with pytest.raises(UserError, match="synthetic.trainers: .*list embedder too"):
        validate(p)
    p["prepare"]["train_queries"] = 50
    assert validate(p)["synthetic"]["trainers"] == ["reranker"]


def test_consistency_searches_the_passage_without_the_query_sentence(tiny_model, tmp_path):
    # The query's words are only in the sentence cut out of d3: found in the full corpus, not in the
    # passage the student sees, so it is not consistent (the full text would make the check trivial).
    cut = {"synthetic-0": {"text": "Volcano ash layers dated with argon isotopes", "docid": "d3",
                           "pos_text": "field notes: samples from the northern crater"}}
    for first_stage in ("bm25", "hybrid"):
        cfg = params(tiny_model)["mine"]
        cfg.update(first_stage=first_stage)
        emb = dict(params(tiny_model)["embedder"], max_seq_length=32, encode_batch_size=8)
        train, _, stats = mine(CORPUS, QUERIES, {"t1": {"d0": 1}}, {"v1": {"d3": 1}}, cfg, seed=0,
                               synthetic=cut, consistency_k=1, embedder=emb, device="cpu", cache_dir=tmp_path,
                               security=SECURITY)
        assert stats["synthetic_inconsistent"] == 1 and stats["groups_synthetic"] == 0, first_stage
    kept = {"synthetic-0": dict(cut["synthetic-0"], pos_text="argon isotopes in volcano ash, field notes")}
    _, _, stats = mine(CORPUS, QUERIES, {"t1": {"d0": 1}}, {"v1": {"d3": 1}}, params(tiny_model)["mine"],
                       seed=0, synthetic=kept, consistency_k=1, security=SECURITY)
    assert stats["groups_synthetic"] == 1


def _prepared(tmp_path):
    raw, prep = tmp_path / "corpus.jsonl", tmp_path / "prepared"
    write_corpus(raw, CORPUS)
    write_queries(prep / "queries.jsonl", QUERIES)
    write_qrels(prep / "qrels" / "train.tsv", {"t1": {"d0": 1}})
    write_qrels(prep / "qrels" / "val.tsv", {"v1": {"d3": 1}})
    write_qrels(prep / "qrels" / "test.tsv", {"e1": {"d8": 1}})
    return raw, prep


def test_mine_stage_with_synthetic_queries_is_repeatable(tmp_path, tiny_model):
    from ragtune.pipeline import mine as stage

    raw, prep = _prepared(tmp_path)
    outs = []
    for i in range(2):
        out, stats = tmp_path / f"neg{i}", tmp_path / f"mining{i}.json"
        stage.run(params(tiny_model), corpus_path=str(raw), prepared_dir=str(prep), out_dir=str(out),
                  stats_path=str(stats))
        outs.append((out, read_json(stats)))
    assert filecmp.cmp(outs[0][0] / "train.jsonl", outs[1][0] / "train.jsonl", shallow=False)
    stats = outs[0][1]
    gen = stats["synthetic_generation"]
    assert gen["near_duplicate_of_val_or_test"] >= 1 and gen["kept"] == 20
    assert stats["groups_real"] == 1 and stats["groups_synthetic"] == 20 - stats["synthetic_inconsistent"] > 0
    groups = read_groups(outs[0][0] / "train.jsonl")
    texts = {g["query"] for g in groups}
    assert not any(HeldOut([VAL_TEXT, QUERIES["e1"]["text"]]).near_duplicate(t) for t in texts - {"apple archive catalogue"})
    assert all(len(g["pos_scores"]) == len(g["pos"]) and len(g["neg_scores"]) == len(g["neg"]) for g in groups)
