"""Corpus-scale encoding and search: a synthetic 1M-passage corpus with the tiny model.

Not a test. Three steps, each in its own process so that its peak RSS is its own:
1. encode  `stages/encode_corpus.py --processes N`: N torchrun workers fill the sharded embeddings cache
           (ragtune.embeddings, SHARD_DOCS per file); wall time, docs/s, peak RSS of the largest process.
2. resume  the same command again: every shard is cached, nothing is encoded (the cost of a resumed run).
3. search  the stages' read path (encode_corpus: the shards assembled into one array) and
           ragtune.retrieval.DenseIndex as flat (exact), ivf and hnsw: build and search time, peak RSS,
           and recall@10 / @100 of each approximate index against exact search on a sample of queries.

    python -m bench encode_scale                               # 1M passages, 2 processes
    python -m bench encode_scale --docs 20000 --out /tmp/e.json   # a quick check

Writes bench/results/encode_scale.json.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import yaml

from .load import _synthetic
from .machine import describe, git_commit

ROOT = Path(__file__).resolve().parents[1]


def _setup(work: Path, docs: int, queries: int, seed: int) -> dict:
    """The corpus (bench.load's random-word passages), the tiny BERT and a params.yaml for it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import build_tiny_bert

    from ragtune.params import defaults

    data = _synthetic(work, docs, queries, seed)
    tiny = build_tiny_bert(work / "tiny")
    p = defaults().model_dump()
    p["device"] = "cpu"
    p["embedder"].update(base=str(tiny), max_seq_length=64, encode_batch_size=256)
    (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return data


def _measured(cmd: list[str], work: Path, name: str) -> tuple[dict, str]:
    """Run `cmd` in `work`: ({wall seconds, peak RSS of its largest process}, its stdout); stderr to <name>.log."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    start = time.perf_counter()
    with open(work / f"{name}.out", "w") as out, open(work / f"{name}.log", "w") as err:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=err)
        # wait4's rusage covers the child and every descendant it waited for (torchrun's workers).
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{(work / f'{name}.log').read_text()[-4000:]}")
    return ({"wall_seconds": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024)},
            (work / f"{name}.out").read_text())


def _search(work: Path, sample: int, seed: int) -> None:
    """Step 3, in this process (run as `--search`): prints one json line."""
    import numpy as np

    from ragtune import params as params_module
    from ragtune.embeddings import DEFAULT_CACHE_DIR, encode_corpus, encode_queries
    from ragtune.io import doc_text, read_corpus, read_queries
    from ragtune.retrieval import DenseIndex

    os.chdir(work)
    p = params_module.load("params.yaml")
    emb_cfg, security = p["embedder"], p["security"]
    corpus = read_corpus("corpus.jsonl")
    doc_ids = list(corpus)
    start = time.perf_counter()
    doc_emb = encode_corpus(emb_cfg["base"], [doc_text(corpus[d]) for d in doc_ids], max_seq_length=emb_cfg["max_seq_length"],
                            device="cpu", cache_dir=DEFAULT_CACHE_DIR, security=security)
    read_seconds = time.perf_counter() - start
    del corpus
    queries = read_queries("prepared/queries.jsonl")
    rng = np.random.default_rng(seed)
    qids = sorted(rng.choice(sorted(queries), size=min(sample, len(queries)), replace=False).tolist())
    q_emb = encode_queries(emb_cfg["base"], [queries[q]["text"] for q in qids],
                           max_seq_length=emb_cfg["max_seq_length"], device="cpu",
                           security=security)
    out = {"read_cached_embeddings_seconds": round(read_seconds, 1), "embeddings_mib": round(doc_emb.nbytes / 2**20),
           "sample_queries": len(qids), "indexes": {}}
    runs = {}
    for kind in ("flat", "ivf", "hnsw"):
        t0 = time.perf_counter()
        index = DenseIndex(doc_emb, doc_ids, kind)
        t1 = time.perf_counter()
        runs[kind] = index.search(q_emb, qids, 100)
        t2 = time.perf_counter()
        out["indexes"][kind] = {"build_seconds": round(t1 - t0, 1), "search_ms_per_query": round(1000 * (t2 - t1) / len(qids), 2)}
        del index
    for kind in ("ivf", "hnsw"):
        for k in (10, 100):
            hits = [len(set(list(runs[kind][q])[:k]) & set(list(runs["flat"][q])[:k])) / k for q in qids]
            out["indexes"][kind][f"recall@{k}_vs_exact"] = round(float(np.mean(hits)), 4)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out), flush=True)


@click.command()
@click.option("--docs", default=1_000_000, show_default=True)
@click.option("--queries", default=1_000, show_default=True, help="synthetic test queries (the search sample)")
@click.option("--processes", default=2, show_default=True, help="torchrun workers for the encoding")
@click.option("--work", "work_dir", default="/tmp/ragtune-encode-scale", show_default=True)
@click.option("--out", "out_path", default=str(ROOT / "bench" / "results" / "encode_scale.json"), show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--search", "search_only", is_flag=True, hidden=True)
def main(docs, queries, processes, work_dir, out_path, seed, search_only):
    work = Path(work_dir)
    if search_only:
        return _search(work, queries, seed)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    data = _setup(work, docs, queries, seed)
    results = {"commit": git_commit(ROOT), "machine": describe(ROOT), "data": data,
               "setup_seconds": round(time.perf_counter() - t0, 1), "processes": processes}
    encode_cmd = [sys.executable, str(ROOT / "stages" / "encode_corpus.py"), "--corpus", "corpus.jsonl",
                  "--processes", str(processes)]
    encode, _ = _measured(encode_cmd, work, "encode")
    shards = sorted((work / ".cache" / "embeddings").glob("*.npy"))
    encode.update(docs_per_second=round(docs / encode["wall_seconds"], 1), shards=len(shards),
                  shard_mib=round(max(f.stat().st_size for f in shards) / 2**20, 1))
    results["encode"] = encode
    print("encode", encode, flush=True)
    resume, _ = _measured(encode_cmd, work, "resume")
    results["resume_all_cached"] = resume
    print("resume", resume, flush=True)
    search, stdout = _measured([sys.executable, "-m", "bench.encode_scale", "--work", str(work), "--queries",
                                str(queries), "--seed", str(seed), "--search"], work, "search")
    results["search"] = dict(json.loads(stdout.strip().splitlines()[-1]), **search)
    print("search", results["search"], flush=True)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
