"""Reading and writing the pipeline's files: BEIR jsonl/tsv, json, and atomic writes in one place.

Every reader validates as it streams and raises `UserError` naming file, line and field.
Every writer goes through `atomic_output`: a temp path in the same directory, renamed on success, so
a killed stage never leaves a half-written declared output behind.
"""
from __future__ import annotations

import codecs
import contextlib
import functools
import glob
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import UserError, located

# The shapes pytrec_eval takes, used everywhere: qrels {qid: {docid: grade}}, a run {qid: {docid: score}}.
Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]

# Ingest cuts stored titles and texts at this many characters. Models read at most 8192 tokens (the most
# embedder.max_seq_length and reranker.max_length allow), and a token is rarely over 5 characters, so
# the cut never changes what a model sees; it keeps one 50 MB line from becoming 50 MB negatives.
MAX_TEXT_CHARS = 100_000


@contextlib.contextmanager
def atomic_output(path: str | Path, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on failure it is removed."""
    path = Path(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{parent}: cannot create output directory: {e.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"{parent}: output directory is not writable")
    _remove_stale(parent, path.name)
    # The writer's pid in the name tells a later run whether the temp path is stale (its writer died).
    prefix = f".{path.name}.tmp-{os.getpid()}-"
    try:
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, dir=parent)
            os.close(fd)
            tmp = Path(name)
        # mkdtemp/mkstemp create 0700/0600 paths; outputs get the usual permissions (umask applies).
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_umask())
    except OSError as e:
        raise UserError(f"{path}: cannot write: {e.strerror}") from None
    try:
        yield tmp
        if is_dir and path.exists():
            # Two renames keep the old directory until the new one is complete.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-", dir=parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        if e.errno == 28:  # ENOSPC
            raise UserError(f"{path}: no space left on device; nothing was overwritten") from None
        raise UserError(f"{path}: cannot write: {e.strerror}") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove_stale(parent: Path, name: str) -> None:
    """Remove `.<name>.tmp-<pid>-*` / `.<name>.old-<pid>-*` left by a writer that was killed (SIGKILL,
    power loss): no cleanup code ran for them. A live writer's paths (its pid exists) are left alone."""
    for kind in ("tmp", "old"):
        for p in parent.glob(f".{glob.escape(name)}.{kind}-*"):
            pid = p.name[len(name) + len(kind) + 3:].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
                continue
            if kind == "old" and (p / "x").exists() and not (parent / name).exists():
                # Killed between the two renames: the previous version is the only copy; put it back.
                with contextlib.suppress(OSError):
                    os.replace(p / "x", parent / name)
            _remove(p)


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def link_tree(src: str | Path, dst: str | Path, skip: tuple[str, ...] = ()) -> None:
    """Recreate folder `src` at `dst` with hard links (a copy where linking fails, e.g. across disks), so
    a second view of a model costs no disk. Linked files share their bytes: replace, never edit, them."""
    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_or_copy, ignore=shutil.ignore_patterns(*skip),
                    dirs_exist_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise located(path, e.lineno, f"malformed JSON: {e.msg}") from None


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a UTF-8 text file. A leading BOM (Excel, Windows tools) is
    dropped; a byte that is not UTF-8 raises UserError naming line and byte offset."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8-sig") as f:
            yield from enumerate(f, start=1)
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def not_utf8(path: Path) -> UserError:
    """The error for a file that is not UTF-8: the first bad byte's line and offset, and the fix.
    Only called after decoding failed, so the second, byte-level pass costs nothing in the usual case."""
    with open(path, "rb") as f:
        head = f.read(2)
        if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            return located(path, 1, "UTF-16 text, not UTF-8; re-encode the file as UTF-8 "
                                    f"(e.g. iconv -f UTF-16 -t UTF-8 {path.name} > fixed{path.suffix})")
        f.seek(0)
        offset = 0
        for lineno, raw in enumerate(f, start=1):
            bom = len(codecs.BOM_UTF8) if lineno == 1 and raw.startswith(codecs.BOM_UTF8) else 0
            try:
                raw[bom:].decode("utf-8")
            except UnicodeDecodeError as e:
                at = offset + bom + e.start
                return located(path, lineno, f"not UTF-8: byte 0x{raw[bom + e.start]:02x} at byte offset {at}; "
                                             f"re-encode the file as UTF-8 (e.g. iconv -f latin1 -t UTF-8 "
                                             f"{path.name} > fixed{path.suffix})")
            offset += len(raw)
    return UserError(f"{path}: not UTF-8; re-encode the file as UTF-8")  # pragma: no cover (changed meanwhile)


def decode_text(path: Path, raw: bytes) -> str:
    """The bytes of a whole UTF-8 text file as str, a leading BOM dropped; not UTF-8 is a UserError."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; malformed lines raise UserError."""
    path = Path(path)
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise located(path, lineno, f"malformed JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise located(path, lineno, "expected a JSON object")
        yield lineno, obj


def _text_field(path: Path, lineno: int, obj: dict, field: str, required: bool = True) -> str:
    value = obj.get(field)
    if value is None:
        if required:
            raise located(path, lineno, "missing", field)
        return ""
    if not isinstance(value, (str, int)):
        raise located(path, lineno, f"expected a string, got {type(value).__name__}", field)
    return str(value)


# Ids end up in TREC run files (`qid Q0 docid rank score tag`), whose columns are separated by
# whitespace: an id with a space or tab cannot be written there, so it is refused where it enters.
_WHITESPACE = re.compile(r"\s")


def check_id(path: Path, lineno: int | None, value: str, field: str) -> str:
    """`value` if it is a usable id: not empty, no whitespace; else UserError naming file, line, field."""
    if not value.strip():
        raise located(path, lineno, "empty id", field)
    if _WHITESPACE.search(value):
        raise located(path, lineno, f"id {value!r} contains whitespace, which TREC run files cannot hold; "
                                    f"rename it (e.g. {_WHITESPACE.sub('_', value.strip())!r}) everywhere it "
                                    f"is used", field)
    return value


def iter_corpus(path: str | Path) -> Iterator[tuple[str, str, str]]:
    """Stream a BEIR corpus.jsonl as validated (doc_id, title, text): ids unique, text non-empty.
    Only the ids are kept in memory (for the duplicate check)."""
    path = Path(path)
    seen: set[str] = set()
    for lineno, obj in iter_jsonl(path):
        doc_id = check_id(path, lineno, _text_field(path, lineno, obj, "_id"), "_id")
        text = _text_field(path, lineno, obj, "text")
        title = _text_field(path, lineno, obj, "title", required=False)
        if not text.strip():
            raise located(path, lineno, f"empty text for document '{doc_id}'", "text")
        if doc_id in seen:
            raise located(path, lineno, f"duplicate id '{doc_id}'", "_id")
        seen.add(doc_id)
        yield doc_id, title, text
    if not seen:
        raise UserError(f"{path}: no documents")


def read_corpus(path: str | Path) -> dict[str, dict[str, str]]:
    """BEIR corpus.jsonl -> {doc_id: {"title": str, "text": str}}; ids unique, text non-empty."""
    return {doc_id: {"title": title, "text": text} for doc_id, title, text in iter_corpus(path)}


class CorpusFile:
    """A validated corpus.jsonl without its texts in memory: ids are held (for `in` and len), texts are
    streamed from disk by `items()` (e.g. to copy it) or `subset(ids)`. Enough wherever a corpus is
    only checked against and copied, so memory grows with the number of documents, not their text."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.ids = {doc_id for doc_id, _, _ in iter_corpus(self.path)}

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return (doc_id for doc_id, _, _ in iter_corpus(self.path))

    def items(self) -> Iterator[tuple[str, dict[str, str]]]:
        return ((doc_id, {"title": title, "text": text}) for doc_id, title, text in iter_corpus(self.path))

    def subset(self, ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """{doc_id: {"title", "text"}} for the wanted ids only, in one pass over the file."""
        wanted = set(ids)
        return {i: d for i, d in self.items() if i in wanted}


def read_queries(path: str | Path) -> dict[str, dict[str, Any]]:
    """BEIR queries.jsonl -> {query_id: {"text": str, "metadata": dict}}."""
    path = Path(path)
    queries: dict[str, dict[str, Any]] = {}
    for lineno, obj in iter_jsonl(path):
        qid = check_id(path, lineno, _text_field(path, lineno, obj, "_id"), "_id")
        text = _text_field(path, lineno, obj, "text")
        if not text.strip():
            raise located(path, lineno, f"empty text for query '{qid}'", "text")
        if qid in queries:
            raise located(path, lineno, f"duplicate id '{qid}'", "_id")
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise located(path, lineno, "expected an object", "metadata")
        queries[qid] = {"text": text, "metadata": metadata}
    if not queries:
        raise UserError(f"{path}: no queries")
    return queries


def write_corpus(path: str | Path, corpus: Mapping[str, dict[str, str]] | Iterable[tuple[str, dict[str, str]]]
                 ) -> int:
    """Write {doc_id: {"title", "text"}} (or a stream of (doc_id, doc) pairs) as BEIR corpus.jsonl."""
    pairs = corpus.items() if hasattr(corpus, "items") else corpus
    return write_jsonl(path, ({"_id": i, "title": d.get("title", ""), "text": d["text"]} for i, d in pairs))


def write_queries(path: str | Path, queries: dict[str, dict[str, Any]]) -> int:
    return write_jsonl(path, ({"_id": i, "text": q["text"], "metadata": q.get("metadata", {})}
                              for i, q in queries.items()))


def read_qrels(path: str | Path) -> tuple[Qrels, dict[tuple[str, str], int]]:
    """A qrels file -> ({qid: {docid: grade}}, {(qid, docid): line}). Two layouts, told apart by the
    number of columns of the first judgment, and then required on every line:
    - BEIR: `query-id<TAB>corpus-id<TAB>score`, with or without that header line;
    - TREC (trec_eval, pyserini, ir_datasets): `query-id iteration corpus-id score`, space or tab
      separated, no header; the iteration column (usually 0) is ignored.
    Grades are integers (0 = judged not relevant); `1.0` is read as 1, `0.5` is an error."""
    path = Path(path)
    qrels: Qrels = {}
    lines: dict[tuple[str, str], int] = {}
    width = first = 0
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        line = line.strip()  # a trailing tab or space is no extra column
        cols = line.split("\t")
        if len(cols) not in (3, 4):
            cols = line.split()
        cols = [c.strip() for c in cols]
        if not width and cols[0].lower() in ("query-id", "query_id", "qid"):
            continue  # BEIR's header line
        if not width:
            if len(cols) not in (3, 4):
                raise located(path, lineno, f"expected 3 tab-separated columns (BEIR: query-id, corpus-id, "
                                            f"score) or 4 (TREC: query-id, iteration, corpus-id, score), "
                                            f"got {len(cols)}")
            width, first = len(cols), lineno
        elif len(cols) != width:
            raise located(path, lineno, f"expected {width} columns like the first judgment (line {first}), "
                                        f"got {len(cols)}")
        qid, docid, score = (cols[0], cols[2], cols[3]) if width == 4 else cols
        check_id(path, lineno, qid, "query-id")
        check_id(path, lineno, docid, "corpus-id")
        value = _grade(path, lineno, score)
        if (qid, docid) in lines:
            raise located(path, lineno, f"duplicate judgment for ({qid}, {docid}), "
                                        f"first on line {lines[(qid, docid)]}")
        qrels.setdefault(qid, {})[docid] = value
        lines[(qid, docid)] = lineno
    return qrels, lines


def _grade(path: Path, lineno: int, score: str) -> int:
    """An integer relevance grade. A fraction is refused, not rounded: silently turning 0.5 into 0
    would drop the judgment's query without a word."""
    try:
        return int(score)
    except ValueError:
        pass
    try:
        value = float(score)
    except ValueError:
        raise located(path, lineno, f"not a number: '{score}'", "score") from None
    if value.is_integer():
        return int(value)
    raise located(path, lineno, f"'{score}' is not a whole number; relevance grades are integers (0 = not "
                                f"relevant, 1, 2, ... = relevant): round or threshold your scores first",
                  "score")


def write_qrels(path: str | Path, qrels: Qrels) -> int:
    n = 0
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in qrels.items():
            for docid, score in docs.items():
                f.write(f"{qid}\t{docid}\t{score}\n")
                n += 1
    return n


def doc_text(doc: dict[str, str]) -> str:
    """The text a model sees for a document: title and body, as BEIR and MTEB do."""
    title = doc.get("title") or ""
    return f"{title} {doc['text']}".strip() if title else doc["text"]


# Teacher scores in groups (ragtune.mining) lie on [0, 1]; a listwise student softmaxes them at this
# temperature, so a score gap of 0.1 is a factor e between two passages (T = 1 would be near uniform).
TEACHER_TEMPERATURE = 0.1
DISTILL_LOSSES = ("margin_mse", "distill_kl")  # embedder.loss values that learn from teacher scores
# In mine's output folder, beside val.jsonl: the untrained embedder's val metrics, when mining had its
# corpus embeddings at hand ({"model_fingerprint", "max_seq_length", "metrics": {"ndcg@10", "mrr@10",
# "map"}}); the embedder trainer uses them instead of encoding val with the base model again.
BASE_VAL_METRICS = "val_base_embedder.json"


def read_groups(path: str | Path, synthetic: bool = True) -> list[dict]:
    """Training groups in FlagEmbedding's jsonl {"query", "pos": [..], "neg": [..]}, with its optional
    distillation fields "pos_scores" / "neg_scores" (a teacher's score per text; kept only when both are
    given); bad lines raise UserError. Repeated texts are dropped, and so is a negative with the text of
    its own positive. `synthetic=False` leaves out the groups mine marked "synthetic": true."""
    path = Path(path)
    groups = []
    clashes = left_out = 0
    for lineno, obj in iter_jsonl(path):
        if not synthetic and obj.get("synthetic") is True:
            left_out += 1
            continue
        query = obj.get("query")
        if not isinstance(query, str) or not query.strip():
            raise located(path, lineno, "expected a non-empty string", "query")
        texts: dict[str, dict[str, float | None]] = {}
        for field in ("pos", "neg"):
            value = obj.get(field, [] if field == "neg" else None)
            if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
                raise located(path, lineno, "expected a list of non-empty strings", field)
            scores = obj.get(f"{field}_scores")
            if scores is not None and (not isinstance(scores, list) or len(scores) != len(value) or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in scores)):
                raise located(path, lineno, f"expected a list of numbers, one per '{field}' text", f"{field}_scores")
            texts[field] = {}
            for i, t in enumerate(value):  # repeated texts add nothing: the first one and its score count
                texts[field].setdefault(t, None if scores is None else float(scores[i]))
        if not texts["pos"]:
            raise located(path, lineno, "no positives", "pos")
        # A "negative" with the text of a positive (duplicate passages) would teach the model nonsense.
        negs = [t for t in texts["neg"] if t not in texts["pos"]]
        clashes += len(texts["neg"]) - len(negs)
        group = {"query": query, "pos": list(texts["pos"]), "neg": negs}
        if "pos_scores" in obj and "neg_scores" in obj:
            group["pos_scores"] = list(texts["pos"].values())
            group["neg_scores"] = [texts["neg"][t] for t in negs]
        groups.append(group)
    if not groups:
        raise UserError(f"{path}: no groups" + (f" once its {left_out} synthetic ones are left out (this trainer "
                                                f"is not in synthetic.trainers)" if left_out else ""))
    if left_out:
        logging.getLogger(__name__).info("%s: left out %d synthetic groups (synthetic.trainers)", path, left_out)
    if clashes:
        logging.getLogger(__name__).info("%s: dropped %d negatives whose text equals a positive of the same query", path, clashes)
    return groups
