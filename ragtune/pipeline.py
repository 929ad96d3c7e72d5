"""One function per pipeline stage: read the stage's inputs, call the library, write its declared outputs.

Stage scripts in stages/ only parse options and call these; the logic lives in the modules they call.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .cli import summary
from .errors import UserError
from .io import (CorpusFile, atomic_output, read_corpus, read_qrels, read_queries, write_json,
                 write_jsonl, write_qrels, write_queries)
from .models import check_model_dir, pick_device, resolve_model

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
EMBEDDING_CACHE = Path(".cache") / "embeddings"


def _base_model(name: str, security: dict, key: str | None = None) -> str:
    """Resolve a model named in params (`key`, e.g. embedder.base) and apply the security checks."""
    path = resolve_model(name, key)
    check_model_dir(path, security["trust_remote_code"], security["allow_pickle"])
    return path


def _local_dir(name: str, key: str) -> str:
    """A local folder for a model name (downloads a hub id once, where there is a network)."""
    path = resolve_model(name, key)
    if Path(path).is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(path)
    except Exception as e:  # offline, unknown id, ...
        raise UserError(f"params.yaml: {key}: '{name}' is not a local folder and could not be fetched from the "
                        f"hub ({e})") from None


def ingest(params: dict, *, out_dir: str, stats_path: str) -> None:
    from .ingest import ingest as build

    stats = build(params["ingest"], seed=params["seed"], out_dir=Path(out_dir))
    write_json(stats_path, stats)
    summary(f"{stats.get('documents')} documents, {stats.get('queries')} queries -> {out_dir}")


def prepare(params: dict, *, raw_dir: str, out_dir: str, stats_path: str) -> None:
    from .splits import split_queries

    raw = Path(raw_dir)
    queries = read_queries(raw / "queries.jsonl")
    qrels_files = sorted((raw / "qrels").glob("*.tsv"))
    if not qrels_files:
        raise UserError(f"{raw / 'qrels'}: no qrels/<split>.tsv files")
    qrels_by_split = {f.stem: read_qrels(f)[0] for f in qrels_files}
    corpus = CorpusFile(raw / "corpus.jsonl")  # streamed: lets the split refuse test positives as train queries
    split_qrels, stats = split_queries(queries, qrels_by_split, params["prepare"], seed=params["seed"],
                                       corpus=corpus)
    used = {qid for split in SPLITS for qid in split_qrels[split]}
    with atomic_output(out_dir, is_dir=True) as tmp:
        write_queries(tmp / "queries.jsonl", {qid: q for qid, q in queries.items() if qid in used})
        for split in SPLITS:
            write_qrels(tmp / "qrels" / f"{split}.tsv", split_qrels[split])
    write_json(stats_path, stats)
    _warn_few_val(len(split_qrels["val"]))
    summary(", ".join(f"{s}: {len(split_qrels[s])} queries" for s in SPLITS))


def _warn_few_val(n: int) -> None:
    from .report import few_val_queries

    if warning := few_val_queries(n):
        log.warning("%s", warning)


def load_split(prepared_dir: str | Path, split: str) -> tuple[dict, dict]:
    """(queries of the split as {qid: text}, qrels of the split)."""
    prepared = Path(prepared_dir)
    qrels, _ = read_qrels(prepared / "qrels" / f"{split}.tsv")
    queries = read_queries(prepared / "queries.jsonl")
    return {qid: queries[qid]["text"] for qid in qrels}, qrels


def mine(params: dict, *, corpus_path: str, prepared_dir: str, out_dir: str, stats_path: str) -> None:
    from .mining import mine as mine_groups

    if params["mine"]["rescore_with"]:  # a user-named cross-encoder: the same safety checks as a base
        _base_model(params["mine"]["rescore_with"], params["security"], "mine.rescore_with")
    embedder = dict(params["embedder"])
    if params["mine"]["first_stage"] != "bm25":  # only dense and hybrid mining load the embedder
        embedder["base"] = _base_model(embedder["base"], params["security"], "embedder.base")
    corpus = read_corpus(corpus_path)
    queries = read_queries(Path(prepared_dir) / "queries.jsonl")
    train_qrels, _ = read_qrels(Path(prepared_dir) / "qrels" / "train.tsv")
    val_qrels, _ = read_qrels(Path(prepared_dir) / "qrels" / "val.tsv")
    train_groups, val_groups, stats = mine_groups(
        corpus, queries, train_qrels, val_qrels, params["mine"], seed=params["seed"], embedder=embedder,
        device=pick_device(params["device"]), cache_dir=EMBEDDING_CACHE)
    if not train_groups:
        raise UserError("mine: no training groups (are there train queries with positives?)")
    with atomic_output(out_dir, is_dir=True) as tmp:
        write_jsonl(tmp / "train.jsonl", train_groups)
        write_jsonl(tmp / "val.jsonl", val_groups)
    write_json(stats_path, stats)
    summary(f"{len(train_groups)} train groups, {len(val_groups)} val groups -> {out_dir}")


def _train(kind: str, params: dict, *, negatives_dir: str, out_dir: str, stats_path: str, live_dir: str,
           checkpoint_dir: str, resume: bool) -> None:
    if kind == "embedder":
        from .train_embedder import train_embedder as train
    else:
        from .train_reranker import train_reranker as train
    from . import distributed

    cfg = params[kind]
    negatives = Path(negatives_dir)
    base = _base_model(cfg["base"], params["security"], f"{kind}.base")
    # Under torchrun (see ragtune.distributed): join the process group; only rank 0 writes outputs.
    device = distributed.init(pick_device(params["device"]))
    main = distributed.is_main()
    try:
        stats = train(base=base, train_path=negatives / "train.jsonl", val_path=negatives / "val.jsonl",
                      out_dir=Path(out_dir), cfg=cfg, epochs=params["epochs"], seed=params["seed"],
                      device=device, checkpoint_dir=Path(checkpoint_dir),
                      live_dir=Path(live_dir) if main else None, resume=resume)
    finally:
        distributed.finish()
    if not main:
        return
    write_json(stats_path, stats)
    _warn_few_val(stats["val_queries"])
    before, after = stats.get("val_ndcg@10_before"), stats.get("val_ndcg@10_best")
    summary(f"{kind} val nDCG@10 {before} -> {after} -> {out_dir}")


def train_embedder(params: dict, **paths) -> None:
    _train("embedder", params, **paths)


def train_reranker(params: dict, **paths) -> None:
    _train("reranker", params, **paths)


def merge(params: dict, *, embedder_dir: str, reranker_dir: str, negatives_dir: str, embedder_out: str,
          reranker_out: str, stats_path: str) -> None:
    from .merge import merge_models, pick_weight

    cfg = params["merge"]
    results = {}
    for kind, finetuned, out in (("embedder", embedder_dir, embedder_out), ("reranker", reranker_dir, reranker_out)):
        base = _local_dir(params[kind]["base"], f"{kind}.base")
        check_model_dir(base, params["security"]["trust_remote_code"], params["security"]["allow_pickle"])
        weight, grid_scores = cfg["weight"], None
        if weight == "auto":
            weight, grid_scores = pick_weight(kind, finetuned, base, Path(negatives_dir) / "val.jsonl",
                                              cfg["grid"], params)
        stats = merge_models(finetuned, base, float(weight), out)
        if grid_scores is not None:
            stats["val_ndcg@10_by_weight"] = grid_scores
        results[kind] = stats
    write_json(stats_path, results)
    summary(f"embedder weight {results['embedder']['weight']}, reranker weight {results['reranker']['weight']}")


def evaluate(params: dict, *, corpus_path: str, prepared_dir: str, models_dir: str, metrics_dir: str) -> None:
    from .evaluate import evaluate as run_evaluation

    run_evaluation(params, corpus_path=Path(corpus_path), prepared_dir=Path(prepared_dir),
                   models_dir=Path(models_dir), metrics_dir=Path(metrics_dir), cache_dir=EMBEDDING_CACHE)
