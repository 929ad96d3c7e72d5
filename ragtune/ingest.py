"""Bring a dataset into the pipeline's raw BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.

Sources (params ingest.source):
- "pydoc": the default dataset, built from this interpreter's documentation (ragtune.pydoc_corpus);
- "beir": a folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv, validated line by line;
- "documents": a folder of .txt/.md/.html/.jsonl files, chunked, with generated queries;
- "conversations": a folder with corpus.jsonl and conversations.jsonl (ragtune.conversations), each
  judged user turn a query;
- "groups": FlagEmbedding training files / MTEB reranking sets, <split>.jsonl of {"query", "pos", "neg"}
  (ragtune.groups): the texts become the corpus.
Everything is read and validated before the first file is written.
"""
from __future__ import annotations

import html
import logging
import random
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from . import io
from .chunking import chunk_text
from .errors import UserError, located

log = logging.getLogger(__name__)

DOCUMENT_SUFFIXES = (".txt", ".md", ".html", ".htm", ".jsonl")


def ingest(cfg: dict, seed: int, out_dir: str | Path) -> dict[str, Any]:
    """Build the raw dataset for `cfg["source"]` (params["ingest"]) under `out_dir`; return stats."""
    source = cfg.get("source", "pydoc")
    if source == "pydoc":
        from .pydoc_corpus import build
        corpus, queries, qrels = build(cfg, seed)
        qrels_by_split, stats = {"all": qrels}, {}
    elif source == "beir":
        corpus, queries, qrels_by_split, stats = read_beir(_folder(cfg), strict=cfg.get("strict", True))
    elif source == "documents":
        corpus, queries, qrels_by_split, stats = read_documents(_folder(cfg), cfg, seed)
    elif source == "conversations":
        from .conversations import read_conversations
        corpus, queries, qrels_by_split, stats = read_conversations(_folder(cfg), cfg,
                                                                    strict=cfg.get("strict", True))
    elif source == "groups":
        from .groups import read_groups_folder
        corpus, queries, qrels_by_split, stats = read_groups_folder(_folder(cfg), strict=cfg["strict"])
    else:
        raise UserError(f"params.yaml: ingest.source: unknown source '{source}'")
    _check_consistent(corpus, queries, qrels_by_split)
    write_raw(Path(out_dir), corpus, queries, qrels_by_split)
    stats = {"source": source, "documents": len(corpus), "queries": len(queries),
             "judgments": {s: sum(len(d) for d in q.values()) for s, q in sorted(qrels_by_split.items())},
             "judged_queries": {s: len(q) for s, q in sorted(qrels_by_split.items())}, **stats}
    log.info("ingest (%s): %d documents, %d queries, judgments %s -> %s", source, len(corpus), len(queries),
             stats["judgments"], out_dir)
    return stats


def _folder(cfg: dict) -> Path:
    if not cfg.get("path"):
        raise UserError(f"params.yaml: ingest.path: required when ingest.source is '{cfg.get('source')}'")
    path = Path(cfg["path"]).expanduser()
    if not path.is_dir():
        raise UserError(f"params.yaml: ingest.path: no such folder: {path}")
    return path


def write_raw(out_dir: Path, corpus: dict, queries: dict, qrels_by_split: dict[str, io.Qrels]) -> None:
    io.write_corpus(out_dir / "corpus.jsonl", corpus)
    io.write_queries(out_dir / "queries.jsonl", queries)
    qdir = out_dir / "qrels"
    for old in sorted(qdir.glob("*.tsv")) if qdir.is_dir() else []:
        if old.stem not in qrels_by_split:  # a previous run's split that this source lacks
            old.unlink()
    for split, qrels in sorted(qrels_by_split.items()):
        io.write_qrels(qdir / f"{split}.tsv", qrels)


def _check_consistent(corpus: dict, queries: dict, qrels_by_split: dict[str, io.Qrels]) -> None:
    """Generated sources must be consistent by construction: a failure here is a bug, not user data."""
    for split, qrels in qrels_by_split.items():
        for qid, docs in qrels.items():
            assert qid in queries, f"{split}: judged query {qid} not in queries"
            for docid in docs:
                assert docid in corpus, f"{split}: judged document {docid} not in corpus"


def read_beir(folder: Path, strict: bool = True) -> tuple[dict, dict, dict[str, io.Qrels], dict]:
    """Read and cross-check a BEIR folder. Judgments naming an unknown query or document are an error
    naming file and line when `strict`, else dropped and counted."""
    # Texts stay on disk: the qrels check needs only ids, and write_raw streams the copy.
    corpus = io.CorpusFile(folder / "corpus.jsonl")
    queries = io.read_queries(folder / "queries.jsonl")
    qdir = folder / "qrels"
    files = sorted(qdir.glob("*.tsv")) if qdir.is_dir() else []
    if not files:
        raise UserError(f"{qdir}: no qrels files; expected qrels/<split>.tsv (e.g. qrels/test.tsv, or "
                        f"qrels/all.tsv for a source without splits)")
    qrels_by_split: dict[str, io.Qrels] = {}
    dropped = {"unknown_query": 0, "unknown_document": 0}
    for path in files:
        qrels, lines = io.read_qrels(path)
        kept: io.Qrels = {}
        for (qid, docid), lineno in sorted(lines.items(), key=lambda kv: kv[1]):
            problem = ("unknown_query", "query-id", f"unknown query id '{qid}' (not in queries.jsonl)") \
                if qid not in queries else \
                ("unknown_document", "corpus-id", f"unknown document id '{docid}' (not in corpus.jsonl)") \
                if docid not in corpus else None
            if problem:
                if strict:
                    raise located(path, lineno, problem[2] + "; set ingest.strict: false to drop such rows",
                                  problem[1])
                dropped[problem[0]] += 1
                continue
            kept.setdefault(qid, {})[docid] = qrels[qid][docid]
        if not kept:
            raise UserError(f"{path}: no usable judgments")
        qrels_by_split[path.stem] = kept
    if any(dropped.values()):
        log.warning("ingest: dropped qrels rows pointing at unknown ids: %s", dropped)
    return corpus, queries, qrels_by_split, {"dropped_judgments": dropped}


class _TextOnly(HTMLParser):
    """Visible text of an HTML page, block elements as paragraph breaks."""
    BLOCKS = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "pre", "section", "article"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        self._in_title = tag == "title"
        if tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.skip:
            self.skip -= 1
        if tag == "title":
            self._in_title = False
        if tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if self._in_title:
            self.title += data.strip()
        elif not self.skip:
            self.parts.append(data)


def _html_text(raw: str) -> tuple[str, str]:
    parser = _TextOnly()
    parser.feed(raw)
    text = "".join(parser.parts)
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return html.unescape(parser.title), "\n\n".join(p for p in paras if p)


def _documents(folder: Path) -> list[tuple[str, str, str, str, int | None]]:
    """(document id, title, text, file, line) for every document in the folder, sorted by path."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise UserError(f"{folder}: no documents ({', '.join(DOCUMENT_SUFFIXES)} files)")
    docs = []
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if path.suffix.lower() == ".jsonl":
            for lineno, obj in io.iter_jsonl(path):
                text = obj.get("text")
                if not isinstance(text, str) or not text.strip():
                    raise located(path, lineno, "missing or empty", "text")
                title = obj.get("title") or ""
                if not isinstance(title, str):
                    raise located(path, lineno, "expected a string", "title")
                docs.append((f"{rel}:{obj.get('_id', lineno)}", title, text, rel, lineno))
            continue
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        if path.suffix.lower() in (".html", ".htm"):
            title, text = _html_text(raw)
        else:
            title, text = "", raw
        if text.strip():
            docs.append((rel, title or path.stem, text, rel, None))
        else:
            log.warning("ingest: %s has no text; skipped", path)
    return docs


def read_documents(folder: Path, cfg: dict, seed: int) -> tuple[dict, dict, dict[str, io.Qrels], dict]:
    """Chunk every document, generate queries for the chunks (params ingest.generator), and keep up to
    `max_queries` of them (seeded). Queries carry their source file in metadata["source"], so
    prepare.group_by: source keeps one file's queries in one split."""
    from .querygen import generate

    size, overlap, unit = cfg.get("chunk_size", 1000), cfg.get("chunk_overlap", 200), cfg.get("chunk_unit", "chars")
    corpus: dict[str, dict[str, str]] = {}
    source_of: dict[str, str] = {}
    for doc_id, title, text, rel, lineno in _documents(folder):
        chunks = chunk_text(text, size, overlap, unit)
        for i, chunk in enumerate(chunks):
            cid = f"{doc_id}#{i}"
            if cid in corpus:
                where = f"{folder / rel}:{lineno}" if lineno else str(folder / rel)
                raise UserError(f"{where}: duplicate document id '{doc_id}'")
            corpus[cid] = {"title": title, "text": chunk}
            source_of[cid] = rel
    gen_stats: dict[str, Any] = {}
    passages, generated = generate({i: d["text"] for i, d in corpus.items()}, cfg, seed, stats=gen_stats)
    rng = random.Random(seed)
    rng.shuffle(generated)
    generated = sorted(generated[:cfg.get("max_queries", 600)], key=lambda g: (g["docid"], g["text"]))
    if not generated:
        raise UserError(f"{folder}: no usable queries could be generated from the documents "
                        f"(too short, or no prose sentences)")
    with_query = {g["docid"] for g in generated}
    for docid in corpus:  # a chunk keeps its query sentence unless that query was kept
        if docid in with_query:
            corpus[docid]["text"] = passages[docid]
    queries, qrels = {}, {}
    for n, g in enumerate(generated):
        qid = f"q{n:05d}"
        queries[qid] = {"text": g["text"], "metadata": {"method": g["method"], "source": source_of[g["docid"]]}}
        qrels[qid] = {g["docid"]: 1}
    stats = {"files": len(set(source_of.values())), "chunks": len(corpus),
             "generator": cfg.get("generator", "heuristic")}
    if gen_stats:
        stats["generation"] = gen_stats
    return corpus, queries, {"all": qrels}, stats
