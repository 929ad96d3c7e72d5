import json
import random

import pytest
from llm_stub import StubServer

from ragtune.errors import UserError
from ragtune.params import defaults, validate
from ragtune.querygen import (drop_copied, generate, heuristic, informative_sentences, inverse_cloze,
                              is_good_query, normalize, parse_queries, remove_sentence)

PASSAGE = ("The deque class supports thread-safe appends and pops from either end.\n"
           "Appends and pops run in\nconstant time from both sides of the deque.\n\n"
           "   d = deque([1, 2, 3])\n\n"
           "Indexed access is slower in the middle of a long deque than at its ends.")


@pytest.mark.parametrize("text, good", [
    ("Return self.", False),
    ("Initialize self.  See help(type(self)) for accurate signature.", False),
    ("short one", False),
    ("Return the number of items in the deque that equal x.", True),
    ("x = foo(a, b) + bar[1:2] * 3 ** 4 // 5 - 6", False),
    ("lowercase start is probably a fragment of a sentence", False),
])
def test_is_good_query(text, good):
    assert is_good_query(text) is good


def test_informative_sentences_skip_code_and_join_lines():
    sents = informative_sentences(PASSAGE)
    assert "Appends and pops run in constant time from both sides of the deque." in sents
    assert not any("deque([1, 2, 3])" in s for s in sents)


def test_remove_sentence_across_line_breaks():
    out = remove_sentence(PASSAGE, "Appends and pops run in constant time from both sides of the deque.")
    assert "constant time" not in out
    assert out.startswith("The deque class supports thread-safe appends and pops from either end.\n")
    assert "   d = deque([1, 2, 3])" in out


def test_inverse_cloze_removes_the_query_and_is_seeded():
    pairs = inverse_cloze(PASSAGE, random.Random(0), n=2)
    assert len(pairs) == 2 and pairs[0][1] == pairs[1][1]
    for query, rest in pairs:
        assert normalize(query) not in normalize(rest)
    assert inverse_cloze(PASSAGE, random.Random(0), n=2) == pairs


def test_drop_copied_drops_duplicates_and_verbatim_copies():
    passages = {"a": "Alpha text says the sky is blue today.", "b": "Other text. The grass is green here.",
                "c": "Unrelated passage."}
    cands = [{"text": "The sky is blue today.", "docid": "a", "rest": "Alpha text says"},
             {"text": "The grass is green here.", "docid": "c", "rest": "Unrelated passage."},  # in b
             {"text": "Same question twice here.", "docid": "a", "rest": "x"},
             {"text": "same  question twice here.", "docid": "b", "rest": "y"},
             {"text": "Still inside its rest.", "docid": "c", "rest": "Still inside its rest."}]
    assert [c["text"] for c in drop_copied(cands, passages)] == ["The sky is blue today."]


def test_heuristic_and_generate():
    passages = {"p1": PASSAGE, "p2": "Nothing useful", "p3": PASSAGE.replace("deque", "queue")}
    new, queries = heuristic(passages, 1, seed=3)
    assert {q["docid"] for q in queries} <= {"p1", "p3"} and queries
    assert new["p2"] == "Nothing useful"
    for q in queries:
        assert normalize(q["text"]) not in normalize(new[q["docid"]])
    assert generate(passages, defaults()["ingest"], 3) == (new, queries)
    with pytest.raises(UserError, match="^params.yaml: ingest.generator: unknown value 't5'; allowed: heuristic, llm"):
        validate({"ingest": {"generator": "t5"}})  # refused with the other params, before ingest starts


def test_parse_queries_strips_markers_and_preambles():
    reply = ('Here are 3 queries:\n1. How do cats purr?\n2) "why cats purr loudly"\n- cats\n'
             '* Query 3: What makes cats purr\n4. how do cats purr')
    assert parse_queries(reply, 5) == ["How do cats purr?", "why cats purr loudly", "What makes cats purr"]
    assert parse_queries(reply, 1) == ["How do cats purr?"]
    assert parse_queries('["a json list", "of two queries"]', 3) == ["a json list", "of two queries"]


def _llm_cfg(base_url, **kw):
    cfg = defaults()["ingest"]
    cfg.update(generator="llm", queries_per_chunk=2, **kw)
    cfg["llm"].update(base_url=base_url, max_retries=2, timeout=5.0, api_key_env="RAGTUNE_TEST_KEY")
    return cfg


PASSAGES = {f"p{i}": f"Topic{i} alpha beta gamma is described in this passage number {i}." for i in range(5)}


def test_llm_generates_caches_and_reruns_for_free(tmp_path):
    with StubServer() as srv:
        cfg = _llm_cfg(srv.base_url)
        stats = {}
        new, queries = generate(PASSAGES, cfg, 0, stats=stats, cache_dir=tmp_path / "qg", backoff=0.001)
        assert new == PASSAGES  # llm queries do not change the passages
        assert len(queries) == 10 and {q["method"] for q in queries} == {"llm"}
        assert {q["docid"] for q in queries} == set(PASSAGES)
        assert queries[0]["text"] == "Which passage talks about Topic0 alpha beta variant 0?"
        assert stats["passages_asked"] == 5 and stats["bad_response"] == 0 and stats["failed"] == 0
        assert len(srv.requests) == 5
        files = sorted((tmp_path / "qg").rglob("*.json"))
        assert len(files) == 5 and not list((tmp_path / "qg").rglob(".*tmp*"))
        assert json.loads(files[0].read_text())["queries"]
        again = generate(PASSAGES, cfg, 0, stats={}, cache_dir=tmp_path / "qg", backoff=0.001)
        assert again == (new, queries)
        assert len(srv.requests) == 5  # the rerun made zero requests
        # A changed prompt is a different cache entry: asked again.
        cfg["llm"]["prompt"] = "Write {n} questions.\n\nPassage:\n{passage}"
        generate(PASSAGES, cfg, 0, cache_dir=tmp_path / "qg", backoff=0.001)
        assert len(srv.requests) == 10


def test_llm_stops_asking_once_max_queries_are_in_hand(tmp_path):
    with StubServer() as srv:
        stats = {}
        many = {f"p{i}": f"Topic{i} alpha beta gamma is described in this passage number {i}." for i in range(20)}
        _, queries = generate(many, _llm_cfg(srv.base_url, max_queries=10), 0, stats=stats,
                              cache_dir=tmp_path, backoff=0.001)
        assert len(srv.requests) == 5 and stats["passages_asked"] == 5 and len(queries) == 10


def test_llm_retries_skips_and_counts_bad_answers(tmp_path):
    passages = dict(PASSAGES, r="FAIL429ONCE then a fine passage about retries.",
                    f="FAIL500 this passage never gets an answer.", m="MALFORMED reply for this passage.",
                    e="EMPTY reply for this passage.", w="WRONGSHAPE reply for this passage.")
    with StubServer() as srv:
        stats = {}
        _, queries = generate(passages, _llm_cfg(srv.base_url), 0, stats=stats, cache_dir=tmp_path,
                              backoff=0.001)
        assert {q["docid"] for q in queries} == set(PASSAGES) | {"r"}
        assert stats["bad_response"] == 3 and stats["failed"] == 1
        n_first = len(srv.requests)
        assert n_first == 5 + 2 + 3 + 3  # fine, 429 + retry, 500 x (1 + 2 retries), three bad ones
        stats = {}
        generate(passages, _llm_cfg(srv.base_url), 0, stats=stats, cache_dir=tmp_path, backoff=0.001)
        # Bad answers are cached (asking again pays again); only the failed passage is asked again.
        assert len(srv.requests) == n_first + 3 and stats["bad_response"] == 3 and stats["failed"] == 1


def test_llm_endpoint_down_stops_with_a_clear_error_and_keeps_the_cache(tmp_path):
    passages = {f"f{i}": f"FAIL500 passage {i}" for i in range(5)}
    passages["a"] = "A fine passage that sorts and shuffles somewhere."
    with StubServer() as srv:
        with pytest.raises(UserError, match=r"ingest.llm: .* kept failing \(HTTP 500 after 2 retries\) "
                                            r"for 3 passages in a row"):
            generate(passages, _llm_cfg(srv.base_url), 0, cache_dir=tmp_path, backoff=0.001)
        assert len(srv.requests) <= 10


def test_llm_prompt_needs_passage():
    # Checked with the other params, before any stage work starts.
    with pytest.raises(UserError, match=r"^params.yaml: ingest.llm.prompt: must contain \{passage\}"):
        validate({"ingest": {"llm": {"prompt": "Write {n} queries."}}})
