"""The default dataset, built offline from the running interpreter's own documentation.

Passages: the reference-manual topics in `pydoc_data.topics` and the docstrings of a fixed list of
standard-library modules (modules, classes, functions, methods), chunked to about 600-1000 characters.
Queries, two kinds, no model needed:
- "summary": a function's or class's docstring summary line is the query; its positive passage is
  the rest of its documentation (dotted name as title, signature and docstring WITHOUT the summary).
- "inverse_cloze": one informative sentence of a passage is the query and is removed from it.
A query is kept only if its text occurs in no passage of the pool (not even its own positive) and in
no other query, so lexical copying cannot answer it and every query has exactly one right passage.
Everything iterates in sorted order with one seeded rng, so the same interpreter gives the same files.
"""
from __future__ import annotations

import importlib
import inspect
import io
import logging
import random
import re
import contextlib
import warnings
from collections import defaultdict

from .chunking import chunk_text
from .querygen import drop_duplicates, informative_sentences, inverse_cloze, is_good_query, normalize

log = logging.getLogger(__name__)

# Importable everywhere CPython 3.11 runs, without side effects (no GUI, no browser, no printing);
# modules missing from a build (e.g. no sqlite3) are skipped.
MODULES = sorted([
    "abc", "argparse", "array", "ast", "asyncio", "base64", "binascii", "bisect", "builtins", "bz2",
    "calendar", "cmath", "codecs", "collections", "collections.abc", "colorsys", "concurrent.futures",
    "configparser", "contextlib", "contextvars", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "dis", "email.message", "enum", "filecmp", "fnmatch", "fractions", "functools",
    "getopt", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac", "html", "html.parser",
    "http.client", "http.cookies", "importlib", "inspect", "io", "ipaddress", "itertools", "json",
    "keyword", "linecache", "locale", "logging", "logging.handlers", "lzma", "math", "mimetypes",
    "operator", "os", "pathlib", "pickle", "pkgutil", "platform", "plistlib", "pprint", "queue",
    "random", "re", "reprlib", "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal",
    "socket", "sqlite3", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "time", "timeit", "tokenize", "tomllib", "traceback", "types", "typing",
    "unicodedata", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref",
    "xml.etree.ElementTree", "zipfile", "zlib", "zoneinfo",
])

CHUNK_SIZE = 1000
MIN_REST_CHARS = 120   # a summary query needs this much documentation left to be findable
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # sentinel reprs in signatures differ per run


def _import(name: str):
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - a module this build lacks is simply left out
        log.info("pydoc corpus: skipping module %s (%s)", name, e)
        return None


def _signature(obj) -> str:
    try:
        return _ADDRESS.sub("", str(inspect.signature(obj)))
    except (TypeError, ValueError):
        return ""


def _split_doc(doc: str) -> tuple[str, str]:
    """(summary, rest): the summary is the first paragraph when it is one sentence-like line or two."""
    doc = inspect.cleandoc(doc)
    first, _, rest = doc.partition("\n\n")
    return " ".join(first.split()), rest.strip()


def _own(obj, modname: str) -> bool:
    owner = getattr(obj, "__module__", None) or ""
    return owner == modname or owner.lstrip("_") == modname.split(".")[-1]


def _entries(modname: str, module) -> list[dict]:
    """One entry per documented object of the module: {"name", "sig", "doc", "kind"}."""
    out = []
    if module.__doc__:
        out.append({"name": modname, "sig": "", "doc": inspect.cleandoc(module.__doc__), "kind": "module"})
    public = getattr(module, "__all__", None)
    names = sorted(n for n in (public if isinstance(public, (list, tuple)) else dir(module))
                   if isinstance(n, str) and not n.startswith("_"))
    for name in names:
        obj = getattr(module, name, None)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)) or not _own(obj, modname):
            continue
        doc = obj.__doc__ if isinstance(obj.__doc__, str) else ""
        if inspect.isclass(obj):
            if doc and doc != type.__doc__:
                out.append({"name": f"{modname}.{name}", "sig": _signature(obj), "doc": inspect.cleandoc(doc),
                            "kind": "class", "obj": obj})
            for attr in sorted(vars(obj)):
                member = vars(obj)[attr]
                if attr.startswith("_") or not inspect.isroutine(member) and not isinstance(
                        member, (staticmethod, classmethod, property)):
                    continue
                mdoc = getattr(member, "__doc__", None)
                if not isinstance(mdoc, str) or not mdoc.strip():
                    continue
                func = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                sig = "" if isinstance(member, property) else _signature(func)
                out.append({"name": f"{modname}.{name}.{attr}", "sig": sig, "doc": inspect.cleandoc(mdoc),
                            "kind": "method", "obj": func})
        elif doc.strip():
            out.append({"name": f"{modname}.{name}", "sig": _signature(obj), "doc": inspect.cleandoc(doc),
                        "kind": "function", "obj": obj})
    return out


def _pool(chunk_size: int) -> tuple[list[dict], list[dict]]:
    """All passages and all candidate queries, in a fixed order.

    passage: {"id", "title", "text", "module"}; candidate: {"text", "docid", "method", "module", "object"}.
    """
    from pydoc_data.topics import topics

    passages: list[dict] = []
    candidates: list[dict] = []
    seen_objects: set[int] = set()
    seen_texts: set[str] = set()

    def add(pid: str, title: str, text: str, module: str) -> bool:
        key = normalize(title + " " + text)
        if key in seen_texts:  # inherited/aliased docstrings: keep one copy
            return False
        seen_texts.add(key)
        passages.append({"id": pid, "title": title, "text": text, "module": module})
        return True

    for topic in sorted(topics):
        for i, chunk in enumerate(chunk_text(topics[topic], chunk_size, 0)):
            add(f"topic:{topic}#{i}", f"Python reference: {topic}", chunk, "reference")

    for modname in MODULES:
        module = _import(modname)
        if module is None:
            continue
        for e in _entries(modname, module):
            if "obj" in e:
                if id(e["obj"]) in seen_objects:  # the same object re-exported by another module
                    continue
                seen_objects.add(id(e["obj"]))
            summary, rest = _split_doc(e["doc"])
            short = e["name"].rsplit(".", 1)[-1] if e["kind"] != "module" else ""
            head = f"{short}{e['sig']}" if e["kind"] != "module" else ""
            # A summary that repeats the signature (C functions: "dumps(obj) -> str") is not a query.
            use_summary = (e["kind"] != "module" and len(rest) >= MIN_REST_CHARS
                           and is_good_query(summary) and len(head) + len(rest) + 2 <= chunk_size)
            if use_summary:
                text = f"{head}\n\n{rest}".strip()
                if add(e["name"], e["name"], text, modname):
                    candidates.append({"text": summary, "docid": e["name"], "method": "summary",
                                       "module": modname, "object": e["name"]})
                continue
            body = f"{head}\n\n{e['doc']}".strip() if head else e["doc"]
            chunks = chunk_text(body, chunk_size, 0)
            for i, chunk in enumerate(chunks):
                add(e["name"] if len(chunks) == 1 else f"{e['name']}#{i}", e["name"], chunk, modname)
    return passages, candidates


def build(cfg: dict, seed: int) -> tuple[dict, dict, dict]:
    """(corpus {id: {"title","text"}}, queries {id: {"text","metadata"}}, qrels {qid: {docid: 1}}),
    sized by cfg["max_passages"] and cfg["max_queries"] (params["ingest"])."""
    max_passages, max_queries = cfg.get("max_passages", 2000), cfg.get("max_queries", 600)
    rng = random.Random(seed)
    passages, candidates = _pool(CHUNK_SIZE)
    by_id = {p["id"]: p for p in passages}

    # Inverse cloze on passages that have no summary query yet: reference topics, module docs, long
    # docstrings. One query per passage, so removing its sentence changes only that passage.
    summary_docs = {c["docid"] for c in candidates}
    for p in passages:
        if p["id"] in summary_docs:
            continue
        pairs = inverse_cloze(p["text"], rng, 1)
        if pairs:
            query, rest = pairs[0]
            candidates.append({"text": query, "docid": p["id"], "method": "inverse_cloze",
                               "module": p["module"], "object": p["title"], "rest": rest})

    candidates = _unanswerable_by_copy(candidates, passages)
    rng.shuffle(candidates)
    chosen = candidates[:min(max_queries, max_passages)]
    chosen.sort(key=lambda c: c["docid"])

    positive_ids = {c["docid"] for c in chosen}
    others = sorted(p["id"] for p in passages if p["id"] not in positive_ids)
    n_distractors = max(0, max_passages - len(positive_ids))
    distractors = set(rng.sample(others, min(n_distractors, len(others))))

    corpus = {}
    for p in passages:  # pool order: topics first, then modules in sorted order
        if p["id"] in positive_ids or p["id"] in distractors:
            corpus[p["id"]] = {"title": p["title"], "text": p["text"]}
    queries, qrels = {}, {}
    for i, c in enumerate(chosen):
        qid = f"q{i:05d}"
        if "rest" in c:
            corpus[c["docid"]]["text"] = c["rest"]
        queries[qid] = {"text": c["text"], "metadata": {"method": c["method"], "module": c["module"],
                                                        "object": c["object"]}}
        qrels[qid] = {c["docid"]: 1}
    log.info("pydoc corpus: %d passages (%d in the pool), %d queries (%d candidates: %d summary, "
             "%d inverse cloze)", len(corpus), len(by_id), len(queries), len(candidates),
             sum(c["method"] == "summary" for c in candidates),
             sum(c["method"] == "inverse_cloze" for c in candidates))
    return corpus, queries, qrels


def _unanswerable_by_copy(candidates: list[dict], passages: list[dict]) -> list[dict]:
    """Drop candidates whose text is duplicated among candidates or occurs verbatim in any passage
    (its own positive after removal included): such a query has several right answers, or none."""
    dup = drop_duplicates(c["text"] for c in candidates)
    norm_passages = [normalize(p["title"] + " " + p["text"]) for p in passages]
    postings: dict[str, set[int]] = defaultdict(set)
    for i, text in enumerate(norm_passages):
        for w in set(re.findall(r"\w+", text)):
            postings[w].add(i)
    keep = []
    for c in candidates:
        q = normalize(c["text"])
        if q in dup:
            continue
        if "rest" in c and q in normalize(c["rest"]):
            continue
        tokens = re.findall(r"\w+", q)
        # First and last words may match inside a longer passage word; use only the inner ones.
        inner = tokens[1:-1] if len(tokens) > 3 else tokens
        words = sorted(set(inner), key=lambda w: len(postings.get(w, ())))
        # The query's rarest words bound which passages can contain it; check those fully. The
        # passage a cloze query was cut from still holds it in the pool: that one is expected.
        maybe = set.intersection(*(postings.get(w, set()) for w in words[:2])) if words else set()
        if any(q in norm_passages[i] for i in maybe if passages[i]["id"] != c["docid"] or "rest" not in c):
            continue
        keep.append(c)
    return keep
