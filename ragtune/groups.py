"""Training groups and reranking sets (FlagEmbedding, MTEB) as a retrieval dataset.

Input: a folder with `<split>.jsonl` files, split names as for qrels (train, val / dev / valid /
validation, test, all; ragtune.splits.ALIASES); at least one. One query a line:
    {"query": str, "pos": [str], "neg": [str]}              FlagEmbedding's training files
    {"query": str, "positive": [str], "negative": [str]}    MTEB's reranking sets
with optional "pos_scores" / "neg_scores" (one number per text), "prompt" and "type" (strings).
`neg` may be missing or empty; `pos` must not.

There are no ids: the texts are the data.
- Documents: every pos/neg text (surrounding whitespace trimmed), id "d" + the first 16 hex digits
  of its SHA-256, so the same text always gets the same id and identical texts are one document.
- Queries: id "q" + the same hash of the query text. Identical query texts in one file are one query
  whose judgments are the union of the lines' (a text judged twice keeps its highest grade). The same
  query text in two split files is an error naming both lines (`ingest.strict: false`: it stays in the
  evaluation split, test before val before train, and is dropped from the other, counted).
- Judgments: each pos text is relevant, each neg text judged non-relevant (grade 0; a neg that is
  also a pos of the same query is dropped). A positive's grade is 1, or its pos_score when every
  pos_score in the dataset is a whole number >= 1 (graded relevance, e.g. 1-3); otherwise pos_scores
  are teacher scores for distillation (e.g. 0.93, or logits) and every positive gets grade 1. neg_scores
  are validated but not used.
- Query metadata: "prompt" and "type" when given (kept, not applied to the text).
"""
from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Any

from . import io
from .errors import UserError, located
from .splits import ALIASES

log = logging.getLogger(__name__)

FIELD_NAMES = (("pos", "neg"), ("positive", "negative"))  # FlagEmbedding's, MTEB's
EVAL_ORDER = ("test", "val", "train", "all")  # a query text in two splits stays in the first of these


def text_id(prefix: str, text: str) -> str:
    """A stable id for a text: prefix + the first 16 hex digits of its SHA-256."""
    return prefix + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _strings(path: Path, lineno: int, obj: dict, field: str) -> list[str]:
    value = obj.get(field, [])
    if not isinstance(value, list):
        raise located(path, lineno, f"expected a list of strings, got {type(value).__name__}", field)
    out = []
    for j, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            got = repr(item) if isinstance(item, str) else type(item).__name__
            raise located(path, lineno, f"expected a non-empty string, got {got}", f"{field}[{j}]")
        out.append(item.strip())
    return out


def _scores(path: Path, lineno: int, obj: dict, field: str, n: int, of: str) -> list[float] | None:
    if field not in obj:
        return None
    value = obj[field]
    if not isinstance(value, list) or len(value) != n:
        size = f"{len(value)} scores" if isinstance(value, list) else type(value).__name__
        raise located(path, lineno, f"expected a list of {n} numbers (one per '{of}' text), got {size}", field)
    for j, s in enumerate(value):
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise located(path, lineno, f"expected a number, got {s!r}", f"{field}[{j}]")
    return [float(s) for s in value]


def parse_line(path: Path, lineno: int, obj: dict) -> dict[str, Any]:
    """One validated line: {"query", "pos", "neg", "pos_scores", "metadata"}; UserError names the field."""
    query = obj.get("query")
    if not isinstance(query, str) or not query.strip():
        got = "missing" if query is None else f"expected a non-empty string, got {query!r}"
        raise located(path, lineno, got, "query")
    names = [pair for pair in FIELD_NAMES if pair[0] in obj or pair[1] in obj]
    if len(names) > 1:
        raise located(path, lineno, "give either pos/neg or positive/negative, not both", "positive")
    pos_name, neg_name = names[0] if names else FIELD_NAMES[0]
    pos, neg = _strings(path, lineno, obj, pos_name), _strings(path, lineno, obj, neg_name)
    if not pos:
        raise located(path, lineno, "missing or empty: a query needs at least one positive text", pos_name)
    pos_scores = _scores(path, lineno, obj, "pos_scores", len(pos), pos_name)
    _scores(path, lineno, obj, "neg_scores", len(neg), neg_name)
    metadata = {}
    for field in ("prompt", "type"):
        if field in obj:
            if not isinstance(obj[field], str):
                raise located(path, lineno, f"expected a string, got {type(obj[field]).__name__}", field)
            metadata[field] = obj[field]
    return {"query": query.strip(), "pos": pos, "neg": neg, "pos_scores": pos_scores, "metadata": metadata}


def split_files(folder: Path) -> dict[str, Path]:
    """{split name: file} for the folder's <split>.jsonl files, train first; an error when there is none."""
    found = {p.stem: p for p in sorted(folder.glob("*.jsonl")) if p.stem.lower() in ALIASES}
    if not found:
        others = ", ".join(p.name for p in sorted(folder.glob("*.jsonl"))) or "none"
        raise UserError(f"{folder}: no split files; expected train.jsonl (and optionally val.jsonl, "
                        f"test.jsonl; dev/valid/validation/all also work), found jsonl files: {others}")
    ours = {}
    for name in found:
        if ALIASES[name.lower()] in ours:
            raise UserError(f"{folder}: split '{ALIASES[name.lower()]}' given twice ({ours[ALIASES[name.lower()]]}"
                            f".jsonl and {name}.jsonl)")
        ours[ALIASES[name.lower()]] = name
    return dict(sorted(found.items(), key=lambda kv: -EVAL_ORDER.index(ALIASES[kv[0].lower()])))


def _grade_rule(lines: list[tuple[str, Path, int, dict]]) -> bool:
    """True when every pos_score in the dataset is a whole number >= 1: they are relevance grades."""
    scores = [s for *_, g in lines for s in (g["pos_scores"] or [])]
    return bool(scores) and all(s >= 1 and s == int(s) for s in scores)


def read_groups_folder(folder: Path, strict: bool = True) -> tuple[dict, dict, dict[str, io.Qrels], dict]:
    """Read and validate a groups folder -> (corpus, queries, {split: qrels}, stats)."""
    lines = [(split, path, lineno, parse_line(path, lineno, obj))
             for split, path in split_files(folder).items() for lineno, obj in io.iter_jsonl(path)]
    graded = _grade_rule(lines)
    corpus: dict[str, dict[str, str]] = {}
    queries: dict[str, dict] = {}
    qrels_by_split: dict[str, io.Qrels] = {}
    first_seen: dict[str, tuple[str, Path, int]] = {}  # qid -> (split, file, line) where it first appeared
    stats = {"lines": len(lines), "merged_query_lines": 0, "negatives_equal_to_a_positive": 0,
             "queries_in_two_splits_dropped": 0, "grades": "pos_scores" if graded else "binary"}
    for split, path, lineno, g in lines:
        qid = text_id("q", g["query"])
        judged: dict[str, int] = {}
        for k, text in enumerate(g["pos"]):
            did = _document(corpus, text)
            judged[did] = max(judged.get(did, 0), int(g["pos_scores"][k]) if graded and g["pos_scores"] else 1)
        for text in g["neg"]:
            did = _document(corpus, text)
            if did in judged:
                stats["negatives_equal_to_a_positive"] += 1
            else:
                judged[did] = 0
        if qid in first_seen and first_seen[qid][0] != split:
            where = first_seen[qid]
            if strict:
                raise located(path, lineno, f"the same query text is in {where[1].name}:{where[2]}; a query must "
                                            f"be in one split (ingest.strict: false keeps it in the evaluation "
                                            f"split only)", "query")
            qid_split = min(where[0], split, key=lambda s: EVAL_ORDER.index(ALIASES[s.lower()]))
            stats["queries_in_two_splits_dropped"] += 1
            if qid_split == where[0]:
                continue
            del qrels_by_split[where[0]][qid]
        elif qid in first_seen:
            stats["merged_query_lines"] += 1
        first_seen[qid] = (split, path, lineno)
        queries.setdefault(qid, {"text": g["query"], "metadata": g["metadata"]})
        mine = qrels_by_split.setdefault(split, {}).setdefault(qid, {})
        for did, grade in judged.items():
            mine[did] = max(mine.get(did, grade), grade)
    qrels_by_split = {s: q for s, q in qrels_by_split.items() if q}
    used = {q for qrels in qrels_by_split.values() for q in qrels}
    queries = {q: v for q, v in queries.items() if q in used}
    if stats["negatives_equal_to_a_positive"]:
        log.info("ingest: dropped %d negatives whose text equals a positive of the same query",
                 stats["negatives_equal_to_a_positive"])
    stats["repeated_document_texts"] = sum(len(g["pos"]) + len(g["neg"]) for *_, g in lines) - len(corpus)
    return corpus, queries, qrels_by_split, stats


def _document(corpus: dict[str, dict[str, str]], text: str) -> str:
    did = text_id("d", text)
    old = corpus.setdefault(did, {"title": "", "text": text})
    assert old["text"] == text, f"hash collision between two document texts ({did})"
    return did
