"""Query generation for passages that come without queries.

`heuristic` needs no model: inverse cloze (one informative sentence of a passage becomes the query
and is removed from the passage, so the passage must be found from its context, not by string match).
The filters here (too short, generic, duplicated) are shared by every generator.
"""
from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
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
_TOKEN = re.compile(r"\w+")


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
    letters = sum(map(str.isalpha, t))
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


def _cut(passage: str, start: int, end: int) -> str:
    before, after = passage[:start].rstrip(" \t"), passage[end:].lstrip(" \t")
    sep = " " if before and after and not before.endswith("\n") and not after.startswith("\n") else ""
    return re.sub(r"\n{3,}", "\n\n", before + sep + after).strip()


def remove_sentence(passage: str, sentence: str) -> str:
    """The passage without `sentence`; the sentence may span line breaks in the passage."""
    target = sentence.split()
    flat = " ".join(target)
    at = passage.find(flat)
    if at >= 0:  # fast path: the sentence sits on one line
        return _cut(passage, at, at + len(flat))
    spans = [m.span() for m in re.finditer(r"\S+", passage)]
    n = len(target)
    for i in range(len(spans) - n + 1):
        if all(passage[s:e] == w for (s, e), w in zip(spans[i:i + n], target)):
            return _cut(passage, spans[i][0], spans[i + n - 1][1])
    return passage


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


def drop_copied(candidates: list[dict], passages: dict[str, str]) -> list[dict]:
    """Keep candidates ({"text", "docid", "rest"}: rest = its positive passage as it will be stored)
    whose text occurs in no other candidate for another passage and verbatim in no passage but the
    one it was cut from, and not in `rest`: a copied query has several right answers, or a trivial one."""
    # The same sentence picked twice for one passage (say by two methods) is one candidate.
    candidates = list({(normalize(c["text"]), c["docid"]): c for c in reversed(candidates)}.values())[::-1]
    dup = drop_duplicates(c["text"] for c in candidates)
    ids = list(passages)
    norm = [normalize(passages[i]) for i in ids]
    postings: dict[str, set[int]] = defaultdict(set)
    for i, text in enumerate(norm):
        for w in set(_TOKEN.findall(text)):
            postings[w].add(i)
    keep = []
    for c in candidates:
        q = normalize(c["text"])
        if q in dup or q in normalize(c["rest"]):
            continue
        tokens = _TOKEN.findall(q)
        # A passage containing the query contains all its words, so the two rarest bound the passages
        # to check. First and last words may sit inside longer passage words: use the inner ones.
        inner = tokens[1:-1] if len(tokens) > 3 else tokens
        rare = sorted(set(inner), key=lambda w: len(postings.get(w, ())))[:2]
        maybe = set.intersection(*(postings.get(w, set()) for w in rare)) if rare else set(range(len(ids)))
        if any(q in norm[i] for i in maybe if ids[i] != c["docid"]):
            continue
        keep.append(c)
    return keep


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
    for c in candidates:
        c["rest"] = new_passages[c["docid"]]
    kept = drop_copied(candidates, passages)
    for c in kept:
        del c["rest"]
    with_query = {c["docid"] for c in kept}
    # A passage whose every query was dropped keeps its full text.
    return {d: t if d in with_query else passages[d] for d, t in new_passages.items()}, kept


def generate(passages: dict[str, str], cfg: dict, seed: int) -> tuple[dict[str, str], list[dict]]:
    """The one entry point: dispatch on `cfg["generator"]` (params["ingest"])."""
    if cfg.get("generator", "heuristic") == "heuristic":
        return heuristic(passages, cfg.get("queries_per_chunk", 1), seed)
    raise UserError(f"params.yaml: ingest.generator: '{cfg['generator']}' is not implemented yet; "
                    f"use 'heuristic'")
