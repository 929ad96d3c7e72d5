"""What the evaluate stage shows people and other tools: the markdown report, a console table, the
per-query CSV, TREC run files and the rows behind DVC plots.

Means are {system: {metric: value}}; per-query scores are {system: {qid: {metric: value}}}, as
`ragtune.metrics.evaluate_run` returns them for each system. Paired tests come from
`ragtune.significance`. Every file is written through `ragtune.io.atomic_output`.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from .errors import UserError
from .io import atomic_output
from .significance import paired_ttest, randomization_test

Means = dict[str, dict[str, float]]
PerQuery = dict[str, dict[str, dict[str, float]]]

CONSOLE_METRICS = ("nDCG@10", "MRR@10", "R@10", "R@100")
_RERANK = " + rerank:"  # system names: '<first stage>' or '<first stage> + rerank:<reranker>'
_TRAINED_FIRST = ("dense:finetuned", "dense:merged")  # first stages and rerankers that fine-tuning made
_TRAINED_RERANKERS = ("finetuned", "merged")
# Below this many val queries, choices made on val (best checkpoint, merge weight, reranker share) are
# mostly noise: one query moves nDCG@10 by 0.05 or more, and a val set at 1.0 cannot rank checkpoints.
MIN_VAL_QUERIES = 20
_TEST_NAMES = {"randomization": "randomization test", "ttest": "t-test"}
# One plain sentence per metric family, used by "How to read this" for the families shown.
_EXPLAIN = {
    "nDCG": "nDCG@k rewards putting the relevant passages (the more relevant, the more) near the top of "
            "the first k results",
    "MRR": "MRR@k is how high the first relevant passage ranks (1 = first place, 0.5 = second, "
           "0 = not in the top k)",
    "R": "R@k is the share of all relevant passages found in the top k; for RAG, recall at the number "
         "of passages you put in the prompt is what the generator gets to see",
    "P": "P@k is the share of the top k that is relevant",
    "F1": "F1@k balances P@k and R@k",
    "MAP": "MAP@k averages precision at each relevant passage found in the top k",
    "Hit": "Hit@k is the share of queries with at least one relevant passage in the top k",
}


def rerank_shares(chosen: dict) -> str:
    """How a reranker's shares were set, from its entry in metrics/rerank_alpha.json:
    "picked on val: bm25 0.2, hybrid 0.1" (or "set in params: ...")."""
    how = "picked on val" if "val_ndcg@10_by_alpha" in chosen else "set in params"
    return f"{how}: " + ", ".join(f"{first} {share:g}" for first, share in chosen["alpha"].items())


def few_val_queries(n: int) -> str | None:
    """The warning for a val split too small to choose checkpoints on, or None."""
    if n >= MIN_VAL_QUERIES:
        return None
    return (f"Only {n} val queries (fewer than {MIN_VAL_QUERIES}): the best checkpoint, the merge weight and the "
            f"reranker share are chosen on val, and on so few queries that choice is mostly chance (a val "
            f"score already at 1.0 cannot tell checkpoints apart). Raise prepare.val_fraction, or bring more "
            f"data (more queries, or generated ones: ingest.source documents).")


def same_as_base(kind: str, base: str) -> str:
    """The plain statement for a fine-tuned model whose weights are exactly its base's."""
    return (f"The fine-tuned {kind} IS the base model ({base}): its weights are identical, so the "
            f"\"finetuned\" rows measure the base model. Fine-tuning never beat the start on val; see "
            f"metrics/train_{kind}.json.")


def headline(means: Means, metric: str = "nDCG@10") -> dict:
    """The few numbers DVC treats as metrics (`metrics/summary.json`): `dvc exp show` and `dvc metrics
    diff` stay readable in a normal terminal. The baseline, the fine-tuned embedder, the best pipeline with
    the fine-tuned reranker, and the best system; every metric of every system is in eval.json."""
    values = {"best": max(m[metric] for m in means.values())}
    for system in ("dense:base", "dense:finetuned"):
        if system in means:
            values[system] = means[system][metric]
    reranked = [m[metric] for s, m in means.items() if s.endswith(" + rerank:finetuned")]
    if reranked:
        values["rerank:finetuned"] = max(reranked)
    return {metric: {k: round(v, 4) for k, v in values.items()}}


# ---------------------------------------------------------------- formatting


def _num(v: float) -> str:
    return f"{v:.3f}"


def _delta(d: float) -> str:
    d = round(d, 3)
    return f"{0.0 if d == 0 else d:+.3f}"  # never "-0.000"


def _pval(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    if p < 0.001:
        text = "<0.001"
    elif 0.0495 <= p < 0.0505:
        text = f"{p:.4f}"  # so a starred 0.0499 never reads as "0.050"
    else:
        text = f"{p:.3f}"
    return text + (" *" if p < 0.05 else "")


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table with columns padded to equal width (readable as plain text too)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def console_table(means: Means, metrics_shown: list[str] | tuple[str, ...] = CONSOLE_METRICS) -> str:
    """Plain aligned table of the headline metrics, for printing at the end of a stage."""
    rows = [[system, *(_num(m[k]) if k in m else "-" for k in metrics_shown)] for system, m in means.items()]
    return _table(["system", *metrics_shown], rows)


# ---------------------------------------------------------------- the markdown report


def _paired_p(per_query: PerQuery, system: str, baseline: str, metric: str, test: str,
              seed: int, trials: int) -> tuple[float | None, int]:
    """p-value of `system` vs `baseline` on `metric` over the queries both have; (None, 0) if not possible."""
    a_rows, b_rows = per_query.get(system), per_query.get(baseline)
    if not a_rows or not b_rows:
        return None, 0
    qids = sorted(q for q in set(a_rows) & set(b_rows) if metric in a_rows[q] and metric in b_rows[q])
    if not qids:
        return None, 0
    a = [a_rows[q][metric] for q in qids]
    b = [b_rows[q][metric] for q in qids]
    if test == "ttest":
        return paired_ttest(a, b), len(qids)
    return randomization_test(a, b, trials=trials, seed=seed), len(qids)


def _best(values: list[float]) -> float:
    return max(round(v, 3) for v in values)


def _means_table(means: Means, metrics: list[str], baseline: str,
                 pvalues: dict[str, float | None] | None, sig_metric: str) -> str:
    best = {k: _best([m[k] for m in means.values() if k in m]) for k in metrics
            if any(k in m for m in means.values())}
    header = ["System", *metrics] + ([f"p ({sig_metric} vs baseline)"] if pvalues is not None else [])
    rows = []
    base = means.get(baseline, {})
    for system, m in means.items():
        cells = [f"{system} (baseline)" if system == baseline else system]
        for k in metrics:
            if k not in m:
                cells.append("-")
                continue
            text = _num(m[k])
            if round(m[k], 3) == best[k]:
                text = f"**{text}**"
            if system != baseline and k in base:
                text += f" ({_delta(m[k] - base[k])})"
            cells.append(text)
        if pvalues is not None:
            cells.append("—" if system == baseline else _pval(pvalues.get(system)))
        rows.append(cells)
    return _table(header, rows)


def system_name(first_stage: str, reranker: str) -> str:
    """'bm25', 'none' -> 'bm25'; 'hybrid', 'merged' -> 'hybrid + rerank:merged'."""
    return first_stage if reranker == "none" else f"{first_stage}{_RERANK}{reranker}"


def split_system(system: str) -> tuple[str, str]:
    """The inverse of `system_name`: (first stage, reranker or 'none')."""
    first, _, reranker = system.partition(_RERANK)
    return first, reranker or "none"


def _counterpart(system: str) -> str | None:
    """The system that differs from `system` only by what was fine-tuned: its fair reference."""
    first, reranker = split_system(system)
    if reranker != "none":
        return first
    if system in _TRAINED_FIRST:
        return "dense:base"
    return None


def _judge(diff: float, p: float | None) -> str:
    if p is not None and p < 0.05:
        return "helped" if diff > 0 else "hurt"
    return "no clear difference"


def _verdict(means: Means, per_query: PerQuery, metric: str, test: str, seed: int, trials: int) -> str:
    """Did fine-tuning help? Each fine-tuned system against the same pipeline without it, in plain words."""
    lines = ["## Did fine-tuning help?", ""]
    pairs = [(s, _counterpart(s)) for s in means if _counterpart(s) in means and metric in means[s]]
    if not pairs:
        lines.append("No fine-tuned system has a counterpart in this run: nothing to compare.")
    for system, ref in pairs:
        diff = means[system][metric] - means[ref][metric]
        p, n = _paired_p(per_query, system, ref, metric, test, seed, trials)
        verdict = _judge(diff, p)
        word = {"helped": "**helped**", "hurt": "**hurt**", "no clear difference": "made no clear difference"}
        p_text = _pval(p).replace(" *", "")
        p_text = p_text if p_text.startswith("<") else f"={p_text}"
        lines.append(f"- {system} vs {ref}: {word[verdict]} ({_delta(diff)} {metric}, "
                     f"p{p_text}, {_TEST_NAMES[test]} on {n} queries)")
    top = max(means, key=lambda s: means[s].get(metric, -math.inf))
    lines += ["", f"**Best system on {metric}: {top} ({_num(means[top][metric])}).**"]
    return "\n".join(lines)


def _how_to_read(metrics: list[str], baseline: str, sig_metric: str, test: str, n_queries: int) -> str:
    families = []
    for k in metrics:
        family = k.split("@")[0]
        if family in _EXPLAIN and family not in families:
            families.append(family)
    explained = "; ".join(_EXPLAIN[f] for f in families)
    return (
        f"Each row is one retrieval pipeline run on the same held-out test queries ({n_queries} queries). "
        f"Scores run from 0 to 1; higher is better. {explained}. "
        f"**Bold** marks the best value in each column. The number in parentheses is the difference to "
        f"the baseline row, {baseline}. The p column is a paired {_TEST_NAMES[test]} on per-query "
        f"{sig_metric} against the baseline: roughly, how likely a difference at least this large would be "
        f"if the two systems were really equally good; * marks p < 0.05. With several systems compared, "
        f"about one in twenty can reach p < 0.05 by chance alone: the p-values are not corrected for "
        f"multiple comparisons."
    )


def markdown_report(means: Means, per_query: PerQuery, *, baseline: str = "dense:base",
                    metrics_shown: list[str], significance: str = "randomization", seed: int,
                    notes: list[str] | tuple[str, ...] = (), groups: dict[str, Means] | None = None,
                    sig_metric: str = "nDCG@10", trials: int = 10000,
                    warnings: list[str] | tuple[str, ...] = ()) -> str:
    """The evaluation report: warnings, verdict, main table with deltas and p-values, how to read it,
    groups, notes.

    The baseline falls back to the first system when absent; the significance metric falls back to the
    first shown metric when the per-query rows lack it.
    """
    if not means:
        raise ValueError("markdown_report needs at least one system")
    if significance not in _TEST_NAMES:
        raise ValueError(f"significance must be one of {', '.join(_TEST_NAMES)}, got {significance!r}")
    notes = list(notes)
    if baseline not in means:
        first = next(iter(means))
        notes.insert(0, f"Baseline '{baseline}' was not evaluated; deltas and p-values are against '{first}'.")
        baseline = first
    metrics = [k for k in metrics_shown if any(k in m for m in means.values())]
    base_rows = per_query.get(baseline, {})
    if not any(sig_metric in row for row in base_rows.values()) and metrics:
        sig_metric = metrics[0]
    tests = {system: _paired_p(per_query, system, baseline, sig_metric, significance, seed, trials)
             for system in means if system != baseline}
    n_queries = len(base_rows)

    parts = ["# Retrieval evaluation", "", *(f"> **Warning:** {w}\n" for w in warnings),
             _verdict(means, per_query, sig_metric, significance, seed, trials), "",
             _means_table(means, metrics, baseline, {s: p for s, (p, _) in tests.items()}, sig_metric), "",
             "## How to read this", "",
             _how_to_read(metrics, baseline, sig_metric, significance, n_queries), ""]
    if groups:
        parts += ["## Per group", "",
                  "Means over the test queries of each group, deltas against the baseline of that group "
                  "(no p-values: groups are small).", ""]
        for group in sorted(groups, key=str):
            parts += [f"### {group}", "", _means_table(groups[group], metrics, baseline, None, sig_metric), ""]
    if notes:
        parts += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(parts)


# ---------------------------------------------------------------- files


def write_per_query_csv(path: str | Path, per_query: PerQuery) -> int:
    """CSV with columns system, qid, then every metric (first-seen order); rows sorted by system, qid."""
    metrics: list[str] = []
    for system in sorted(per_query):
        for row in per_query[system].values():
            metrics += [k for k in row if k not in metrics]
    n = 0
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["system", "qid", *metrics])
        for system in sorted(per_query):
            rows = per_query[system]
            for qid in sorted(rows):
                writer.writerow([system, qid, *(repr(float(rows[qid][k])) if k in rows[qid] else ""
                                                 for k in metrics)])
                n += 1
    return n


def safe_name(system: str) -> str:
    """A file name for a system: 'dense:base + rerank:finetuned' -> 'dense-base+rerank-finetuned'."""
    return re.sub(r"[^A-Za-z0-9._+-]", "-", re.sub(r"\s+", "", system)).strip("-") or "system"


def trec_order(docs: dict[str, float]) -> list[tuple[str, float]]:
    """Documents in trec_eval's ranking order: score descending, ties by doc id descending."""
    return sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)


def write_trec_run(path: str | Path, run: dict[str, dict[str, float]], tag: str) -> int:
    """TREC run file `qid Q0 docid rank score tag`, queries sorted by id, documents in trec_eval order.

    Ties are written doc id descending, the order trec_eval (and so our metrics) ranks them, so the rank
    column is the rank that was scored. Whitespace in `tag` is removed (the format is space-separated).
    """
    tag = re.sub(r"\s+", "", tag) or "ragtune"
    n = 0
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid in sorted(run):
            if re.search(r"\s", qid):
                raise UserError(f"{path}: cannot write a TREC run: query id {qid!r} contains whitespace")
            for rank, (docid, score) in enumerate(trec_order(run[qid]), start=1):
                if re.search(r"\s", docid):
                    raise UserError(f"{path}: cannot write a TREC run: doc id {docid!r} contains whitespace")
                f.write(f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n")
                n += 1
    return n


# ---------------------------------------------------------------- plot data
# Rows for the plots that dvc.yaml declares; the templates in .dvc/plots/ draw them.


def recall_curve_rows(means: Means, cutoffs: list[int] | None = None) -> list[dict]:
    """Rows (system, first_stage, reranker, k, recall) for recall-vs-depth, one panel per first stage.

    `cutoffs` None = every R@k present.
    """
    rows = []
    for system, m in means.items():
        first, reranker = split_system(system)
        ks = cutoffs if cutoffs is not None else sorted(int(k[2:]) for k in m if k.startswith("R@"))
        rows += [{"system": system, "first_stage": first, "reranker": reranker, "k": k, "recall": m[f"R@{k}"]}
                 for k in ks if f"R@{k}" in m]
    return rows


def ndcg_bar_rows(means: Means, metric: str = "nDCG@10") -> list[dict]:
    """Rows (system, metric, first_stage, reranker) for the headline bar plot, best first (ties by name)."""
    rows = [{"system": system, metric: m[metric], "first_stage": split_system(system)[0],
             "reranker": split_system(system)[1]} for system, m in means.items() if metric in m]
    return sorted(rows, key=lambda r: (-r[metric], r["system"]))


def untrained_counterpart(system: str, systems) -> str | None:
    """`system` with nothing fine-tuned: dense:base for a fine-tuned first stage, rerank:base (where it was
    evaluated) or no reranker for a fine-tuned one; None when that is `system` itself or was not evaluated.

    The hybrid stays the hybrid (its dense half is picked on val and may itself be fine-tuned).
    """
    first, reranker = split_system(system)
    if first in _TRAINED_FIRST:
        first = "dense:base"
    if reranker in _TRAINED_RERANKERS:
        reranker = "base" if system_name(first, "base") in systems else "none"
    ref = system_name(first, reranker)
    return ref if ref != system and ref in systems else None


def per_query_change_rows(means: Means, per_query: PerQuery, metric: str = "nDCG@10") -> list[dict]:
    """Per test query: the change in `metric` from the best fine-tuned system's untrained counterpart to it.

    Rows (rank, qid, before, after, change, direction, comparison), the biggest gain first (ties by qid);
    `comparison` names the pair with the counts and the mean change, as the plot's panel header.
    Empty when no fine-tuned system has an evaluated counterpart.
    """
    pairs = [(s, untrained_counterpart(s, means)) for s in sorted(means)]
    pairs = [(s, ref) for s, ref in pairs if ref is not None and metric in means[s]]
    if not pairs:
        return []
    system, ref = max(pairs, key=lambda pair: means[pair[0]][metric])  # first of equals: sorted by name
    after, before = per_query.get(system, {}), per_query.get(ref, {})
    qids = sorted(q for q in set(after) & set(before) if metric in after[q] and metric in before[q])
    changes = {q: round(after[q][metric] - before[q][metric], 6) for q in qids}
    direction = {q: "better" if d > 0 else "worse" if d < 0 else "unchanged" for q, d in changes.items()}
    counts = {name: sum(1 for v in direction.values() if v == name) for name in ("better", "worse", "unchanged")}
    mean = sum(changes.values()) / len(changes) if changes else 0.0
    comparison = (f"{system} vs {ref}: {counts['better']} queries better, {counts['worse']} worse, "
                  f"{counts['unchanged']} unchanged (mean {metric} change {_delta(mean)})")
    order = sorted(qids, key=lambda q: (-changes[q], q))
    return [{"rank": i, "qid": q, "before": before[q][metric], "after": after[q][metric], "change": changes[q],
             "direction": direction[q], "system": system, "reference": ref, "comparison": comparison}
            for i, q in enumerate(order, start=1)]
