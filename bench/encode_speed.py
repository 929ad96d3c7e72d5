"""Corpus encoding throughput: ragtune's `encode_corpus` vs a bare `SentenceTransformer.encode`.

    python -m bench.encode_speed --corpus corpus.jsonl --model PATH [--docs 1000] [--rounds 2] --out FILE

Same texts (`doc_text`: title + text), same batch size and max_seq_length, same process, alternating
rounds so that machine load hits both alike. ragtune's cache is bypassed (a fresh temp dir per round).
Target (issue 8): ragtune within 10% of the bare call.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click


@click.command()
@click.option("--corpus", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--model", required=True)
@click.option("--docs", default=1000, show_default=True, help="first N documents of the corpus")
@click.option("--max-seq-length", default=128, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--rounds", default=2, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (bench/gpu_run.py)")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def main(corpus, model, docs, max_seq_length, batch_size, rounds, device, out):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from ragtune.embeddings import encode_corpus
    from ragtune.io import doc_text, iter_corpus, write_json
    from ragtune.params import defaults

    texts = []
    for _, title, text in iter_corpus(corpus):
        texts.append(doc_text({"title": title, "text": text}))
        if len(texts) == docs:
            break
    bare_model = SentenceTransformer(model, device=device)
    bare_model.max_seq_length = max_seq_length
    bare_model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up for both (same weights, threads)

    timings = {"bare": [], "ragtune": []}
    for _ in range(rounds):
        start = time.perf_counter()
        bare = bare_model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        timings["bare"].append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            ours = encode_corpus(model, texts, batch_size=batch_size, max_seq_length=max_seq_length,
                                 device=device, cache_dir=cache, show_progress=False,
                                 security=defaults()["security"])
            timings["ragtune"].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in timings.items()}  # the least disturbed round of each
    result = {"docs": len(texts), "batch_size": batch_size, "max_seq_length": max_seq_length, "device": device,
              "seconds": {k: [round(t, 2) for t in v] for k, v in timings.items()},
              "docs_per_second": {k: round(len(texts) / t, 1) for k, t in best.items()},
              "ragtune_vs_bare": round(best["bare"] / best["ragtune"], 3),  # throughput ratio, 1 = same
              "max_abs_diff": float(np.abs(bare - ours).max())}
    write_json(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
