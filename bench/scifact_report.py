"""Render the SciFact benchmark's results (bench/results/<date>.json) as Markdown."""
from __future__ import annotations

METRICS = ("nDCG@10", "MRR@10", "R@100")
# Published nDCG@10 on SciFact test (BEIR paper; sentence-transformers and BGE model cards), 256+ tokens.
ANCHORS = {"BM25": 0.665, "all-MiniLM-L6-v2 (256-token passages)": 0.645,
           "BM25 + ms-marco-MiniLM cross-encoder": 0.682, "bge-small-en-v1.5": 0.713}
RECIPES = {"st": "sentence-transformers recipe", "flag": "FlagEmbedding recipe"}


def _row(name: str, metrics: dict) -> str:
    return f"| {name} | " + " | ".join(f"{metrics[m]:.4f}" if m in metrics else "-" for m in METRICS) + " |"


def _usage_rows(label: str, usage: dict) -> str:
    return (f"| {label} | {usage['wall_seconds']:.0f} | {usage['cpu_seconds']:.0f} | "
            f"{usage['peak_rss_mib']:.0f} |")


def quality(results: dict) -> tuple[list[str], dict]:
    """The test table (every ragtune system, then each recipe's fine-tuned embedder) and the key figures."""
    systems = dict(results["ragtune"]["eval"]) if "ragtune" in results else {}
    rows = {f"ragtune: {name}": m for name, m in systems.items()}
    for step, label in RECIPES.items():
        if step in results:
            rows[f"{label}: fine-tuned embedder"] = results[step]["test"]
    order = sorted(rows, key=lambda n: -rows[n]["nDCG@10"])
    lines = ["| system (test, 300 queries) | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|",
             *(_row(n, rows[n]) for n in order)]
    figures = {"best": order[0] if order else None}
    if systems:
        figures["ragtune_finetuned"] = systems.get("dense:finetuned", {}).get("nDCG@10")
        figures["below_first_stage"] = [
            (s, round(m["nDCG@10"] - systems[s.split(" + ")[0]]["nDCG@10"], 4)) for s, m in systems.items()
            if " + rerank:" in s and s.split(" + ")[0] in systems
            and m["nDCG@10"] < systems[s.split(" + ")[0]]["nDCG@10"]]
    return lines, figures


def speed(results: dict) -> list[str]:
    lines = ["| step | wall s | CPU s | peak RSS MiB |", "|---|---|---|---|"]
    if "ragtune" in results:
        stages = results["ragtune"]["stages"]
        lines += [_usage_rows(f"ragtune {name}", u) for name, u in stages.items()]
        total = {k: sum(u[k] for u in stages.values()) for k in ("wall_seconds", "cpu_seconds")}
        total["peak_rss_mib"] = max(u["peak_rss_mib"] for u in stages.values())
        lines.append(_usage_rows("**ragtune, all stages**", total))
    for step, label in RECIPES.items():
        if step in results:
            r = results[step]
            parts = ", ".join(f"{k} {v:.0f} s" for k, v in r["steps"].items())
            lines.append(_usage_rows(f"**{label}** ({parts})", r["process"]))
    if "ragtune" in results:
        stages = results["ragtune"]["stages"]
        same = sum(stages[s]["wall_seconds"] for s in ("mine", "train_embedder") if s in stages)
        theirs = "; ".join(f"{label} {results[s]['steps']['mine'] + results[s]['steps']['train']:.0f} s"
                           for s, label in RECIPES.items() if s in results)
        lines += ["", f"The same work as a recipe (mine hard negatives, then fine-tune the embedder): ragtune "
                      f"{same:.0f} s (its mine stage also mines val groups and, for hybrid, runs BM25; its "
                      f"trainer scores val to pick the checkpoint)" + (f"; {theirs}." if theirs else ".")]
    return lines


def passes_over_data(epochs: int, train_stats: dict) -> int:
    """How often a trainer went through its rows: epochs x the passes per epoch that embedder.min_steps
    added for a small training set (a trainer's metrics file records them; 1 when absent)."""
    return epochs * train_stats.get("passes_per_epoch", 1)


def cost(results: dict) -> list[str]:
    """CPU-seconds per 1k training queries per pass over them, for each trainer."""
    lines = ["| trainer | training queries | passes over the data | CPU s | CPU s per 1k queries per pass |",
             "|---|---|---|---|---|"]
    if "ragtune" in results:
        rag = results["ragtune"]
        queries = rag["splits"]["train"]["queries"]
        for stage in ("train_embedder", "train_reranker"):
            epochs = passes_over_data(rag["params"]["epochs"], rag.get(stage, {}))
            cpu = rag["stages"][stage]["cpu_seconds"]
            per_1k = f"{cpu / (queries / 1000) / epochs:.0f}" if queries else "- (no real queries)"
            lines.append(f"| ragtune {stage} (whole stage, incl. val scoring) | {queries} | {epochs} | {cpu:.0f} | "
                         f"{per_1k} |")
    for step, label in RECIPES.items():
        if step in results:
            r = results[step]
            epochs, cpu = r["config"]["epochs"], r["cpu_seconds"]["train"]
            lines.append(f"| {label} training | {r['train_queries']} | {epochs} | {cpu:.0f} | "
                         f"{cpu / (r['train_queries'] / 1000) / epochs:.0f} |")
    return lines


def repeated(results: dict) -> str:
    """The sentence saying that ragtune's embedder.min_steps repeated the training rows, and the recipes
    got as many epochs (bench.scifact.run_recipe); empty when it did not."""
    rag = results.get("ragtune", {})
    passes = rag.get("train_embedder", {}).get("passes_per_epoch", 1)
    if passes <= 1:
        return ""
    epochs = rag["params"]["epochs"]
    total = passes_over_data(epochs, rag["train_embedder"])
    return (f"The training set is small: ragtune's embedder.min_steps made each epoch {passes} passes over its "
            f"rows, and each recipe got {total} epochs in place of {epochs}, so every system goes "
            f"through the data {total} times. ")


def render(doc: dict) -> str:
    results, machine, budget = doc["results"], doc["machine"], doc["config"]["budget"]
    table, figures = quality(results)
    lines = [f"# SciFact: ragtune vs the reference recipes ({doc['date']})", "",
             f"Machine: {machine['cores']} cores, {machine['ram_gib']} GiB RAM, {machine['cpu']}, no GPU; "
             f"Python {machine['python']}; commit {machine['git_commit'][:10]}; load average when the report was "
             f"written {machine['load_average_at_start']}.",
             "Packages: " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v) + ".", "",
             "Budget shared by all systems: " + ", ".join(f"{k} {v}" for k, v in budget.items()) + ". "
             + repeated(results) + "Training queries: SciFact train minus a carved-out val split (ragtune's prepare stage; the "
             "recipes read the same split). Every choice is made on val; test is only reported.", "",
             "How to read it: every row is scored on SciFact's 300 test queries by the same code "
             "(`ragtune.metrics`, pytrec_eval). `ragtune:` rows are the pipeline's systems (a first stage, "
             "optionally + a reranker whose share was picked on val); the recipe rows are what a user of that "
             "library gets from its documented recipe with the same budget. Wall times are from one run on the "
             "machine above; they grow when the load average exceeds the core count.", "",
             "## Quality on SciFact test", "", *table, "",
             "Published anchors (nDCG@10, full-length passages): "
             + ", ".join(f"{k} {v}" for k, v in ANCHORS.items()) + ".", ""]
    if figures.get("ragtune_finetuned") is not None:
        lines.append(f"- ragtune's fine-tuned embedder (dense:finetuned): {figures['ragtune_finetuned']:.4f} nDCG@10"
                     + "".join(f"; {label}: {results[s]['test']['nDCG@10']:.4f}"
                               for s, label in RECIPES.items() if s in results) + ".")
        lines.append(f"- Best system: {figures['best']}.")
        below = figures["below_first_stage"]
        lines.append("- Reranked systems below their own first stage: "
                     + (", ".join(f"{s} ({d:+.4f})" for s, d in below) if below else "none") + ".")
        for name, a in results["ragtune"].get("rerank_alpha", {}).items():
            by = a.get("val_ndcg@10_by_alpha")
            if by:
                lines.append(f"- rerank:{name}: reranker share picked on val per first stage (val nDCG@10: first "
                             "stage alone / pure reranker / at the share): " + "; ".join(
                                 f"{first} {share:g} ({_at(by[first], 0)} / {_at(by[first], 1)} / "
                                 f"{_at(by[first], share)})" for first, share in a["alpha"].items()) + ".")
        report = doc.get("ragtune_report")
        lines.append("- Every system against its counterpart, with paired randomization tests: ragtune's own "
                     + (f"report, [`{report}`]({report})." if report else "report, `metrics/report.md` of the run."))
    commits = ", ".join(f"{step} {r['commit'][:10]}" for step, r in results.items() if r.get("commit"))
    lines += ["", "## Wall time, CPU time, memory", "", *speed(results), ""]
    if commits:
        lines.append(f"Code each step ran: {commits}.")
    loads = ", ".join(f"{step} {r['load_average_at_start']}" for step, r in results.items()
                      if r.get("load_average_at_start"))
    if loads:
        lines.append(f"Load average (1, 5, 15 min) when each step started: {loads}.")
    if "ragtune" in results:
        lines.append(f"No-op `dvc repro` after the run: {results['ragtune']['noop_repro_seconds']:.1f} s.")
    if "encode" in results:
        e = results["encode"]
        lines.append(f"Corpus encoding ({e['docs']} SciFact abstracts, batch {e['batch_size']}, "
                     f"{e['max_seq_length']} tokens): ragtune {e['docs_per_second']['ragtune']} docs/s, bare "
                     f"`SentenceTransformer.encode` {e['docs_per_second']['bare']} docs/s "
                     f"(ratio {e['ragtune_vs_bare']}; embeddings differ by at most {e['max_abs_diff']:.1e}).")
    lines += ["", "## Cost", "", *cost(results), ""]
    return "\n".join(lines) + "\n"


def _at(val_by_share: dict, share: float) -> str:
    """Val nDCG@10 at one reranker share, or "n/a" where evaluate.alpha_grid did not hold it."""
    value = val_by_share.get(f"{share:g}")
    return f"{value:.4f}" if value is not None else "n/a"


# ---------------------------------------------------------------- machine-readable summary

SUMMARY_RECIPES = {"st": "sentence-transformers", "flag": "flagembedding"}
SETTINGS = ("all", "100", "0")


def summary_setting(results: dict) -> dict:
    """One setting's row of bench/results/scifact-summary.json: test nDCG@10 per system (names as in
    metrics/eval.json, `reranker-alone:<first stage>` for the pure fine-tuned reranker, `recipe:<name>`)
    and wall seconds per step (ragtune's stage names, the recipes' names)."""
    ndcg, wall = {}, {}
    rag = results.get("ragtune")
    if rag:
        ndcg.update({system: m["nDCG@10"] for system, m in rag["eval"].items()})
        alone = rag.get("rerank_alpha", {}).get("finetuned", {}).get("test_ndcg@10_reranker_alone", {})
        ndcg.update({f"reranker-alone:{first}": v for first, v in alone.items()})
        wall.update({stage: u["wall_seconds"] for stage, u in rag["stages"].items()})
    for step, name in SUMMARY_RECIPES.items():
        if step in results:
            ndcg[f"recipe:{name}"] = results[step]["test"]["nDCG@10"]
            wall[name] = results[step]["process"]["wall_seconds"]
    queries = rag["splits"]["train"]["queries"] if rag else None
    return {"train_queries": queries, "ndcg@10": ndcg, "wall_seconds": wall}


def same_work_ratio(results: dict) -> float | None:
    """ragtune's mine + train_embedder wall time over the sentence-transformers recipe's mine + train."""
    if "ragtune" not in results or "st" not in results:
        return None
    stages = results["ragtune"]["stages"]
    ours = sum(stages[s]["wall_seconds"] for s in ("mine", "train_embedder") if s in stages)
    theirs = results["st"]["steps"]["mine"] + results["st"]["steps"]["train"]
    return round(ours / theirs, 3) if theirs else None


def _keep_recipes(row: dict, old_row: dict | None, results: dict) -> None:
    """A run without the recipes (`--only ragtune`) keeps the recipe rows an earlier run of the same setting
    wrote, with the commit they came from ("recipes_commit"): the recipes' numbers do not depend on
    ragtune's code, only on the same training queries."""
    if not old_row or old_row.get("train_queries") != row["train_queries"]:
        return
    carried = [name for step, name in SUMMARY_RECIPES.items()
               if step not in results and f"recipe:{name}" in old_row["ndcg@10"]]
    for name in carried:
        row["ndcg@10"][f"recipe:{name}"] = old_row["ndcg@10"][f"recipe:{name}"]
        if name in old_row["wall_seconds"]:
            row["wall_seconds"][name] = old_row["wall_seconds"][name]
    if carried:  # the commit of the summary row they were written with
        row["recipes_commit"] = old_row.get("recipes_commit", old_row.get("commit"))


def update_summary(old: dict | None, setting: str, results: dict, commit: str) -> dict:
    """The summary with `setting` replaced by this run's; the top-level ratio and pipeline wall time come
    from the "all" setting (the full train split, the issue's bound). A setting run at another commit
    is kept, and its commit recorded, so a mixed summary says so."""
    if setting not in SETTINGS:
        raise ValueError(f"setting {setting!r}: expected one of {SETTINGS}")
    doc = {"commit": commit, "settings": {}, "same_work_ratio_vs_sentence_transformers": None,
           "pipeline_wall_seconds": None}
    if old:
        doc["settings"] = {k: v for k, v in old.get("settings", {}).items() if k in SETTINGS}
        for key in ("same_work_ratio_vs_sentence_transformers", "pipeline_wall_seconds"):
            doc[key] = old.get(key)
    row = summary_setting(results)
    row["commit"] = commit
    _keep_recipes(row, doc["settings"].get(setting), results)
    doc["settings"][setting] = row
    if setting == "all":
        doc["same_work_ratio_vs_sentence_transformers"] = same_work_ratio(results)
        stages = results.get("ragtune", {}).get("stages", {})
        doc["pipeline_wall_seconds"] = round(sum(u["wall_seconds"] for u in stages.values()), 1) if stages else None
    doc["settings"] = {k: doc["settings"][k] for k in SETTINGS if k in doc["settings"]}
    return doc
