"""Load benchmark: mining and evaluation at scale (200k passages, 10k queries) with the tiny model.

Not a test. Measures wall time and peak RSS of the two stages whose memory grows with the data:
`mine` (BM25 + dense over the whole corpus, hybrid) and `evaluate` (every first stage x reranker,
pytrec_eval). Each runs in its own process so its peak RSS is its own. The tiny random BERT (hidden 32,
2 layers) keeps model compute small, so what is measured is the pipeline's own cost: indexes, runs,
rerank pairs, metrics.

    python bench/load.py                         # 200k passages, 10k train + 10k test queries
    python bench/load.py --docs 5000 --queries 500 --out /tmp/small.json   # a quick check

Writes bench/results/load.json.
"""
from __future__ import annotations

import json
import os
import platform
import random
import resource
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _synthetic(work: Path, n_docs: int, n_queries: int, seed: int) -> dict:
    """Passages of random words from a 20k-word vocabulary; each query takes 6 words of its passage
    plus 2 random ones. One positive per query. Train and test both get n_queries, val a tenth."""
    from ragtune.io import write_corpus, write_qrels, write_queries

    rng = random.Random(seed)
    vocab = list(dict.fromkeys("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9)))
                               for _ in range(20000)))
    corpus = {f"d{i}": {"title": "", "text": " ".join(rng.choices(vocab, k=rng.randint(30, 60)))}
              for i in range(n_docs)}
    n_val = max(n_queries // 10, 10)
    queries, qrels = {}, {"train": {}, "val": {}, "test": {}}
    docs = rng.sample(sorted(corpus), 2 * n_queries + n_val)
    for i, doc in enumerate(docs):
        split = "train" if i < n_queries else "val" if i < n_queries + n_val else "test"
        words = corpus[doc]["text"].split()
        text = " ".join(rng.sample(words, 6) + rng.choices(vocab, k=2))
        queries[f"q{i}"] = {"text": text, "metadata": {}}
        qrels[split][f"q{i}"] = {doc: 1}
    write_corpus(work / "corpus.jsonl", corpus)
    write_queries(work / "prepared" / "queries.jsonl", queries)
    for split, q in qrels.items():
        write_qrels(work / "prepared" / "qrels" / f"{split}.tsv", q)
    return {"documents": n_docs, **{f"{s}_queries": len(q) for s, q in qrels.items()}}


def _models(work: Path) -> Path:
    """The tiny BERT as every model evaluate wants: base, fine-tuned and merged embedders and rerankers."""
    from tiny_model import build_tiny_bert

    from ragtune.params import defaults
    from ragtune.train_reranker import convert_to_cross_encoder

    models = work / "models"
    if (models / "reranker-merged").is_dir():
        return models
    tiny = Path(build_tiny_bert(work / "tiny"))
    for name in ("embedder", "embedder-merged"):
        shutil.copytree(tiny, models / name, dirs_exist_ok=True)
    convert_to_cross_encoder(str(tiny), models / "reranker", seed=0, security=defaults()["security"])
    shutil.copytree(models / "reranker", models / "reranker-merged", dirs_exist_ok=True)
    return models


def _params(work: Path) -> dict:
    from ragtune import params as params_module

    p = params_module.defaults()
    tiny = str(work / "tiny" / "st")
    p["device"] = "cpu"
    p["mine"].update(first_stage="hybrid", range_max=50, num_negatives=7)
    p["embedder"].update(base=tiny, max_seq_length=64, encode_batch_size=256)
    p["reranker"].update(base=tiny, max_length=64)
    p["evaluate"].update(rerank_depth=5, retrieve_depth=100, batch_size=256,
                         rerankers=["none", "finetuned"])
    return p


def _phase(name: str, work: Path) -> None:
    """Run one stage in this process, then report its wall time and peak RSS as one json line."""
    import logging

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(1)  # 2 threads contend badly on a shared 2-core machine
    from ragtune.pipeline import evaluate, mine

    os.chdir(work)  # the embedding cache (.cache/embeddings) lives in the work folder
    p = _params(work)
    start = time.perf_counter()
    if name == "mine":
        mine.run(p, corpus_path="corpus.jsonl", prepared_dir="prepared", out_dir="negatives",
                 stats_path="mining.json")
    else:
        evaluate.run(p, corpus_path="corpus.jsonl", prepared_dir="prepared", models_dir="models",
                     metrics_dir="metrics")
    took = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"phase": name, "seconds": round(took, 1), "peak_rss_mb": round(peak_mb)}), flush=True)


@click.command()
@click.option("--docs", default=200_000, show_default=True)
@click.option("--queries", default=10_000, show_default=True, help="train queries (mining) = test queries (evaluate)")
@click.option("--work", "work_dir", default="/tmp/ragtune-load", show_default=True)
@click.option("--out", "out_path", default=str(ROOT / "bench" / "results" / "load.json"), show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--phase", type=click.Choice(["mine", "evaluate"]), default=None, hidden=True)
def main(docs, queries, work_dir, out_path, seed, phase):
    work = Path(work_dir)
    if phase:
        return _phase(phase, work)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.perf_counter()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = _synthetic(work, docs, queries, seed)
    _models(work)
    setup_seconds = round(time.perf_counter() - t0, 1)
    results = {"data": data, "setup_seconds": setup_seconds, "phases": {}}
    for name in ("mine", "evaluate"):
        proc = subprocess.run([sys.executable, __file__, "--work", str(work), "--phase", name],
                              capture_output=True, text=True)
        (work / f"{name}.log").write_text(proc.stderr)
        if proc.returncode != 0:
            sys.exit(f"phase {name} failed:\n{proc.stderr[-4000:]}")
        results["phases"][name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(results["phases"][name], flush=True)
    results["mining"] = json.loads((work / "mining.json").read_text())
    eval_json = json.loads((work / "metrics" / "eval.json").read_text())
    results["systems"] = {s: round(m["nDCG@10"], 4) for s, m in eval_json.items()}
    results["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "torch_threads": 1, "note": "2 shared cores; other jobs were running"}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["phases"]))


if __name__ == "__main__":
    main()
