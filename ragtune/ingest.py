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

import codecs
import html
import logging
import random
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import io
from .chunking import chunk_text
from .errors import UserError, located
from .splits import source_splits

log = logging.getLogger(__name__)

DOCUMENT_SUFFIXES = (".txt", ".md", ".html", ".htm", ".jsonl")


def ingest(cfg: dict, seed: int, out_dir: str | Path) -> dict[str, Any]:
    """Build the raw dataset for `cfg["source"]` (params["ingest"]) under `out_dir`; return stats."""
    source = cfg["source"]
    if source == "pydoc":
        from .pydoc_corpus import build
        corpus, queries, qrels = build(cfg, seed)
        qrels_by_split, stats = {"all": qrels}, {}
    elif source == "beir":
        corpus, queries, qrels_by_split, stats = read_beir(_folder(cfg), strict=cfg["strict"])
    elif source == "documents":
        corpus, queries, qrels_by_split, stats = read_documents(_folder(cfg), cfg, seed)
    elif source == "conversations":
        from .conversations import read_conversations
        corpus, queries, qrels_by_split, stats = read_conversations(_folder(cfg), cfg,
                                                                    strict=cfg["strict"])
    else:  # groups
        from .groups import read_groups_folder
        corpus, queries, qrels_by_split, stats = read_groups_folder(_folder(cfg), strict=cfg["strict"])
    _check_consistent(corpus, queries, qrels_by_split)
    cut = write_raw(Path(out_dir), corpus, queries, qrels_by_split)
    stats = {"source": source, "documents": len(corpus), "queries": len(queries),
             "judgments": {s: sum(len(d) for d in q.values()) for s, q in sorted(qrels_by_split.items())},
             "judged_queries": {s: len(q) for s, q in sorted(qrels_by_split.items())},
             "truncated_documents": cut, **stats}
    log.info("ingest (%s): %d documents, %d queries, judgments %s -> %s", source, len(corpus), len(queries),
             stats["judgments"], out_dir)
    return stats


def _folder(cfg: dict) -> Path:
    path = Path(cfg["path"]).expanduser()
    if not path.is_dir():
        raise UserError(f"params.yaml: ingest.path: no such folder: {path}")
    return path


def write_raw(out_dir: Path, corpus: dict, queries: dict, qrels_by_split: dict[str, io.Qrels]) -> int:
    """Write the raw dataset; return how many documents were cut to io.MAX_TEXT_CHARS characters."""
    cut: list[str] = []
    io.write_corpus(out_dir / "corpus.jsonl", _capped(corpus, cut))
    if cut:
        log.warning("ingest: %d document(s) longer than %d characters were cut to that length (no model "
                    "reads that far), e.g. %s", len(cut), io.MAX_TEXT_CHARS, ", ".join(cut[:5]))
    io.write_queries(out_dir / "queries.jsonl", queries)
    qdir = out_dir / "qrels"
    for old in sorted(qdir.glob("*.tsv")) if qdir.is_dir() else []:
        if old.stem not in qrels_by_split:  # a previous run's split that this source lacks
            old.unlink()
    for split, qrels in sorted(qrels_by_split.items()):
        io.write_qrels(qdir / f"{split}.tsv", qrels)
    return len(cut)


def _capped(corpus, cut: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """The corpus's (id, doc) pairs, streamed, with titles and texts cut at io.MAX_TEXT_CHARS; the ids
    of cut documents are appended to `cut`."""
    limit = io.MAX_TEXT_CHARS
    for doc_id, doc in corpus.items():
        title = doc.get("title", "")
        if len(doc["text"]) > limit or len(title) > limit:
            cut.append(doc_id)
            doc = {"title": title[:limit], "text": doc["text"][:limit]}
        yield doc_id, doc


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
    source_splits([p.stem for p in files], where=str(qdir))  # prepare would refuse them, after the copy
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


def _doc_id(rel: str) -> str:
    """A file's path as a document id: whitespace (which TREC runs cannot hold) and % percent-encoded,
    so `my notes.txt` is `my%20notes.txt` and two paths never share an id."""
    return re.sub(r"[\s%]", lambda m: quote(m.group(), safe=""), rel)


def _documents(folder: Path) -> tuple[list[tuple[str, str, str, str, int | None]], dict[str, int]]:
    """(document id, title, text, file, line) for every document in the folder, sorted by path, and the
    number of files skipped: binary (a NUL byte: an image, an archive named .txt) or another suffix."""
    visible = sorted(p for p in folder.rglob("*") if p.is_file()
                     and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    files = [p for p in visible if p.suffix.lower() in DOCUMENT_SUFFIXES]
    skipped = {"binary": [], "other_suffix": [p.relative_to(folder).as_posix() for p in visible
                                               if p.suffix.lower() not in DOCUMENT_SUFFIXES]}
    docs = []
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if path.suffix.lower() == ".jsonl":
            docs += _jsonl_documents(path, rel)
            continue
        raw = path.read_bytes()
        if b"\0" in raw and not raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            skipped["binary"].append(rel)  # UTF-16 text has NULs too: decode_text says to re-encode it
            continue
        text = io.decode_text(path, raw)
        title = ""
        if path.suffix.lower() in (".html", ".htm"):
            title, text = _html_text(text)
        if text.strip():
            docs.append((_doc_id(rel), title or path.stem, text, rel, None))
        else:
            log.warning("ingest: %s has no text; skipped", path)
    for kind, names in skipped.items():
        if names:
            log.warning("ingest: skipped %d %s file(s) in %s, e.g. %s", len(names), kind.replace("_", " "),
                        folder, ", ".join(names[:5]))
    if not docs:
        raise UserError(f"{folder}: no documents ({', '.join(DOCUMENT_SUFFIXES)} files with text); skipped "
                        f"{len(skipped['binary'])} binary and {len(skipped['other_suffix'])} other files")
    return docs, {kind: len(names) for kind, names in skipped.items()}


def _jsonl_documents(path: Path, rel: str) -> list[tuple[str, str, str, str, int | None]]:
    docs = []
    for lineno, obj in io.iter_jsonl(path):
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            raise located(path, lineno, "missing or empty", "text")
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise located(path, lineno, "expected a string", "title")
        key = obj.get("_id", lineno)
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise located(path, lineno, "expected a string", "_id")
        io.check_id(path, lineno, str(key), "_id")
        docs.append((f"{_doc_id(rel)}:{key}", title, text, rel, lineno))
    return docs


def read_documents(folder: Path, cfg: dict, seed: int) -> tuple[dict, dict, dict[str, io.Qrels], dict]:
    """Chunk every document, generate queries for the chunks (params ingest.generator), and keep up to
    `max_queries` of them (seeded). Queries carry their source file in metadata["source"], so
    prepare.group_by: source keeps one file's queries in one split."""
    from .querygen import generate

    size, overlap, unit = cfg["chunk_size"], cfg["chunk_overlap"], cfg["chunk_unit"]
    corpus: dict[str, dict[str, str]] = {}
    source_of: dict[str, str] = {}
    docs, skipped = _documents(folder)
    for doc_id, title, text, rel, lineno in docs:
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
    generated = sorted(generated[:cfg["max_queries"]], key=lambda g: (g["docid"], g["text"]))
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
    stats = {"files": len(set(source_of.values())), "skipped_files": skipped, "chunks": len(corpus),
             "generator": cfg["generator"]}
    if gen_stats:
        stats["generation"] = gen_stats
    return corpus, queries, {"all": qrels}, stats
