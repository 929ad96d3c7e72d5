"""What both reference recipes share: the CLI, reading a prepared ragtune project, scoring, the result file.

Only data reading (ragtune.io) and metric code (ragtune.metrics) come from ragtune, so the texts and the
numbers are the same as ragtune's; retrieval is written here the way a library user would write it:
encode with normalize_embeddings=True, one matrix product, top-100.
"""
from __future__ import annotations

import functools
import logging
import os
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from ragtune.errors import UserError
from ragtune.io import doc_text, read_corpus, read_qrels, read_queries, write_json

log = logging.getLogger("recipe")

SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")
DEPTH = 100  # retrieval depth for scoring: R@100 needs the top 100
METRICS_CFG = {"ndcg_cutoffs": [10], "mrr_cutoffs": [10], "recall_cutoffs": [DEPTH]}
REPORTED = ("nDCG@10", "MRR@10", f"R@{DEPTH}")  # the keys of METRICS_CFG, as ragtune.metrics names them


def options(func):
    """The shared click options of both recipes (same names, same defaults)."""
    opts = [
        click.option("--project", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="a ragtune project folder after `dvc repro prepare`"),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="writes result.json and model/ here"),
        click.option("--model", required=True, help="base model folder (sentence-transformers)"),
        click.option("--max-seq-length", type=click.IntRange(min=8), default=128, show_default=True),
        click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=5e-5, show_default=True),
        click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True),
        click.option("--num-negatives", type=click.IntRange(min=1), default=5, show_default=True),
        click.option("--seed", type=int, default=42, show_default=True),
        click.option("--encode-batch-size", type=click.IntRange(min=1), default=64, show_default=True),
        click.option("--limit-queries", type=click.IntRange(min=1), default=None,
                     help="smoke tests: at most N queries per split"),
        click.option("--limit-docs", type=click.IntRange(min=1), default=None,
                     help="smoke tests: the judged documents of the kept queries, then corpus order up to N"),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(opts), func)


def setup() -> None:
    """Environment and logging; call before importing torch / transformers."""
    # Hugging Face caches (datasets' cache in particular) stay out of $HOME, as in ragtune's stages.
    os.environ.setdefault("HF_HOME", str(Path.cwd() / ".cache" / "huggingface"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_main(body) -> None:
    """Run a recipe body; a user mistake (bad project folder, ...) is one line and exit code 1."""
    try:
        body()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Data:
    corpus: dict[str, str]                 # doc id -> title + text, as ragtune embeds it
    queries: dict[str, str]                # query id -> text
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> {qid: {docid: grade}}

    def train_pairs(self) -> list[tuple[str, str]]:
        """(query text, positive text): one per judged relevant (grade >= 1) pair of the train split."""
        return [(self.queries[q], self.corpus[d]) for q, docs in self.qrels["train"].items() if q in self.queries
                for d, g in docs.items() if g >= 1 and d in self.corpus]

    def train_groups(self) -> list[dict]:
        """FlagEmbedding's training format: one {"query", "pos": [...]} per train query with a positive."""
        groups = []
        for q, docs in self.qrels["train"].items():
            pos = [self.corpus[d] for d, g in docs.items() if g >= 1 and d in self.corpus]
            if q in self.queries and pos:
                groups.append({"query": self.queries[q], "pos": list(dict.fromkeys(pos))})
        return groups


def load_project(project: Path, limit_queries: int | None = None, limit_docs: int | None = None) -> Data:
    """Read a prepared project: raw corpus, prepared queries and split qrels (ragtune's readers)."""
    raw, prepared = project / "data" / "raw", project / "data" / "prepared"
    if not (prepared / "qrels").is_dir():
        raise UserError(f"{project}: no data/prepared/qrels; run `dvc repro prepare` in it first")
    corpus = {i: doc_text(d) for i, d in read_corpus(raw / "corpus.jsonl").items()}
    queries = {i: q["text"] for i, q in read_queries(prepared / "queries.jsonl").items()}
    qrels = {s: read_qrels(prepared / "qrels" / f"{s}.tsv")[0] for s in SPLITS}
    if limit_queries:
        qrels = {s: dict(list(q.items())[:limit_queries]) for s, q in qrels.items()}
    if limit_docs:
        # Keep every judged document of the kept queries, so the subset still has its positives.
        keep = {d for q in qrels.values() for docs in q.values() for d in docs if d in corpus}
        for d in corpus:
            if len(keep) >= limit_docs:
                break
            keep.add(d)
        corpus = {i: t for i, t in corpus.items() if i in keep}
    for s in SPLITS:
        if not qrels[s]:
            raise UserError(f"{prepared / 'qrels' / (s + '.tsv')}: no judged queries")
    log.info("project %s: %d docs, %s judged queries", project, len(corpus),
             ", ".join(f"{s} {len(qrels[s])}" for s in SPLITS))
    return Data(corpus, queries, qrels)


def evaluate(model, data: Data, encode_batch_size: int) -> dict[str, dict[str, float]]:
    """Exact cosine search, top 100, scored with ragtune's metric code -> {split: {metric: mean}}."""
    import torch

    from ragtune.metrics import evaluate_run

    doc_ids = list(data.corpus)
    docs = model.encode([data.corpus[i] for i in doc_ids], batch_size=encode_batch_size,
                        normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)
    results = {}
    for split in EVAL_SPLITS:
        qids = [q for q in data.qrels[split] if q in data.queries]
        emb = model.encode([data.queries[q] for q in qids], batch_size=encode_batch_size,
                           normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)
        scores, idx = torch.topk(emb @ docs.T, k=min(DEPTH, len(doc_ids)), dim=1)
        run = {q: {doc_ids[j]: float(s) for s, j in zip(row_s.tolist(), row_i.tolist())}
               for q, row_s, row_i in zip(qids, scores, idx)}
        means, _ = evaluate_run(run, data.qrels[split], METRICS_CFG)
        results[split] = means
        log.info("%s: %s", split, ", ".join(f"{k} {means[k]:.4f}" for k in REPORTED))
    return results


def _cpu_seconds() -> float:
    """User + system CPU of this process (all threads) and of the subprocesses it waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Timer:
    """Wall seconds and CPU seconds per named step."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def step(self, name: str):
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        log.info("step %s: started", name)
        yield
        self.steps[name] = round(time.perf_counter() - start, 2)
        self.cpu[name] = round(_cpu_seconds() - cpu_start, 2)
        log.info("step %s: done in %.1f s", name, self.steps[name])


def write_result(out_dir: Path, result: dict) -> None:
    write_json(out_dir / "result.json", result)
    log.info("wrote %s", out_dir / "result.json")
