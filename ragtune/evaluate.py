"""The evaluate stage: every first stage x reranker on the test split, scored with one metric code.

Choices that need data are made on the val split, never on test: which dense model the hybrid fuses
with BM25 is the one with the best val nDCG@10.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path

from .errors import UserError
from .io import read_corpus, read_queries, read_qrels, write_json, write_text
from .logs import summary
from .models import autocast_dtype, checked_model, is_trained_reranker, pick_device
from .report import rerank_shares, system_name

log = logging.getLogger(__name__)

BASELINE = "dense:base"
# The report's columns: the headline metrics, whichever of them the cutoffs in params produce.
REPORT_METRICS = ["nDCG@10", "MRR@10", "R@10", "R@100", "P@10", "MAP@100", "Hit@10"]


def _model_paths(params: dict, models_dir: Path) -> dict[str, str]:
    """Every model evaluate may load; a base model only when a wanted system uses it."""
    cfg, security = params["evaluate"], params["security"]
    paths = {
        "dense:finetuned": str(models_dir / "embedder"),
        "dense:merged": str(models_dir / "embedder-merged"),
        "rerank:finetuned": str(models_dir / "reranker"),
        "rerank:merged": str(models_dir / "reranker-merged"),
    }
    if {"dense:base", "hybrid"} & set(cfg["first_stages"]):
        paths["dense:base"] = checked_model(params["embedder"]["base"], security, "embedder.base")
    if "base" in cfg["rerankers"]:
        paths["rerank:base"] = checked_model(params["reranker"]["base"], security, "reranker.base")
    return paths


def first_stage_runs(params: dict, corpus: dict, split_queries: dict[str, dict[str, str]],
                     val_qrels: dict, paths: dict, device: str, cache_dir: Path) -> tuple[dict, dict]:
    """Return ({split: {first_stage: run}}, val nDCG@10 of each dense model)."""
    from .metrics import evaluate_run
    from .retrieval import BM25Index, dense_search, pick_wsum, rrf, wsum

    cfg, emb = params["evaluate"], params["embedder"]
    wanted = cfg["first_stages"]
    k = cfg["retrieve_depth"]
    runs: dict[str, dict] = {split: {} for split in split_queries}
    bm25 = BM25Index(corpus, params["language"])
    for split, queries in split_queries.items():
        runs[split]["bm25"] = bm25.search(queries, k)
    dense_names = [n for n in ("dense:base", "dense:finetuned", "dense:merged")
                   if n in wanted or "hybrid" in wanted]
    for name in dense_names:
        for split, queries in split_queries.items():
            runs[split][name] = dense_search(paths[name], corpus, queries, k, batch_size=emb["encode_batch_size"],
                                             max_seq_length=emb["max_seq_length"], device=device,
                                             cache_dir=cache_dir, security=params["security"])
    val_scores = {name: evaluate_run(runs["val"][name], val_qrels, cfg)[0]["nDCG@10"] for name in dense_names}
    if "hybrid" in wanted:
        best = max(dense_names, key=lambda n: (val_scores[n], -dense_names.index(n)))
        log.info("hybrid = %s(bm25, %s): best dense model on val (nDCG@10 %s)", cfg["fusion"], best,
                 {n: round(v, 4) for n, v in val_scores.items()})
        if cfg["fusion"] == "wsum":
            w, by_w = pick_wsum(runs["val"]["bm25"], runs["val"][best],
                                lambda run: evaluate_run(run, val_qrels, cfg)[0]["nDCG@10"], cfg["fusion_grid"], k)
            log.info("hybrid: BM25 weight %g picked on val (nDCG@10 by weight %s)", w, by_w)
            val_scores["hybrid_bm25_weight"], val_scores["hybrid_val_ndcg@10_by_weight"] = w, by_w
        for split in split_queries:
            pair = [runs[split]["bm25"], runs[split][best]]
            runs[split]["hybrid"] = (wsum(pair, [w, 1.0 - w], depth=k) if cfg["fusion"] == "wsum"
                                     else rrf(pair, k=cfg["rrf_k"], depth=k))
        val_scores["hybrid_dense"] = best
    for split in runs:
        runs[split] = {n: r for n, r in runs[split].items() if n in wanted}
    return runs, val_scores


def evaluate(params: dict, *, corpus_path: Path, prepared_dir: Path, models_dir: Path, metrics_dir: Path,
             cache_dir: Path) -> dict:
    from .metrics import evaluate_run, metric_names
    from .report import (console_table, headline, markdown_report, ndcg_bar_rows, per_query_change_rows,
                         recall_curve_rows, safe_name, write_per_query_csv, write_trec_run)

    cfg, rr = params["evaluate"], params["reranker"]
    device = pick_device(params["device"])
    corpus = read_corpus(corpus_path)
    queries = read_queries(prepared_dir / "queries.jsonl")
    qrels = {s: read_qrels(prepared_dir / "qrels" / f"{s}.tsv")[0] for s in ("val", "test")}
    if not qrels["test"]:
        raise UserError(f"{prepared_dir / 'qrels' / 'test.tsv'}: no test judgments to evaluate on")
    split_queries = {s: {qid: queries[qid]["text"] for qid in qrels[s]} for s in qrels}
    paths = _model_paths(params, models_dir)
    log.info("evaluating on %d test queries, %d documents", len(split_queries["test"]), len(corpus))

    runs, val_scores = first_stage_runs(params, corpus, split_queries, qrels["val"], paths, device, cache_dir)
    test_runs = dict(runs["test"])
    rerankers = [r for r in cfg["rerankers"] if r != "none"]
    if "base" in rerankers and not is_trained_reranker(paths["rerank:base"]):
        log.info("rerank:base skipped: %s has no trained ranking head", params["reranker"]["base"])
        rerankers.remove("base")
    alphas = {}
    for reranker in rerankers:
        score_cache: dict = {}  # one model scores each (query, doc) pair once across first stages and splits
        rerank_split = functools.partial(_rerank_split, corpus=corpus, model=paths[f"rerank:{reranker}"],
                                         cfg=cfg, max_length=rr["max_length"], device=device, cache=score_cache,
                                         security=params["security"])
        alphas[reranker] = _pick_alpha(cfg, runs["val"], split_queries["val"], qrels["val"], rerank_split)
        log.info("rerank:%s: interpolation alpha %s", reranker, alphas[reranker])
        reranked = rerank_split(runs["test"], split_queries["test"], alphas[reranker]["alpha"])
        test_runs.update({system_name(first, reranker): run for first, run in reranked.items()})
        # Reported, never chosen on: the pure reranker (alpha 1) over each first stage; scores are cached.
        alone = rerank_split(runs["test"], split_queries["test"], dict.fromkeys(runs["test"], 1.0))
        alphas[reranker]["test_ndcg@10_reranker_alone"] = {
            first: round(evaluate_run(run, qrels["test"], cfg)[0]["nDCG@10"], 4) for first, run in alone.items()}
    if "none" not in cfg["rerankers"]:
        test_runs = {s: r for s, r in test_runs.items() if "rerank:" in s}
    given = _given_candidates(params, corpus, split_queries["test"], qrels["test"], paths, rerankers, device,
                              cache_dir) if params["ingest"]["source"] == "groups" else {}

    means, per_query = {}, {}
    for system, run in test_runs.items():
        means[system], per_query[system] = evaluate_run(run, qrels["test"], cfg)
    groups = _group_means(per_query, queries, cfg["group_field"])
    results = {s: dict(m, **({"by_group": groups[s]} if groups else {})) for s, m in means.items()}

    write_json(metrics_dir / "eval.json", results)
    write_json(metrics_dir / "summary.json", headline(means))
    write_json(metrics_dir / "rerank_alpha.json", alphas)
    write_json(metrics_dir / "eval_candidates.json", given)  # {} unless the data brings its candidates
    shown = [m for m in REPORT_METRICS if m in metric_names(cfg)] or metric_names(cfg)[:6]
    notes = [f"Test split: {len(qrels['test'])} queries, {len(corpus)} documents; models ran in "
             f"{autocast_dtype(device)} (inference_dtype); rerank depth {cfg['rerank_depth']}; hybrid fuses "
             f"BM25 with {val_scores.get('hybrid_dense', '-')} "
             f"(best dense model on val) by "
             + (f"weighted sum, BM25 weight {val_scores['hybrid_bm25_weight']:g} picked on val."
                if "hybrid_bm25_weight" in val_scores else "RRF.")]
    notes += [f"rerank:{reranker} scores are interpolated with the first stage's, reranker share (alpha; "
              f"1 = pure reranker) {rerank_shares(chosen)}." for reranker, chosen in alphas.items()]
    report = markdown_report(means, per_query, baseline=BASELINE, metrics_shown=shown,
                             significance=cfg["significance"], seed=params["seed"], notes=notes,
                             groups=_by_group_means(groups), warnings=_warnings(params, paths, len(qrels["val"])))
    if given:
        from .candidates import markdown
        report += markdown(given, len(qrels["test"]))
    write_text(metrics_dir / "report.md", report)
    write_per_query_csv(metrics_dir / "per_query.csv", per_query)
    for system, run in test_runs.items():
        write_trec_run(metrics_dir / "runs" / f"{safe_name(system)}.trec", run, safe_name(system))
    write_json(metrics_dir / "plots" / "recall.json", recall_curve_rows(means, cfg["recall_cutoffs"]))
    write_json(metrics_dir / "plots" / "ndcg.json", ndcg_bar_rows(means))
    write_json(metrics_dir / "plots" / "per_query_change.json", per_query_change_rows(means, per_query))
    print(console_table(means), flush=True)
    best = max(means, key=lambda s: means[s]["nDCG@10"])
    summary(f"{len(means)} systems; best {best} nDCG@10 {means[best]['nDCG@10']:.4f}; "
            f"report in {metrics_dir / 'report.md'}")
    return results


def _given_candidates(params: dict, corpus: dict, queries: dict, qrels: dict, paths: dict, rerankers: list[str],
                      device: str, cache_dir: Path) -> dict:
    """MTEB's reranking view (ragtune.candidates): each model ranks each test query's judged documents."""
    from . import candidates as c

    cfg, emb = params["evaluate"], params["embedder"]
    cands = c.candidates(qrels)
    runs = {}
    for name in cfg["first_stages"]:
        if name == "bm25":
            runs[name] = c.bm25_scores(cands, queries, corpus, params["language"])
        elif name.startswith("dense:"):
            runs[name] = c.dense_scores(paths[name], cands, queries, corpus, emb=emb, device=device,
                                        cache_dir=cache_dir, security=params["security"])
    for r in rerankers:
        runs[f"rerank:{r}"] = c.reranker_scores(paths[f"rerank:{r}"], cands, queries, corpus,
                                                batch_size=cfg["batch_size"],
                                                max_length=params["reranker"]["max_length"], device=device,
                                                security=params["security"])
    results = c.view(runs, qrels)
    log.info("reranking view (given candidates): %s", {m: round(v["MAP"], 4) for m, v in results.items()})
    return results


def _warnings(params: dict, paths: dict, n_val: int) -> list[str]:
    """What the report must say first: a val split too small to choose on, a fine-tuned model that is
    its base bit for bit. Each is logged too."""
    from .merge import same_weights
    from .report import few_val_queries, same_as_base

    out = [w for w in [few_val_queries(n_val)] if w]
    for kind, system in (("embedder", "dense"), ("reranker", "rerank")):
        base = paths.get(f"{system}:base")
        if base and Path(base).is_dir() and same_weights(paths[f"{system}:finetuned"], base):
            out.append(same_as_base(kind, params[kind]["base"]))
    for w in out:
        log.warning("%s", w)
    return out


def _group_means(per_query: dict, queries: dict, field: str | None) -> dict:
    """{system: {group: {metric: mean}}} over the queries whose metadata[field] is that group."""
    if not field:
        return {}
    out: dict = {}
    for system, rows in per_query.items():
        by_group: dict[str, list[dict]] = {}
        for qid, values in rows.items():
            group = str(queries.get(qid, {}).get("metadata", {}).get(field, "(none)"))
            by_group.setdefault(group, []).append(values)
        out[system] = {g: {m: sum(v[m] for v in vs) / len(vs) for m in vs[0]} for g, vs in sorted(by_group.items())}
    return out


def _by_group_means(groups: dict) -> dict | None:
    """{system: {group: metrics}} -> {group: {system: metrics}}, the report's per-group layout."""
    if not groups:
        return None
    out: dict = {}
    for system, by_group in groups.items():
        for group, values in by_group.items():
            out.setdefault(group, {})[system] = values
    return out


def _rerank_split(runs: dict, queries: dict, alpha: Mapping[str, float], *, corpus: dict, model: str,
                  cfg: dict, max_length: int, device: str, cache: dict, security: dict) -> dict:
    """Rerank every first stage's run of one split, interpolated with the first stage at its share
    `alpha[first stage]`."""
    from .rerank import interpolate, rerank

    depth = cfg["rerank_depth"]
    out = {}
    for first, run in runs.items():
        share = alpha[first]
        reranked = rerank(run, queries, corpus, model, depth=depth, batch_size=cfg["batch_size"],
                          max_length=max_length, device=device, cache=cache, security=security)
        out[first] = reranked if share == 1.0 else interpolate(run, reranked, share, depth=depth)
    return out


def _pick_alpha(cfg: dict, val_runs: dict, val_queries: dict, val_qrels: dict, rerank_split) -> dict:
    """The reranker's share per first stage: {"alpha": {first stage: share}}, fixed in params, or for each
    first stage the grid value with its best val nDCG@10 (ties: the larger share). Per first stage because
    a reranker that lifts a weak first stage can pull a strong one down (SciFact, no labels: the share
    picked on the mean put hybrid + rerank 0.013 below the hybrid). Chosen on val, never on test."""
    from .metrics import evaluate_run

    firsts = list(val_runs)
    if cfg["rerank_alpha"] != "auto":
        return {"alpha": dict.fromkeys(firsts, float(cfg["rerank_alpha"]))}
    if not val_qrels:
        log.warning("no val queries: rerank_alpha auto falls back to 1.0 (pure reranker)")
        return {"alpha": dict.fromkeys(firsts, 1.0)}
    scores: dict[str, dict[str, float]] = {first: {} for first in firsts}
    for alpha in sorted({float(a) for a in cfg["alpha_grid"]}):
        for first, run in rerank_split(val_runs, val_queries, dict.fromkeys(firsts, alpha)).items():
            scores[first][f"{alpha:g}"] = round(evaluate_run(run, val_qrels, cfg)[0]["nDCG@10"], 4)
    best = {first: float(max(by, key=lambda a: (by[a], float(a)))) for first, by in scores.items()}
    return {"alpha": best, "val_ndcg@10_by_alpha": scores}
