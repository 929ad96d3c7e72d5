"""ragtune.report: tables, verdicts derived from the numbers, and the files it writes."""
import csv

import pytest
import pytrec_eval

from ragtune.errors import UserError
from ragtune.metrics import evaluate_run
from ragtune.report import (console_table, markdown_report, ndcg_bar_rows, per_query_change_rows,
                            recall_curve_rows, safe_name, split_system, system_name,
                            untrained_counterpart, write_per_query_csv, write_trec_run)

SHOWN = ["nDCG@10", "R@100"]
QIDS = [f"q{i:02d}" for i in range(20)]


def systems(shift: dict[str, list[float]]):
    """Per-query rows: the baseline scores 0.2 + i/50 on query i; other systems add a per-query shift."""
    base = {q: {"nDCG@10": 0.2 + i / 50, "R@100": 0.5} for i, q in enumerate(QIDS)}
    per_query = {"dense:base": base}
    for name, deltas in shift.items():
        per_query[name] = {q: {"nDCG@10": base[q]["nDCG@10"] + d, "R@100": 0.5 + d / 2}
                           for q, d in zip(QIDS, deltas)}
    means = {s: {k: sum(r[k] for r in rows.values()) / len(rows) for k in SHOWN} for s, rows in per_query.items()}
    return means, per_query


def row_of(report: str, system: str) -> str:
    return next(line for line in report.splitlines() if line.startswith(f"| {system} "))


def test_table_bold_deltas_and_pvalues():
    means, pq = systems({"bm25": [-0.05] * 20, "dense:finetuned": [0.1] * 20})
    text = markdown_report(means, pq, metrics_shown=SHOWN, seed=0)
    # baseline nDCG@10 mean = 0.2 + mean(i)/50 = 0.2 + 9.5/50 = 0.39; fine-tuned 0.49; bm25 0.34
    ft = row_of(text, "dense:finetuned")
    assert "**0.490** (+0.100)" in ft and "**0.550** (+0.050)" in ft  # R@100: 0.5 + 0.1/2
    assert "<0.001 *" in ft  # all 20 queries better: p = 1/10001 (no sign pattern reaches the sum)
    assert "0.340 (-0.050)" in row_of(text, "bm25")
    base = row_of(text, "dense:base (baseline)")
    assert "0.390 " in base and "(+" not in base and "—" in base
    assert "**" not in base
    assert "## How to read this" in text and "randomization test" in text


def test_verdict_helped():
    means, pq = systems({"dense:finetuned": [0.1] * 20})
    text = markdown_report(means, pq, metrics_shown=SHOWN, seed=0)
    assert ("- dense:finetuned vs dense:base: **helped** (+0.100 nDCG@10, p<0.001, randomization test "
            "on 20 queries)") in text
    assert "**Best system on nDCG@10: dense:finetuned (0.490).**" in text


def test_verdict_not_significant_and_hurt():
    # +0.1 on 11 queries, -0.1 on 9: mean +0.01; a sign-flip test finds this common by chance.
    means, pq = systems({"dense:finetuned": [0.1] * 11 + [-0.1] * 9, "bm25": [0.3] * 20})
    text = markdown_report(means, pq, metrics_shown=SHOWN, seed=0)
    assert "- dense:finetuned vs dense:base: made no clear difference (+0.010 nDCG@10, p=" in text
    assert "**Best system on nDCG@10: bm25 (0.690).**" in text
    means, pq = systems({"dense:finetuned": [-0.1] * 20, "dense:merged": [-0.2] * 20})
    text = markdown_report(means, pq, metrics_shown=SHOWN, seed=0, significance="ttest")
    assert "- dense:finetuned vs dense:base: **hurt** (-0.100 nDCG@10, p<0.001, t-test on 20 queries)" in text
    assert "- dense:merged vs dense:base: **hurt**" in text


def test_reranker_is_judged_against_its_own_first_stage():
    # A reranker that lifts dense:base but ruins bm25 must not be credited for beating the baseline row.
    means, pq = systems({"bm25": [0.4] * 20, "bm25 + rerank:finetuned": [0.2] * 20,
                         "dense:base + rerank:finetuned": [0.0] * 20})
    text = markdown_report(means, pq, metrics_shown=SHOWN, seed=0)
    assert "- bm25 + rerank:finetuned vs bm25: **hurt** (-0.200 nDCG@10" in text
    assert "- dense:base + rerank:finetuned vs dense:base: made no clear difference (+0.000 nDCG@10" in text


def test_baseline_fallback_groups_notes_and_determinism():
    means, pq = systems({"dense:finetuned": [0.05, -0.01] * 10})
    means = {"bm25": means["dense:base"], "dense:finetuned": means["dense:finetuned"]}
    pq = {"bm25": pq["dense:base"], "dense:finetuned": pq["dense:finetuned"]}
    kwargs = dict(metrics_shown=SHOWN, seed=3, notes=["Evaluated on the test split."],
                  groups={"howto": means, "api": {"bm25": means["bm25"]}})
    text = markdown_report(means, pq, **kwargs)
    assert text == markdown_report(means, pq, **kwargs)  # seeded: identical output
    assert "Baseline 'dense:base' was not evaluated; deltas and p-values are against 'bm25'." in text
    assert "| bm25 (baseline) " in text
    assert text.index("### api") < text.index("### howto")
    assert "- Evaluated on the test split." in text


def test_single_system_and_missing_sig_metric():
    means = {"bm25": {"R@100": 0.5}}
    text = markdown_report(means, {"bm25": {"q": {"R@100": 0.5}}}, metrics_shown=SHOWN, seed=0)
    assert "nothing to compare" in text and "| nDCG@10" not in text  # column dropped, test falls back to R@100


def test_console_table_aligned():
    means, _ = systems({"dense:finetuned": [0.1] * 20})
    table = console_table(means)
    lines = table.splitlines()
    assert lines[0].split("|")[1].strip() == "system"
    assert len({len(line) for line in lines}) == 1  # every line padded to the same width
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == ["dense:base", "0.390", "-", "-", "0.500"]
    assert [c.strip() for c in lines[3].split("|")[1:-1]] == ["dense:finetuned", "0.490", "-", "-", "0.550"]


def test_pvalue_format():
    from ragtune.report import _pval

    assert [_pval(p) for p in (0.0004, 0.0499, 0.05, 0.21, None)] == [
        "<0.001 *", "0.0499 *", "0.0500", "0.210", "n/a"]


def test_per_query_csv(tmp_path):
    pq = {"b": {"q2": {"nDCG@10": 0.5, "R@100": 1.0}, "q1": {"nDCG@10": 0.25, "R@100": 0.0}},
          "a": {"q1": {"nDCG@10": 1 / 3, "R@100": 1.0}}}
    path = tmp_path / "per_query.csv"
    assert write_per_query_csv(path, pq) == 3
    first = path.read_bytes()
    write_per_query_csv(path, pq)
    assert path.read_bytes() == first
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["system", "qid", "nDCG@10", "R@100"]
    assert [r[:2] for r in rows[1:]] == [["a", "q1"], ["b", "q1"], ["b", "q2"]]
    assert float(rows[1][2]) == 1 / 3  # full precision survives
    assert [p.name for p in tmp_path.iterdir()] == ["per_query.csv"]  # no temp file left


def test_trec_run_round_trip_and_tie_order(tmp_path):
    run = {"q2": {"d1": 0.5}, "q1": {"a": 1.0, "c": 1.0, "b": 2.0, "10": 1.0, "9": 1.0}}
    path = tmp_path / "runs" / "x.trec"
    assert write_trec_run(path, run, tag="dense:base + rerank:finetuned") == 6
    lines = path.read_text().splitlines()
    # b (2.0) first, then the 1.0 ties doc id descending as trec_eval ranks them: c, a, 9, 10
    assert [line.split()[2] for line in lines[:5]] == ["b", "c", "a", "9", "10"]
    assert lines[0] == "q1 Q0 b 1 2.0 dense:base+rerank:finetuned"
    assert lines[5].startswith("q2 Q0 d1 1 0.5 ")
    with open(path) as f:  # trec_eval's own reader parses what we write
        assert pytrec_eval.parse_run(f) == run
    # The rank written is the rank scored: '10' is 5th in the file and 5th for trec_eval.
    means, _ = evaluate_run(run, {"q1": {"10": 1}}, {"mrr_cutoffs": [10]})
    assert means["MRR@10"] == pytest.approx(1 / 5)


def test_trec_errors(tmp_path):
    with pytest.raises(UserError, match="contains whitespace"):
        write_trec_run(tmp_path / "bad.trec", {"q": {"a b": 1.0}}, "t")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_plot_rows_and_safe_name():
    means = {"bm25": {"R@1": 0.1, "R@10": 0.4, "R@100": 0.8, "nDCG@10": 0.3},
             "dense:base": {"R@10": 0.5, "nDCG@10": 0.35}}
    assert recall_curve_rows(means, [1, 10]) == [
        {"system": "bm25", "first_stage": "bm25", "reranker": "none", "k": 1, "recall": 0.1},
        {"system": "bm25", "first_stage": "bm25", "reranker": "none", "k": 10, "recall": 0.4},
        {"system": "dense:base", "first_stage": "dense:base", "reranker": "none", "k": 10, "recall": 0.5}]
    assert [r["k"] for r in recall_curve_rows(means) if r["system"] == "bm25"] == [1, 10, 100]
    means["hybrid + rerank:merged"] = {"nDCG@10": 0.35}
    # Best first, ties by name; each bar knows its first stage and reranker (the template colours by them).
    assert ndcg_bar_rows(means) == [
        {"system": "dense:base", "nDCG@10": 0.35, "first_stage": "dense:base", "reranker": "none"},
        {"system": "hybrid + rerank:merged", "nDCG@10": 0.35, "first_stage": "hybrid", "reranker": "merged"},
        {"system": "bm25", "nDCG@10": 0.3, "first_stage": "bm25", "reranker": "none"}]
    assert safe_name("dense:base + rerank:finetuned") == "dense-base+rerank-finetuned"


def test_warnings_come_first_in_plain_words():
    from ragtune.report import MIN_VAL_QUERIES, few_val_queries, same_as_base

    assert few_val_queries(MIN_VAL_QUERIES) is None
    small = few_val_queries(2)
    assert small.startswith("Only 2 val queries") and "prepare.val_fraction" in small and "more data" in small
    means, pq = systems({"dense:finetuned": [0.0] * 20})
    text = markdown_report(means, pq, metrics_shown=SHOWN, seed=0,
                           warnings=[small, same_as_base("embedder", "my/base")])
    lines = text.splitlines()
    assert lines[2].startswith("> **Warning:** Only 2 val queries")
    assert "The fine-tuned embedder IS the base model (my/base)" in lines[4]
    assert text.index("Warning") < text.index("Did fine-tuning help?")


def test_headline_is_a_few_numbers():
    from ragtune.report import headline

    means = {"bm25": {"nDCG@10": 0.61234, "R@10": 0.9}, "dense:base": {"nDCG@10": 0.4},
             "dense:finetuned": {"nDCG@10": 0.5}, "bm25 + rerank:finetuned": {"nDCG@10": 0.55},
             "dense:finetuned + rerank:finetuned": {"nDCG@10": 0.58}, "bm25 + rerank:merged": {"nDCG@10": 0.7}}
    assert headline(means) == {"nDCG@10": {"best": 0.7, "dense:base": 0.4, "dense:finetuned": 0.5,
                                           "rerank:finetuned": 0.58}}
    assert headline({"bm25": {"nDCG@10": 0.3}}) == {"nDCG@10": {"best": 0.3}}
