import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from ragtune.pydoc_corpus import build
from ragtune.querygen import normalize


@pytest.fixture(scope="module")
def default_build():
    return build({"max_passages": 2000, "max_queries": 600}, 42)


def test_sizes_and_shapes(default_build):
    corpus, queries, qrels = default_build
    assert 1000 <= len(corpus) <= 2000 and len(queries) == 600
    assert set(qrels) == set(queries)
    for qid, docs in qrels.items():
        assert list(docs.values()) == [1] and all(d in corpus for d in docs)
    assert all(d["text"].strip() and d["title"] for d in corpus.values())
    # Passages near the target length (a short last chunk may be merged into one up to 1.5 x 1000).
    lengths = sorted(len(d["text"]) for d in corpus.values())
    assert lengths[len(lengths) // 2] >= 500 and lengths[-1] <= 1500
    methods = Counter(q["metadata"]["method"] for q in queries.values())
    assert methods["summary"] >= 100 and methods["inverse_cloze"] >= 100
    # Distractors: most passages are nobody's positive.
    assert len(corpus) - len({d for docs in qrels.values() for d in docs}) >= 500


def test_queries_are_unique_and_not_copied_from_any_passage(default_build):
    corpus, queries, qrels = default_build
    texts = [normalize(q["text"]) for q in queries.values()]
    assert len(set(texts)) == len(texts)
    for q in queries.values():
        assert q["text"] != "Return self." and len(q["text"]) >= 25
    all_text = "\n".join(normalize(d["title"] + " " + d["text"]) for d in corpus.values())
    assert sum(t in all_text for t in texts) == 0


def test_summary_positive_is_the_rest_of_the_docstring(default_build):
    corpus, queries, qrels = default_build
    q = next(q for qid, q in sorted(queries.items()) if q["metadata"]["method"] == "summary")
    name = q["metadata"]["object"].split(".")[-1]
    (docid,) = next(qrels[qid] for qid in sorted(queries) if queries[qid] is q)
    assert name + "(" in corpus[docid]["text"] or name in corpus[docid]["text"]


def test_max_sizes_and_seed():
    corpus, queries, qrels = build({"max_passages": 50, "max_queries": 10}, 1)
    assert len(corpus) == 50 and len(queries) == 10
    other = build({"max_passages": 50, "max_queries": 10}, 2)
    assert other[1] != queries


def test_deterministic_across_processes(default_build):
    """Same interpreter, another process and hash seed -> the same dataset, byte for byte."""
    digest = hashlib.sha256(json.dumps(default_build).encode()).hexdigest()
    code = ("import hashlib, json; from ragtune.pydoc_corpus import build; "
            "print(hashlib.sha256(json.dumps(build({'max_passages': 2000, 'max_queries': 600}, 42))"
            ".encode()).hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(__file__)), check=True)
    assert out.stdout.strip() == digest
