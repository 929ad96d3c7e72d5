"""CPU inference with int8 weights vs float32: does a quantized backend pay on this machine?

    python -m bench int8 [--data ../shared/data/scifact] [--model NAME] [--docs 1000] [--pairs 1000]

Issue 14 asks for an inference backend option for CPU users (ONNX / OpenVINO, int8) measured against
plain PyTorch. sentence-transformers' ONNX and OpenVINO backends need optimum, which cannot install beside
our transformers pin (README "Ship your models"); PyTorch's own dynamic quantization needs nothing more:
`torch.ao.quantization.quantize_dynamic` with per-channel int8 weights for every nn.Linear (activations
quantized on the fly). Measured, same texts, same process, alternating rounds:
1. corpus encoding throughput (docs/s) of the embedder, float32 vs int8;
2. cross-encoder scoring throughput (pairs/s) of the same body with a one-logit head (speed only: no
   trained cross-encoder ships offline, so its quality change is not measured here);
3. quality: SciFact test nDCG@10 of the untrained embedder (exact search over the whole corpus), and the
   cosine between each document's float32 and int8 embedding.
Writes bench/results/int8.json.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]


def _int8(model):
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def _rounds(fns: dict, rounds: int) -> dict[str, float]:
    """The least disturbed wall time of each function, rounds alternating between them."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _quality(models: dict, data: Path, max_seq_length: int, batch_size: int) -> dict:
    """nDCG@10 on SciFact test of each model (exact cosine search), and float32 vs int8 document cosines."""
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
        docs = model.encode_document(texts, batch_size=batch_size, normalize_embeddings=True)
        q = model.encode_query([queries[i]["text"] for i in qids], batch_size=batch_size, normalize_embeddings=True)
        run = DenseIndex(np.asarray(docs, dtype=np.float32), doc_ids, "flat").search(
            np.asarray(q, dtype=np.float32), qids, 100)
        out[name] = round(evaluate_run(run, qrels, {"ndcg_cutoffs": [10]})[0]["nDCG@10"], 4)
        embs[name] = docs
    cos = (embs["float32"] * embs["int8"]).sum(axis=1)
    return {"test_queries": len(qids), "docs": len(doc_ids), "ndcg@10": out,
            "ndcg@10_change": round(out["int8"] - out["float32"], 4),
            "doc_cosine_float32_vs_int8": {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4)}}


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=ROOT.parent / "shared" / "data" / "scifact",
              show_default=True, help="BEIR SciFact folder")
@click.option("--model", default="sentence-transformers/all-MiniLM-L6-v2", show_default=True)
@click.option("--docs", default=1000, show_default=True, help="documents per throughput round")
@click.option("--pairs", default=1000, show_default=True, help="(query, document) pairs per rerank round")
@click.option("--max-seq-length", default=128, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--rounds", default=2, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=ROOT / "bench" / "results" / "int8.json",
              show_default=True)
def main(data, model, docs, pairs, max_seq_length, batch_size, rounds, out):
    from sentence_transformers import CrossEncoder, SentenceTransformer

    from ragtune.io import doc_text, read_corpus, read_queries, write_json
    from ragtune.models import resolve_model

    path = resolve_model(model)
    corpus = read_corpus(data / "corpus.jsonl")
    texts = [doc_text(d) for d in list(corpus.values())[:docs]]
    query_texts = [q["text"] for q in read_queries(data / "queries.jsonl").values()]
    pair_list = [(query_texts[i % len(query_texts)], texts[i % len(texts)]) for i in range(pairs)]
    embedders = {"float32": SentenceTransformer(path, device="cpu")}
    embedders["float32"].max_seq_length = max_seq_length
    embedders["int8"] = _int8(SentenceTransformer(path, device="cpu"))
    embedders["int8"].max_seq_length = max_seq_length
    # The embedder's body with a fresh one-logit head: what ragtune's reranker starts from offline.
    rerankers = {"float32": CrossEncoder(path, num_labels=1, max_length=max_seq_length, device="cpu")}
    rerankers["int8"] = _int8(CrossEncoder(path, num_labels=1, max_length=max_seq_length, device="cpu"))
    for name in embedders:  # warm-up
        embedders[name].encode(texts[:batch_size], batch_size=batch_size)
        rerankers[name].predict(pair_list[:batch_size], batch_size=batch_size)
    encode = _rounds({n: (lambda m=m: m.encode_document(texts, batch_size=batch_size)) for n, m in embedders.items()},
                     rounds)
    rerank = _rounds({n: (lambda m=m: m.predict(pair_list, batch_size=batch_size)) for n, m in rerankers.items()},
                     rounds)
    from .machine import describe

    result = {
        "machine": describe(ROOT), "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "model": model, "max_seq_length": max_seq_length, "batch_size": batch_size, "rounds": rounds,
        "quantization": "torch.ao.quantization.quantize_dynamic, nn.Linear, per-channel qint8 weights",
        "encode_docs_per_second": {n: round(len(texts) / t, 1) for n, t in encode.items()},
        "encode_speedup_int8": round(encode["float32"] / encode["int8"], 3),
        "rerank_pairs_per_second": {n: round(len(pair_list) / t, 1) for n, t in rerank.items()},
        "rerank_speedup_int8": round(rerank["float32"] / rerank["int8"], 3),
        "quality": _quality(embedders, data, max_seq_length, batch_size),
    }
    write_json(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
