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

import contextlib
import functools
import importlib
import inspect
import io
import logging
import random
import re
import warnings

from .chunking import chunk_text
from .querygen import drop_copied, inverse_cloze, is_good_query, normalize

log = logging.getLogger(__name__)

# Importable everywhere CPython 3.11 runs, without side effects (no GUI, no browser, no printing);
# modules missing from a build (e.g. no sqlite3) are skipped.
MODULES = sorted([
    "abc", "argparse", "array", "ast", "asyncio", "atexit", "base64", "binascii", "bisect", "builtins",
    "bz2", "calendar", "cmath", "code", "codecs", "codeop", "collections", "collections.abc", "colorsys",
    "compileall", "concurrent.futures", "configparser", "contextlib", "contextvars", "copy", "cProfile",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "dis", "doctest", "email.message",
    "email.parser", "email.policy", "email.utils", "enum", "errno", "faulthandler", "filecmp", "fnmatch",
    "fractions", "ftplib", "functools", "gc", "getopt", "gettext", "glob", "graphlib", "gzip", "hashlib",
    "heapq", "hmac", "html", "html.parser", "http.client", "http.cookiejar", "http.cookies",
    "http.server", "imaplib", "importlib", "inspect", "io", "ipaddress", "itertools", "json", "keyword",
    "linecache", "locale", "logging", "logging.handlers", "lzma", "mailbox", "math", "mimetypes", "mmap",
    "multiprocessing", "netrc", "numbers", "operator", "optparse", "os", "pathlib", "pickle",
    "pickletools", "pkgutil", "platform", "plistlib", "poplib", "pprint", "pstats", "py_compile",
    "pyclbr", "queue", "quopri", "random", "re", "reprlib", "runpy", "sched", "secrets", "select",
    "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket", "socketserver", "sqlite3",
    "ssl", "statistics", "string", "stringprep", "struct", "subprocess", "symtable", "sys", "sysconfig",
    "tabnanny", "tarfile", "tempfile", "textwrap", "threading", "time", "timeit", "tokenize", "tomllib",
    "trace", "traceback", "tracemalloc", "types", "typing", "unicodedata", "unittest", "unittest.mock",
    "urllib.error", "urllib.parse", "urllib.request", "urllib.robotparser", "uuid", "warnings", "wave",
    "weakref", "wsgiref.util", "xml.dom.minidom", "xml.etree.ElementTree", "xml.sax", "zipapp",
    "zipfile", "zipimport", "zlib", "zoneinfo",
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


class _Elided:
    def __repr__(self) -> str:
        return "..."


_SIMPLE = (type(None), bool, int, float, complex, str, bytes)


def _stable_default(value):
    """Literal defaults stay; others (a list of live handlers, a sentinel object, a frozenset whose order
    depends on the hash seed) depend on the process's state, so they print as `...`."""
    if isinstance(value, _SIMPLE) or isinstance(value, tuple) and all(isinstance(v, _SIMPLE) for v in value):
        return value
    return _Elided()


def _signature(obj) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    params = [p.replace(default=_stable_default(p.default)) if p.default is not p.empty else p
              for p in sig.parameters.values()]
    try:
        sig = sig.replace(parameters=params)
    except ValueError:
        pass
    return _ADDRESS.sub("", str(sig))


def _split_doc(doc: str) -> tuple[str, str]:
    """(summary, rest): the first paragraph on one line (filtered later by is_good_query), the rest."""
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
        if modname == "sys":  # hooks a process may replace (pytest does) keep their original in __name__
            obj = getattr(module, f"__{name}__", obj)
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


def _render(e: dict, with_summary: bool = True) -> str:
    """An entry as a documentation page shows it: qualified name and signature, then the docstring."""
    if e["kind"] == "module":
        return e["doc"]
    head = f"{e['name'].split('.', e['depth'])[-1]}{e['sig']}"
    if with_summary:
        return f"{head}\n\n{e['doc']}".strip()
    return f"{head}\n\n{e['rest']}".strip()


@functools.lru_cache(maxsize=1)  # the same interpreter gives the same pool; callers must not mutate it
def _pool(chunk_size: int) -> tuple[list[dict], list[dict]]:
    """All passages and all summary-query candidates, in a fixed order.

    A passage is {"id", "title", "module", "pieces"}: pieces are rendered entries (or one chunk of
    text); a module's short entries are packed together up to `chunk_size`, as a documentation page
    would list them, so passages are ~600-1000 characters. A piece {"text", "without", "summary"}
    can drop its summary line when that summary becomes the query.
    """
    from pydoc_data.topics import topics

    passages: list[dict] = []
    seen_objects: set[int] = set()
    seen_texts: set[str] = set()

    def add(pid: str, title: str, module: str, pieces: list[dict]) -> None:
        passages.append({"id": pid, "title": title, "module": module, "pieces": pieces})

    for topic in sorted(topics):
        for i, chunk in enumerate(chunk_text(topics[topic], chunk_size, 0)):
            add(f"topic:{topic}#{i}", topic, "reference", [{"text": chunk, "object": topic}])

    for modname in MODULES:
        module = _import(modname)
        if module is None:
            continue
        n = 0
        pack: list[dict] = []

        def flush() -> None:
            nonlocal n, pack
            if pack:
                add(f"{modname}#{n}", modname, modname, pack)
                n, pack = n + 1, []

        for e in _entries(modname, module):
            if "obj" in e:
                if id(e["obj"]) in seen_objects:  # the same object re-exported by another module
                    continue
                seen_objects.add(id(e["obj"]))
            key = normalize(e["doc"])
            if key in seen_texts:  # inherited/aliased docstrings: keep one copy
                continue
            seen_texts.add(key)
            e["depth"] = modname.count(".") + 1
            e["summary"], e["rest"] = _split_doc(e["doc"])
            full = _render(e)
            if len(full) > chunk_size:  # a long docstring gets passages of its own
                flush()
                for chunk in chunk_text(full, chunk_size, 0):
                    add(f"{modname}#{n}", modname, modname, [{"text": chunk, "object": e["name"]}])
                    n += 1
                continue
            piece = {"text": full, "object": e["name"]}
            if e["kind"] != "module" and len(e["rest"]) >= MIN_REST_CHARS and is_good_query(e["summary"]):
                piece.update(summary=e["summary"], without=_render(e, with_summary=False))
            if pack and len(_join(pack + [piece])) > chunk_size:
                flush()
            pack.append(piece)
        flush()

    for p in passages:
        p["text"] = _join(p["pieces"])
    candidates = [{"text": piece["summary"], "docid": p["id"], "method": "summary", "module": p["module"],
                   "object": piece["object"], "rest": _join(p["pieces"], without=piece["object"])}
                  for p in passages for piece in p["pieces"] if "summary" in piece]
    return passages, candidates


def _pool_in_clean_process(chunk_size: int) -> tuple[list[dict], list[dict]]:
    """`_pool` run in a fresh, isolated interpreter: what the caller has imported (torch, pytest, ...)
    changes some stdlib objects, and so the docs; a clean process gives the same corpus every time."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pool.json"
        code = (f"import json, sys; sys.path.insert(0, {root!r}); from ragtune.pydoc_corpus import _pool; "
                f"json.dump(_pool({chunk_size}), open({str(out)!r}, 'w'))")
        subprocess.run([sys.executable, "-I", "-c", code], check=True, cwd=tmp,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        passages, candidates = json.loads(out.read_text())
    return passages, candidates


def _join(pieces: list[dict], without: str | None = None) -> str:
    return "\n\n".join(p["without"] if p["object"] == without else p["text"] for p in pieces)


def build(cfg: dict, seed: int) -> tuple[dict, dict, dict]:
    """(corpus {id: {"title","text"}}, queries {id: {"text","metadata"}}, qrels {qid: {docid: 1}}),
    sized by cfg["max_passages"] and cfg["max_queries"] (params["ingest"])."""
    max_passages, max_queries = cfg["max_passages"], cfg["max_queries"]
    rng = random.Random(seed)
    passages, candidates = _pool_in_clean_process(CHUNK_SIZE)
    candidates = list(candidates)

    # Inverse cloze on every passage: one informative sentence becomes the query and leaves the passage.
    for p in passages:
        pairs = inverse_cloze(p["text"], rng, 1)
        if pairs:
            query, rest = pairs[0]
            candidates.append({"text": query, "docid": p["id"], "method": "inverse_cloze",
                               "module": p["module"], "object": p["title"], "rest": rest})
    n_summary = sum(c["method"] == "summary" for c in candidates)
    n_cloze = len(candidates) - n_summary
    candidates = drop_copied(candidates, {p["id"]: p["title"] + " " + p["text"] for p in passages})
    rng.shuffle(candidates)
    chosen: dict[str, dict] = {}  # docid -> candidate; one query per passage, as its text changes
    for c in candidates:
        if len(chosen) >= min(max_queries, max_passages):
            break
        chosen.setdefault(c["docid"], c)

    others = sorted(p["id"] for p in passages if p["id"] not in chosen)
    n_distractors = max(0, max_passages - len(chosen))
    distractors = set(rng.sample(others, min(n_distractors, len(others))))
    corpus = {}
    for p in passages:  # pool order: reference topics first, then modules in sorted order
        if p["id"] in chosen:
            corpus[p["id"]] = {"title": p["title"], "text": chosen[p["id"]]["rest"]}
        elif p["id"] in distractors:
            corpus[p["id"]] = {"title": p["title"], "text": p["text"]}
    queries, qrels = {}, {}
    for i, docid in enumerate(sorted(chosen)):
        c = chosen[docid]
        qid = f"q{i:05d}"
        queries[qid] = {"text": c["text"], "metadata": {"method": c["method"], "module": c["module"],
                                                        "object": c["object"]}}
        qrels[qid] = {docid: 1}
    log.info("pydoc corpus: %d passages (pool %d), %d queries (candidates: %d summary, %d inverse cloze, "
             "%d left after duplicate/copy filters)", len(corpus), len(passages), len(queries),
             n_summary, n_cloze, len(candidates))
    return corpus, queries, qrels
