"""CPU inference in float32, bfloat16 autocast and int8: what does each pay, and what does it cost?

    python -m bench precision [--data ../shared/data/scifact] [--model NAME] [--docs 1000] [--pairs 1000]

Issue 14 asks for an inference backend option for CPU users measured against plain PyTorch. Three ways
to run the same model, same texts, same process, alternating rounds:
- float32: plain PyTorch;
- bfloat16: torch autocast, as the pipeline runs inference under `inference_dtype: bfloat16` (or `auto` on a
  CPU with AVX512-BF16 / AMX), through ragtune.models.inference_precision;
- int8: `torch.ao.quantization.quantize_dynamic` with per-channel int8 weights for every nn.Linear
  (sentence-transformers' ONNX / OpenVINO int8 backends need optimum, which cannot install beside our
  transformers pin; README "Ship your models").
Measured: 1. corpus encoding throughput (docs/s) of the embedder; 2. cross-encoder scoring throughput
(pairs/s) of the same body with a one-logit head (speed only: no trained cross-encoder ships offline;
the SciFact bench measures a fine-tuned one); 3. quality: SciFact test nDCG@10 of the untrained embedder
(exact search over the whole corpus) and the cosine between each document's float32 embedding and the
other variants'. Writes bench/results/precision.json.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("float32", "bfloat16", "int8")


def _int8(model):
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def _context(variant: str):
    from ragtune.models import inference_precision

    return inference_precision("bfloat16", "cpu") if variant == "bfloat16" else nullcontext()


def _rounds(fns: dict, rounds: int) -> dict[str, float]:
    """The least disturbed wall time of each function, rounds alternating between them."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            with _context(name):
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def _quality(models: dict, data: Path, batch_size: int) -> dict:
    """nDCG@10 on SciFact test of each variant (exact cosine search), and document cosines to float32."""
    import numpy as np

    from ragtune.io import doc_text, read_corpus, read_qrels, read_queries
    from ragtune.metrics import evaluate_run
    from ragtune.retrieval import DenseIndex

    corpus = read_corpus(data / "corpus.jsonl")
    qrels, _ = read_qrels(data / "qrels" / "test.tsv")
    queries = read_queries(data / "queries.jsonl")
    qids = [q for q in qrels if q in queries]
    doc_ids = list(corpus)
    texts = [doc_text(corpus[d]) for d in doc_ids]
    out, embs = {}, {}
    for name, model in models.items():
        with _context(name):
            docs = model.encode_document(texts, batch_size=batch_size, normalize_embeddings=True)
            q = model.encode_query([queries[i]["text"] for i in qids], batch_size=batch_size,
                                   normalize_embeddings=True)
        embs[name] = np.asarray(docs, dtype=np.float32)
        run = DenseIndex(embs[name], doc_ids, "flat").search(np.asarray(q, dtype=np.float32), qids, 100)
        out[name] = round(evaluate_run(run, qrels, {"ndcg_cutoffs": [10]})[0]["nDCG@10"], 4)
    cosines = {name: (embs["float32"] * e).sum(axis=1) for name, e in embs.items() if name != "float32"}
    return {"test_queries": len(qids), "docs": len(doc_ids), "ndcg@10": out,
            "ndcg@10_change": {n: round(out[n] - out["float32"], 4) for n in cosines},
            "doc_cosine_to_float32": {n: {"mean": round(float(c.mean()), 5), "min": round(float(c.min()), 5)}
                                      for n, c in cosines.items()}}


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=ROOT.parent / "shared" / "data" / "scifact",
              show_default=True, help="BEIR SciFact folder")
@click.option("--model", default="sentence-transformers/all-MiniLM-L6-v2", show_default=True)
@click.option("--docs", default=1000, show_default=True, help="documents per throughput round")
@click.option("--pairs", default=1000, show_default=True, help="(query, document) pairs per rerank round")
@click.option("--max-seq-length", default=128, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--rounds", default=2, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=ROOT / "bench" / "results" / "precision.json",
              show_default=True)
def main(data, model, docs, pairs, max_seq_length, batch_size, rounds, out):
    from sentence_transformers import CrossEncoder, SentenceTransformer

    from ragtune.io import doc_text, read_corpus, read_queries, write_json
    from ragtune.models import native_bfloat16, resolve_model

    path = resolve_model(model)
    corpus = read_corpus(data / "corpus.jsonl")
    texts = [doc_text(d) for d in list(corpus.values())[:docs]]
    query_texts = [q["text"] for q in read_queries(data / "queries.jsonl").values()]
    pair_list = [(query_texts[i % len(query_texts)], texts[i % len(texts)]) for i in range(pairs)]
    # bfloat16 is autocast over the float32 model: the same object serves both.
    embedder = SentenceTransformer(path, device="cpu")
    embedder.max_seq_length = max_seq_length
    embedders = {"float32": embedder, "bfloat16": embedder, "int8": _int8(SentenceTransformer(path, device="cpu"))}
    embedders["int8"].max_seq_length = max_seq_length
    # The embedder's body with a fresh one-logit head: what ragtune's reranker starts from offline.
    reranker = CrossEncoder(path, num_labels=1, max_length=max_seq_length, device="cpu")
    rerankers = {"float32": reranker, "bfloat16": reranker,
                 "int8": _int8(CrossEncoder(path, num_labels=1, max_length=max_seq_length, device="cpu"))}
    for name in VARIANTS:  # warm-up
        with _context(name):
            embedders[name].encode(texts[:batch_size], batch_size=batch_size)
            rerankers[name].predict(pair_list[:batch_size], batch_size=batch_size)
    encode = _rounds({n: (lambda m=m: m.encode_document(texts, batch_size=batch_size)) for n, m in embedders.items()},
                     rounds)
    rerank = _rounds({n: (lambda m=m: m.predict(pair_list, batch_size=batch_size)) for n, m in rerankers.items()},
                     rounds)
    from .machine import describe

    result = {
        "machine": describe(ROOT), "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "native_bfloat16": native_bfloat16("cpu"),
        "model": model, "max_seq_length": max_seq_length, "batch_size": batch_size, "rounds": rounds,
        "bfloat16": "torch.autocast over the float32 model (ragtune.models.inference_precision)",
        "int8": "torch.ao.quantization.quantize_dynamic, nn.Linear, per-channel qint8 weights",
        "encode_docs_per_second": {n: round(len(texts) / t, 1) for n, t in encode.items()},
        "encode_speedup": {n: round(encode["float32"] / encode[n], 3) for n in VARIANTS[1:]},
        "rerank_pairs_per_second": {n: round(len(pair_list) / t, 1) for n, t in rerank.items()},
        "rerank_speedup": {n: round(rerank["float32"] / rerank[n], 3) for n in VARIANTS[1:]},
        "quality": _quality(embedders, data, batch_size),
    }
    write_json(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
