"""Synthetic training queries from the corpus (GPL / InPars style domain adaptation), for any source.

The corpus is what the user deploys on, so any passage may give a query; the generator is the one that
ingest uses (ragtune.querygen.generate: heuristic inverse cloze, or the LLM when `ingest.generator: llm`).
Val and test queries are never seen: a synthetic query that is a near-duplicate of a val or test query
text is dropped and counted before the seeded sample is drawn, so even a generator that happens to
paraphrase an evaluation question (SciFact's claims reword abstract sentences) cannot train on it.

Near-duplicate (one definition, used everywhere): the content-token sets (normalized text, word tokens
of 3+ characters, so "is", "of", "a" do not count) of the two texts overlap by at least
NEAR_DUPLICATE_CONTAINMENT of the smaller set. Containment, not Jaccard, because a held-out query
embedded in a longer generated sentence is the leak to catch.

Consistency filtering and teacher scores happen in mining (ragtune.mining), where the first stage is.
"""
from __future__ import annotations

import logging
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from .io import doc_text
from .querygen import generate, normalize

log = logging.getLogger(__name__)

NEAR_DUPLICATE_CONTAINMENT = 0.8
SYNTHETIC_PREFIX = "synthetic-"  # query ids of synthetic queries; no real id may start with it here
_CONTENT = re.compile(r"\w{3,}")


def content_tokens(text: str) -> frozenset[str]:
    return frozenset(_CONTENT.findall(normalize(text)))


class HeldOut:
    """Val and test query texts, indexed for the near-duplicate test."""

    def __init__(self, texts: Iterable[str]):
        self.sets = [s for s in (content_tokens(t) for t in texts) if s]
        self.postings: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.sets):
            for w in s:
                self.postings[w].append(i)

    def near_duplicate(self, text: str) -> bool:
        q = content_tokens(text)
        if not q:
            return False
        shared: dict[int, int] = defaultdict(int)
        for w in q:
            for i in self.postings.get(w, ()):
                shared[i] += 1
        return any(n >= NEAR_DUPLICATE_CONTAINMENT * min(len(q), len(self.sets[i])) for i, n in shared.items())


def synthesize(corpus: Mapping[str, Mapping[str, str]], held_out: Iterable[str], n: int,
               ingest: Mapping[str, Any], seed: int) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Up to `n` synthetic queries: {qid: {"text", "docid", "pos_text", "method"}} and counts.

    `ingest` is params["ingest"] (generator, queries_per_chunk, llm); `pos_text` is the positive as the
    student sees it (inverse cloze: the passage without the query sentence). Same inputs -> same queries.
    """
    stats = {"generated": 0, "near_duplicate_of_val_or_test": 0, "kept": 0}
    if n <= 0:
        return {}, stats
    passages = {d: doc_text(doc) for d, doc in corpus.items()}
    # The LLM generator stops at max_queries: ask for a little more than n, as some are dropped.
    # Only the generator's keys: mine's dvc.yaml params list exactly these (ingest.llm read only for llm).
    gen_cfg = {"generator": ingest["generator"], "queries_per_chunk": ingest["queries_per_chunk"],
               "max_queries": 2 * n}
    if gen_cfg["generator"] == "llm":
        gen_cfg["llm"] = ingest["llm"]
    gen_stats: dict[str, Any] = {}
    rest, candidates = generate(passages, gen_cfg, seed, stats=gen_stats)
    stats["generated"] = len(candidates)
    index = HeldOut(held_out)
    clean = [c for c in candidates if not index.near_duplicate(c["text"])]
    stats["near_duplicate_of_val_or_test"] = len(candidates) - len(clean)
    clean.sort(key=lambda c: (c["docid"], c["text"]))
    chosen = random.Random(f"{seed}:synthetic").sample(clean, min(n, len(clean)))
    chosen.sort(key=lambda c: (c["docid"], c["text"]))
    out = {f"{SYNTHETIC_PREFIX}{i}": {"text": c["text"], "docid": c["docid"], "pos_text": rest[c["docid"]],
                                      "method": c["method"]}
           for i, c in enumerate(chosen)}
    stats["kept"] = len(out)
    stats.update({k: v for k, v in gen_stats.items() if k not in stats})
    log.info("synthetic queries: %d generated, %d near-duplicates of val/test dropped, %d kept",
             stats["generated"], stats["near_duplicate_of_val_or_test"], stats["kept"])
    return out, stats
