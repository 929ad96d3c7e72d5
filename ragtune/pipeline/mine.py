"""Stage mine: hard negatives for the train queries and a reranking-style val set."""
from __future__ import annotations

from pathlib import Path

from ..embeddings import DEFAULT_CACHE_DIR, model_fingerprint
from ..errors import UserError
from ..io import BASE_VAL_METRICS, atomic_output, read_corpus, read_qrels, read_queries, write_json, write_jsonl
from ..logs import summary
from ..mining import mine as mine_groups
from ..models import checked_model, inference_precision, pick_device
from ..retrieval import query_text
from ..synthetic import SYNTHETIC_PREFIX, synthesize


def run(params: dict, *, corpus_path: str, prepared_dir: str, out_dir: str, stats_path: str) -> None:
    if params["mine"]["rescore_with"]:  # a user-named cross-encoder: the same safety checks as a base
        checked_model(params["mine"]["rescore_with"], params["security"], "mine.rescore_with")
    embedder = params["embedder"]
    if params["mine"]["first_stage"] != "bm25":  # only dense and hybrid mining load the embedder
        # A copy, not dict(...): only the keys mining reads count as read (see params.trace_reads).
        embedder = embedder.model_copy(
            update={"base": checked_model(embedder["base"], params["security"], "embedder.base")})
    corpus = read_corpus(corpus_path)
    queries = read_queries(Path(prepared_dir) / "queries.jsonl")
    train_qrels, _ = read_qrels(Path(prepared_dir) / "qrels" / "train.tsv")
    val_qrels, _ = read_qrels(Path(prepared_dir) / "qrels" / "val.tsv")
    synthetic, syn_stats = _synthetic(params, corpus, queries, prepared_dir)
    device = pick_device(params["device"])
    with inference_precision(params["inference_dtype"], device) as dtype:
        train_groups, val_groups, stats = mine_groups(
            corpus, queries, train_qrels, val_qrels, params["mine"], seed=params["seed"], embedder=embedder,
            device=device, cache_dir=DEFAULT_CACHE_DIR, language=params["language"],
            security=params["security"], synthetic=synthetic, consistency_k=params["synthetic"]["top_k"])
    stats["synthetic_generation"] = syn_stats
    if not train_groups:
        raise UserError("mine: no training groups (are there train queries with positives?)")
    with atomic_output(out_dir, is_dir=True) as tmp:
        write_jsonl(tmp / "train.jsonl", train_groups)
        write_jsonl(tmp / "val.jsonl", val_groups)
        if stats["val_base_embedder"] is not None:  # dense mining scored val with the base embedder
            write_json(tmp / BASE_VAL_METRICS, {"model_fingerprint": model_fingerprint(embedder["base"]),
                                                "max_seq_length": embedder["max_seq_length"],
                                                "inference_dtype": dtype,
                                                "metrics": stats["val_base_embedder"]})
    write_json(stats_path, stats)
    summary(f"{len(train_groups)} train groups ({stats['groups_real']} real, {stats['groups_synthetic']} "
            f"synthetic), {len(val_groups)} val groups -> {out_dir}")


def _synthetic(params: dict, corpus: dict, queries: dict, prepared_dir: str) -> tuple[dict, dict]:
    """params["synthetic"]["queries"] generated queries, none a near-duplicate of a val or test query."""
    n = params["synthetic"]["queries"]
    clash = next((q for q in queries if q.startswith(SYNTHETIC_PREFIX)), None) if n else None
    if clash:
        raise UserError(f"{Path(prepared_dir) / 'queries.jsonl'}: query id '{clash}' starts with "
                        f"'{SYNTHETIC_PREFIX}', which synthetic.queries uses; rename it or set synthetic.queries: 0")
    held_out = []
    for split in ("val", "test") if n else ():
        path = Path(prepared_dir) / "qrels" / f"{split}.tsv"
        if path.is_file():
            held_out += [query_text(queries[q]) for q in read_qrels(path)[0] if q in queries]
    return synthesize(corpus, held_out, n, params["ingest"], params["seed"])
