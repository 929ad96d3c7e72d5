"""Multi-turn conversations (as in MTRAG) as retrieval queries.

Input: a folder with
- corpus.jsonl: BEIR corpus lines, {"_id", "title" (optional), "text"};
- conversations.jsonl: one conversation per line:
    {"id": "c1", "domain": "cloud",                               # domain optional
     "turns": [{"speaker": "user", "text": "How do I reset my password?",
                "relevant": ["doc12", {"id": "doc40", "score": 2}]},  # judged user turns only
               {"speaker": "agent", "text": "Open Settings, then ..."},
               {"speaker": "user", "text": "And on mobile?", "rewrite": "How do I reset my password on mobile?",
                "relevant": ["doc13"]}]}

Every user turn with a non-empty "relevant" list becomes one query, id "<conversation id>::<turn>",
where turn counts user turns from 1. A relevant entry is a document id (grade 1) or {"id", "score"}
(an integer grade; 0 = judged not relevant). Unjudged user turns and agent turns are context only.
The query text (params ingest.conversation.query_mode):
- last_turn: the user turn's text;
- last_n_turns: the last `last_n` turns of either speaker up to and including this one, one per line,
  most recent last;
- rewrite: the turn's `rewrite_field` (a standalone rewrite of the question); missing is an error;
- llm_rewrite: an LLM's standalone rewrite of the turn from the conversation so far, asked from the
  OpenAI-compatible endpoint of params ingest.llm (ragtune.llm: the query generator's client) with the
  prompt ingest.conversation.rewrite_prompt, each answer cached per turn in .cache/rewrite/. Asked only
  after the whole file is validated. A turn whose requests kept failing, or whose answer is unusable,
  is left out and counted (stats "rewrite"); failing 3 turns in a row stops with an error.
Query metadata: conversation_id, turn, and domain when the conversation has one, so prepare keeps a
conversation in one split (ragtune.splits groups by conversation_id by default).
"""
from __future__ import annotations

import logging
from pathlib import Path

from . import io
from .errors import UserError, located

log = logging.getLogger(__name__)

SPEAKERS = ("user", "agent")


def _relevant(path: Path, lineno: int, field: str, value) -> dict[str, int]:
    if not isinstance(value, list):
        raise located(path, lineno, "expected a list of document ids or {\"id\", \"score\"} objects", field)
    out: dict[str, int] = {}
    for j, item in enumerate(value):
        where = f"{field}[{j}]"
        if isinstance(item, dict):
            docid, score = item.get("id"), item.get("score", 1)
            if isinstance(score, bool) or not isinstance(score, int):
                raise located(path, lineno, f"expected an integer grade, got {score!r}", f"{where}.score")
        else:
            docid, score = item, 1
        if not isinstance(docid, (str, int)) or isinstance(docid, bool) or not str(docid).strip():
            raise located(path, lineno, "expected a document id", where if not isinstance(item, dict)
                          else f"{where}.id")
        if str(docid) in out:
            raise located(path, lineno, f"document '{docid}' listed twice", where)
        out[str(docid)] = score
    return out


REWRITE_CACHE = Path(".cache") / "rewrite"  # relative to the cwd (the project root in a stage)


def _query_text(turns: list[dict], i: int, cfg: dict, path: Path, lineno: int) -> str | None:
    """The query text of turn i; None for llm_rewrite, whose texts are asked for after validation."""
    mode = cfg["query_mode"]
    if mode == "llm_rewrite":
        return None
    if mode == "last_turn":
        return turns[i]["text"]
    if mode == "last_n_turns":
        n = cfg["last_n"]
        return "\n".join(" ".join(t["text"].split()) for t in turns[max(0, i - n + 1):i + 1])
    field = cfg["rewrite_field"]  # mode "rewrite"
    value = turns[i].get(field)
    if not isinstance(value, str) or not value.strip():
        raise located(path, lineno, "missing or empty, and ingest.conversation.query_mode is 'rewrite'",
                      f"turns[{i}].{field}")
    return value


def render_conversation(turns: list[dict]) -> str:
    """The conversation so far, one turn a line: `user: ...` / `agent: ...`."""
    return "\n".join(f"{t['speaker']}: {' '.join(t['text'].split())}" for t in turns)


def llm_rewrites(contexts: dict[str, list[dict]], cfg: dict, *, cache_dir: str | Path | None = None,
                 backoff: float = 1.0) -> tuple[dict[str, str], dict]:
    """{qid: standalone query} for each judged turn (the last of its `contexts` turns), and counts.
    `cfg` is params["ingest"]: the endpoint is its "llm" section, the prompt conversation.rewrite_prompt."""
    from .llm import BadResponse, FailureStreak, Transient, api_key, cached_reply
    from .querygen import cache_key, parse_queries

    lcfg, template = cfg["llm"], cfg["conversation"]["rewrite_prompt"]
    cache = Path(cache_dir) if cache_dir is not None else REWRITE_CACHE
    key = api_key(lcfg)

    def parse(reply: str) -> dict:
        lines = parse_queries(reply, 1)
        if not lines:
            raise BadResponse("no query line in the reply")
        return {"query": lines[0]}

    out: dict[str, str] = {}
    counts = {"turns": len(contexts), "asked": 0, "cached": 0, "failed": 0, "bad_response": 0}
    streak = FailureStreak(lcfg, cache, "turns")
    for qid, turns in contexts.items():
        prompt = template.replace("{conversation}", render_conversation(turns)).replace(
            "{question}", " ".join(turns[-1]["text"].split()))
        h = cache_key(prompt, lcfg["model"], template, 1)
        try:
            entry, asked = cached_reply(prompt, lcfg, cache / h[:2] / f"{h}.json", parse, backoff=backoff, key=key)
        except Transient as e:
            counts["failed"] += 1
            log.warning("llm_rewrite: gave up on turn %s: %s", qid, e)
            streak.failed(e)
            continue
        streak.succeeded()
        counts["asked" if asked else "cached"] += 1
        if isinstance(entry.get("query"), str) and entry["query"].strip():
            out[qid] = entry["query"]
        else:
            counts["bad_response"] += 1
    log.info("llm_rewrite: %d of %d turns rewritten; %s", len(out), len(contexts), counts)
    return out, counts


def read_conversations(folder: Path, cfg: dict, strict: bool = True, *, cache_dir: str | Path | None = None,
                       backoff: float = 1.0) -> tuple[dict, dict, dict[str, io.Qrels], dict]:
    """Read and validate a conversations folder; `cfg` is params["ingest"]. Judgments naming an unknown
    document are an error (file, line, field) when `strict`, else dropped and counted. `cache_dir` and
    `backoff` are for query_mode llm_rewrite (tests pass their own)."""
    corpus = io.CorpusFile(folder / "corpus.jsonl")  # ids in memory, texts streamed when written
    path = folder / "conversations.jsonl"
    conv_cfg = cfg["conversation"]
    contexts: dict[str, list[dict]] = {}  # llm_rewrite: each judged turn's conversation so far
    queries: dict[str, dict] = {}
    qrels: io.Qrels = {}
    seen: dict[str, int] = {}
    stats = {"conversations": 0, "user_turns": 0, "unjudged_user_turns": 0, "dropped_judgments": 0}
    for lineno, obj in io.iter_jsonl(path):
        conv_id = obj.get("id")
        if not isinstance(conv_id, (str, int)) or isinstance(conv_id, bool) or not str(conv_id).strip():
            raise located(path, lineno, "missing or empty conversation id", "id")
        conv_id = io.check_id(path, lineno, str(conv_id), "id")  # part of every query id of the conversation
        if conv_id in seen:
            raise located(path, lineno, f"duplicate conversation id '{conv_id}' (first on line {seen[conv_id]})",
                          "id")
        seen[conv_id] = lineno
        domain = obj.get("domain")
        if domain is not None and not isinstance(domain, str):
            raise located(path, lineno, "expected a string", "domain")
        turns = _checked_turns(path, lineno, obj.get("turns"))
        stats["conversations"] += 1
        user_turn = 0
        for i, t in enumerate(turns):
            if t["speaker"] != "user":
                continue
            user_turn += 1
            stats["user_turns"] += 1
            judged = _relevant(path, lineno, f"turns[{i}].relevant", t.get("relevant", []))
            for docid in [d for d in judged if d not in corpus]:
                if strict:
                    raise located(path, lineno, f"unknown document id '{docid}' (not in corpus.jsonl); set "
                                                f"ingest.strict: false to drop such judgments",
                                  f"turns[{i}].relevant")
                del judged[docid]
                stats["dropped_judgments"] += 1
            if not judged:
                stats["unjudged_user_turns"] += 1
                continue
            qid = f"{conv_id}::{user_turn}"
            if qid in queries:  # "a::1" twice: conversation ids "a" and "a::1"-like clashes
                raise located(path, lineno, f"query id '{qid}' clashes with another conversation's", "id")
            metadata = {"conversation_id": conv_id, "turn": user_turn}
            if domain:
                metadata["domain"] = domain
            queries[qid] = {"text": _query_text(turns, i, conv_cfg, path, lineno), "metadata": metadata}
            qrels[qid] = judged
            if queries[qid]["text"] is None:
                contexts[qid] = turns[:i + 1]
    if not queries:
        raise UserError(f"{path}: no judged user turns (a user turn needs a non-empty \"relevant\" list)")
    if contexts:
        stats["rewrite"] = _apply_rewrites(contexts, queries, qrels, cfg, cache_dir=cache_dir, backoff=backoff)
    if stats["dropped_judgments"]:
        log.warning("ingest: dropped %d judgments pointing at unknown documents", stats["dropped_judgments"])
    stats["query_mode"] = conv_cfg["query_mode"]
    return corpus, queries, {"all": qrels}, stats


def _checked_turns(path: Path, lineno: int, turns) -> list[dict]:
    """The conversation's turns, or an error naming the line and the first bad field."""
    if not isinstance(turns, list) or not turns:
        raise located(path, lineno, "expected a non-empty list of turns", "turns")
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise located(path, lineno, "expected an object", f"turns[{i}]")
        if t.get("speaker") not in SPEAKERS:
            raise located(path, lineno, f"expected 'user' or 'agent', got {t.get('speaker')!r}",
                          f"turns[{i}].speaker")
        if not isinstance(t.get("text"), str) or not t["text"].strip():
            raise located(path, lineno, "missing or empty", f"turns[{i}].text")
        if "relevant" in t and t["speaker"] != "user":
            raise located(path, lineno, "only user turns can have relevant documents", f"turns[{i}].relevant")
    return turns


def _apply_rewrites(contexts: dict[str, list[dict]], queries: dict, qrels: io.Qrels, cfg: dict, *,
                    cache_dir, backoff: float) -> dict:
    """llm_rewrite: set each judged turn's query text from the endpoint; returns the request counts."""
    texts, counts = llm_rewrites(contexts, cfg, cache_dir=cache_dir, backoff=backoff)
    for qid in contexts:
        if qid in texts:
            queries[qid]["text"] = texts[qid]
        else:  # failed or unusable answer: left out, counted, asked again (failed) on the next run
            del queries[qid], qrels[qid]
    if not queries:
        raise UserError(f"params.yaml: ingest.llm: no turn could be rewritten ({counts})")
    return counts
