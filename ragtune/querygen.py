"""Query generation for passages that come without queries.

`heuristic` needs no model: inverse cloze (one informative sentence of a passage becomes the query
and is removed from the passage, so the passage must be found from its context, not by string match).
The filters here (too short, generic, duplicated) are shared by every generator.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable

from .chunking import split_sentences
from .errors import UserError

MIN_QUERY_CHARS = 25
MAX_QUERY_CHARS = 300
MIN_QUERY_WORDS = 4

# Boilerplate that many objects share (mostly CPython's slot-wrapper docstrings): useless as queries.
_GENERIC = re.compile(
    r"^(return self|return repr\(self\)|return str\(self\)|initialize self|create and return a new object|"
    r"implement |see help\(|helper for |default object formatter|list of weak references|"
    r"dictionary for instance variables|the most base type|method resolution order|"
    r"return hash\(self\)|return len\(self\)|return iter\(self\)|return bool\(self\)|"
    r"for internal use|deprecated|not implemented|todo\b|xxx\b|this module|this class|this function|"
    r"(abstract|internal|private) (method|class|function)|see (the )?(above|below))", re.I)
_WORD = re.compile(r"[A-Za-z]{2,}")


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive form used for every duplicate check."""
    return " ".join(text.casefold().split())


def is_good_query(text: str) -> bool:
    """A query a person could plausibly type: prose, not too short or long, not boilerplate or code."""
    t = " ".join(text.split())
    if not MIN_QUERY_CHARS <= len(t) <= MAX_QUERY_CHARS:
        return False
    if len(_WORD.findall(t)) < MIN_QUERY_WORDS or _GENERIC.match(t):
        return False
    letters = sum(c.isalpha() for c in t)
    if letters < 0.6 * len(t):  # mostly symbols/digits: code, a table row or a signature
        return False
    if t.startswith((">>>", "...", "*", "-", "=", ":", "(", "[", "{")) or "::=" in t:
        return False
    return t[0].isupper() or t[0] in "\"'"


def informative_sentences(passage: str) -> list[str]:
    """Prose sentences of a passage (code blocks, headings and grammar rules skipped) that make good queries."""
    out = []
    for para in re.split(r"\n\s*\n", passage):
        if para.startswith((" ", "\t")) or para.lstrip().startswith((">>>", "*", "=")):
            continue  # indented blocks are code or grammar in the reference manual
        for sent in split_sentences(para):
            if is_good_query(sent) and sent.endswith((".", "?", "!")):
                out.append(sent)
    return out


def remove_sentence(passage: str, sentence: str) -> str:
    """The passage without `sentence`; the sentence may span line breaks in the passage."""
    pattern = r"\s+".join(re.escape(w) for w in sentence.split())
    out = re.sub(pattern, " ", passage, count=1)
    # Tidy the gap: no double spaces or space at line ends; keep paragraph breaks.
    out = re.sub(r"[ \t]+\n", "\n", re.sub(r"(?<=\S)[ \t]{2,}(?=\S)", " ", out))
    return re.sub(r"\n{3,}", "\n\n", out).strip()


def inverse_cloze(passage: str, rng: random.Random, n: int = 1) -> list[tuple[str, str]]:
    """Up to `n` (query, passage without that query) pairs; sentences chosen by `rng`. When n > 1 every
    chosen sentence is removed from the returned passage, so all queries share one passage text."""
    sentences = [s for s in dict.fromkeys(informative_sentences(passage))]
    if not sentences:
        return []
    chosen = rng.sample(sentences, min(n, len(sentences)))
    rest = passage
    for s in chosen:
        rest = remove_sentence(rest, s)
    if len(rest) < 2 * MIN_QUERY_CHARS:  # too little context left to find the passage from
        return []
    return [(s, rest) for s in chosen]


def drop_duplicates(texts: Iterable[str]) -> set[str]:
    """Normalized texts that occur more than once: callers drop every copy, not just the later ones,
    because a duplicated query has several equally right answers and only one judged."""
    counts = Counter(normalize(t) for t in texts)
    return {t for t, c in counts.items() if c > 1}


def heuristic(passages: dict[str, str], n_per_passage: int, seed: int
              ) -> tuple[dict[str, str], list[dict]]:
    """Inverse-cloze queries for each passage (sorted ids, seeded): returns (passages with the query
    sentences removed, [{"text", "docid", "method"}]). Duplicate query texts are dropped entirely."""
    rng = random.Random(seed)
    new_passages = dict(passages)
    candidates: list[dict] = []
    for docid in sorted(passages):
        pairs = inverse_cloze(passages[docid], rng, n_per_passage)
        if pairs:
            new_passages[docid] = pairs[0][1]
            candidates += [{"text": q, "docid": docid, "method": "inverse_cloze"} for q, _ in pairs]
    dup = drop_duplicates(c["text"] for c in candidates)
    return new_passages, [c for c in candidates if normalize(c["text"]) not in dup]


def generate(passages: dict[str, str], cfg: dict, seed: int) -> tuple[dict[str, str], list[dict]]:
    """The one entry point: dispatch on `cfg["generator"]` (params["ingest"])."""
    if cfg.get("generator", "heuristic") == "heuristic":
        return heuristic(passages, cfg.get("queries_per_chunk", 1), seed)
    raise UserError(f"params.yaml: ingest.generator: '{cfg['generator']}' is not implemented yet; "
                    f"use 'heuristic'")
