import random

import pytest

from ragtune.errors import UserError
from ragtune.querygen import (drop_copied, generate, heuristic, informative_sentences, inverse_cloze,
                              is_good_query, normalize, remove_sentence)

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
    assert generate(passages, {"generator": "heuristic", "queries_per_chunk": 1}, 3) == (new, queries)
    with pytest.raises(UserError, match="ingest.generator"):
        generate(passages, {"generator": "llm"}, 3)
