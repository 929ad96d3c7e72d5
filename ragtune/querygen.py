"""Query generation for passages that come without queries.

`heuristic` needs no model: inverse cloze (one informative sentence of a passage becomes the query
and is removed from the passage, so the passage must be found from its context, not by string match).
`llm` asks any OpenAI-compatible chat endpoint (ragtune.llm) for queries, caching every answer per
passage in `.cache/querygen/` so a rerun or a resumed run never pays for the same passage twice.
The filters here (too short, generic, duplicated) are shared by every generator.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from .chunking import split_sentences
from .language import UNSPACED

log = logging.getLogger(__name__)

QUERYGEN_CACHE = Path(".cache") / "querygen"  # relative to the cwd (the project root in a stage)

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
_WORD = re.compile(r"[^\W\d_]{2,}")  # letters of any script
_UNSPACED_CHAR = re.compile(f"[{UNSPACED}]")
SENTENCE_ENDS = (".", "?", "!", "。", "？", "！", "؟", "।")
_TOKEN = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive form used for every duplicate check."""
    return " ".join(text.casefold().split())


def is_good_query(text: str) -> bool:
    """A query a person could plausibly type: prose, not too short or long, not boilerplate or code."""
    t = " ".join(text.split())
    wide = len(_UNSPACED_CHAR.findall(t))  # a Chinese or Korean character says about as much as two Latin ones
    if not MIN_QUERY_CHARS <= len(t) + wide <= MAX_QUERY_CHARS:
        return False
    # Unspaced scripts (Chinese, Japanese, Thai ...): about two characters a word.
    words = len(_WORD.findall(_UNSPACED_CHAR.sub(" ", t))) + wide // 2
    if words < MIN_QUERY_WORDS or _GENERIC.match(t):
        return False
    letters = sum(map(str.isalpha, t))
    if letters < 0.6 * len(t):  # mostly symbols/digits: code, a table row or a signature
        return False
    if t.startswith((">>>", "...", "*", "-", "=", ":", "(", "[", "{")) or "::=" in t:
        return False
    return t[0].isupper() or t[0] in "\"'" or (t[0].isalpha() and not t[0].islower())  # caseless scripts


def informative_sentences(passage: str) -> list[str]:
    """Prose sentences of a passage (code blocks, headings and grammar rules skipped) that make good queries."""
    out = []
    for para in re.split(r"\n\s*\n", passage):
        if para.startswith((" ", "\t")) or para.lstrip().startswith((">>>", "*", "=")):
            continue  # indented blocks are code or grammar in the reference manual
        for sent in split_sentences(para):
            if is_good_query(sent) and sent.endswith(SENTENCE_ENDS):
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


# A list marker or label an LLM puts before each query: "1.", "2)", "-", "*", "Q1:", "Query 2:".
_MARKER = re.compile(r"^\s*(?:(?:[-*\u2022]+|\(?\d+[.):]|q(?:uery)?\s*\d*\s*[:.)])\s*)+", re.I)


def parse_queries(content: str, n: int) -> list[str]:
    """Up to `n` queries from an LLM reply: one per line (list markers, quotes and a preamble line
    ending in ':' removed), or a JSON list of strings."""
    text = content.strip()
    lines: list = text.splitlines()
    if text.startswith("["):
        try:
            items = json.loads(text)
            if isinstance(items, list):
                lines = [i for i in items if isinstance(i, str)]
        except json.JSONDecodeError:
            pass
    out: list[str] = []
    for line in lines:
        q = _MARKER.sub("", line).strip().strip("\"'`").strip()
        q = " ".join(q.split())
        if not q or q.endswith(":") or len(q.split()) < 2 or len(q) > MAX_QUERY_CHARS:
            continue
        if normalize(q).rstrip("?.!") not in {normalize(o).rstrip("?.!") for o in out}:
            out.append(q)
    return out[:n]


def cache_key(passage: str, model: str, prompt: str, n: int) -> str:
    """What a cached answer depends on: the passage, the model, the prompt template and n."""
    blob = json.dumps([passage, model, prompt, n], ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def render_prompt(template: str, passage: str, n: int) -> str:
    # Plain replacement, not str.format: a prompt may contain other braces (a JSON example, say).
    return template.replace("{n}", str(n)).replace("{passage}", passage)


def _queries_entry(n: int):
    """The cache entry of one reply: {"queries": [...]}; a reply without a query line is a BadResponse."""
    from .llm import BadResponse

    def parse(reply: str) -> dict:
        queries = parse_queries(reply, n)
        if not queries:
            raise BadResponse("no query lines in the reply")
        return {"queries": queries}

    return parse


def llm(passages: dict[str, str], cfg: dict, seed: int, *, cache_dir: str | Path | None = None,
        backoff: float = 1.0, stats: dict | None = None) -> tuple[dict[str, str], list[dict]]:
    """Queries from an OpenAI-compatible endpoint (`cfg` is params["ingest"], its "llm" section the
    endpoint). Passages are asked in a seeded order until `max_queries` queries are in hand, so no
    money is spent on queries that would be thrown away. Each answer (or bad answer) is cached per
    passage as one small json file; a passage whose requests kept failing is not cached, and is tried
    again on the next run. Returns (passages unchanged, [{"text", "docid", "method"}]) and fills
    `stats` with counts (bad_response, failed, ...)."""
    from .llm import FailureStreak, Transient, api_key, cached_reply

    lcfg, n = cfg["llm"], cfg["queries_per_chunk"]
    budget = cfg["max_queries"]
    cache = Path(cache_dir) if cache_dir is not None else QUERYGEN_CACHE
    key = api_key(lcfg)
    if key is None:
        log.info("llm: $%s is not set; sending no Authorization header", lcfg["api_key_env"])
    order = sorted(passages)
    random.Random(seed).shuffle(order)
    counts = {"passages_asked": 0, "bad_response": 0, "failed": 0, "no_query": 0}
    hits = fresh = 0
    streak = FailureStreak(lcfg, cache, "passages")
    candidates: list[dict] = []
    from tqdm import tqdm

    bar = tqdm(total=min(budget, n * len(order)), desc="llm queries", unit="query", disable=None)
    for docid in order:
        if len(candidates) >= budget:
            break
        counts["passages_asked"] += 1
        h = cache_key(passages[docid], lcfg["model"], lcfg["prompt"], n)
        try:
            entry, asked = cached_reply(render_prompt(lcfg["prompt"], passages[docid], n), lcfg,
                                        cache / h[:2] / f"{h}.json", _queries_entry(n), backoff=backoff, key=key)
        except Transient as e:
            counts["failed"] += 1
            log.warning("llm: gave up on passage %s: %s", docid, e)
            streak.failed(e)
            continue
        fresh += asked
        hits += not asked
        streak.succeeded()
        if entry.get("bad") is not None or not isinstance(entry.get("queries"), list):
            counts["bad_response"] += 1
            continue
        for q in entry["queries"]:
            candidates.append({"text": q, "docid": docid, "method": "llm"})
        bar.update(len(entry["queries"]))
    bar.close()
    for c in candidates:
        c["rest"] = passages[c["docid"]]
    kept = drop_copied(candidates, passages)
    for c in kept:
        del c["rest"]
    counts["dropped_copied_or_duplicate"] = len(candidates) - len(kept)
    log.info("llm: %d queries from %d passages (%d cached answers, %d new requests answered); %s",
             len(kept), counts["passages_asked"], hits, fresh, counts)
    if stats is not None:
        stats.update(counts)
    return dict(passages), sorted(kept, key=lambda c: (c["docid"], c["text"]))


def generate(passages: dict[str, str], cfg: dict, seed: int, *, stats: dict | None = None,
             cache_dir: str | Path | None = None, backoff: float = 1.0) -> tuple[dict[str, str], list[dict]]:
    """The one entry point: dispatch on `cfg["generator"]` (params["ingest"]). Both generators return
    (passages as they will be stored, [{"text", "docid", "method"}]); `stats` collects counts."""
    generator = cfg["generator"]
    if generator == "heuristic":
        return heuristic(passages, cfg["queries_per_chunk"], seed)
    return llm(passages, cfg, seed, cache_dir=cache_dir, backoff=backoff, stats=stats)
