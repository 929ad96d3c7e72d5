"""`dvc repro` end to end on the tiny model: every declared output, reloadable models, sane metrics,
the plots page."""
import csv
import json
import re
import shutil

import yaml

from ragtune.report import untrained_counterpart

from .conftest import ROOT, copy_project, run


def declared_outputs(repo):
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        for section in ("outs", "metrics"):
            for entry in stage.get(section, []):
                yield entry if isinstance(entry, str) else next(iter(entry))


def test_dvc_repro_runs_every_stage(reproduced, tmp_path):
    project, proc = reproduced.repo, reproduced.proc
    for out in declared_outputs(project):
        assert (project / out).exists(), f"declared output {out} missing"

    results = json.loads((project / "metrics" / "eval.json").read_text())
    expected = {"bm25", "dense:base", "dense:finetuned", "dense:merged", "hybrid",
                "dense:finetuned + rerank:finetuned", "bm25 + rerank:merged"}
    assert expected <= set(results), sorted(results)
    assert "dense:base + rerank:base" not in results  # the tiny base has no trained ranking head
    for system, metrics in results.items():
        for name, value in metrics.items():
            assert 0.0 <= value <= 1.0, (system, name, value)
    assert re.search(r"^\| system +\| nDCG@10 ", proc.stdout, re.M)  # the results table is printed

    groups = [json.loads(line) for line in (project / "data/negatives/train.jsonl").read_text().splitlines()]
    assert groups and all(set(g) >= {"query", "pos", "neg"} and g["neg"] for g in groups)
    assert "nDCG@10" in (project / "metrics" / "report.md").read_text()

    import torch
    from FlagEmbedding import FlagReranker
    from sentence_transformers import CrossEncoder, SentenceTransformer

    for name in ("embedder", "embedder-merged"):
        assert SentenceTransformer(str(project / "models" / name), device="cpu").encode(["q"]).shape[1] == 32
    for name in ("reranker", "reranker-merged"):
        path = str(project / "models" / name)
        a = CrossEncoder(path, device="cpu").predict([("a query", "a passage")],
                                                      activation_fn=torch.nn.Identity())
        b = FlagReranker(path, use_fp16=False, devices="cpu").compute_score([["a query", "a passage"]])
        assert abs(float(a[0]) - float(b[0])) < 1e-4

    # Unchanged workspace: nothing reruns.
    again = run(["dvc", "repro"], project)
    assert "Running stage" not in again.stdout, again.stdout

    check_plots(copy_project(project, tmp_path / "repo"), results)  # `make plots` writes into the repo


def tsv_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def check_plots(repo, results):
    """The rows behind each plot, and `make plots`: a page that loads vega from its own folder only."""
    plots = repo / "metrics" / "plots"
    bars = json.loads((plots / "ndcg.json").read_text())
    assert [r["system"] for r in bars] == sorted(results, key=lambda s: (-results[s]["nDCG@10"], s))
    assert all(r["system"].startswith(r["first_stage"]) for r in bars)
    recall = json.loads((plots / "recall.json").read_text())
    assert {(r["first_stage"], r["reranker"]) for r in recall} == {(r["first_stage"], r["reranker"]) for r in bars}
    change = json.loads((plots / "per_query_change.json").read_text())
    assert change and [r["change"] for r in change] == sorted((r["change"] for r in change), reverse=True)
    system, ref = change[0]["system"], change[0]["reference"]
    assert re.search("finetuned|merged", system) and not re.search("finetuned|merged", ref)
    assert system == max(sorted(s for s in results if untrained_counterpart(s, results)),
                         key=lambda s: results[s]["nDCG@10"])
    assert ref == untrained_counterpart(system, results)
    with open(repo / "metrics" / "per_query.csv", encoding="utf-8", newline="") as f:
        assert sorted(r["qid"] for r in change) == sorted(r["qid"] for r in csv.DictReader(f) if r["system"] == system)

    # Training curves at the steps of metrics/train_*.json, each starting before training (step 0).
    live = {m: repo / "metrics" / f"train_{m}" / "plots" / "metrics" for m in ("embedder", "reranker")}
    emb = json.loads((repo / "metrics" / "train_embedder.json").read_text())
    curve = tsv_rows(live["embedder"] / "eval" / "val_ndcg@10.tsv")
    assert [int(r["step"]) for r in curve] == [0, *map(int, emb["val_ndcg@10_by_step"])]
    assert emb["best_step"] in [int(r["step"]) for r in curve]
    rr = json.loads((repo / "metrics" / "train_reranker.json").read_text())
    curve = tsv_rows(live["reranker"] / "val" / "ndcg@10.tsv")
    assert [(int(r["step"]), float(r["ndcg@10"])) for r in curve] == [
        (0, rr["val_ndcg@10_before"]), *((int(k), v) for k, v in rr["val_ndcg@10_by_step"].items())]
    assert curve[0]["step"] == "0" and rr["best_step"] > 0
    for model, stats in (("embedder", emb), ("reranker", rr)):
        assert int(tsv_rows(live[model] / "learning_rate.tsv")[-1]["step"]) == stats["steps"]

    # `make plots` without the registry: the libraries as if fetched before (their content is not checked).
    vega = repo / ".cache" / "vega"
    vega.mkdir(parents=True)
    libs = ["vega.min.js", "vega-lite.min.js", "vega-embed.min.js"]
    for name in libs:
        (vega / name).write_text(f"/* {name} */\n")
    (vega / ".fetched").touch()
    shutil.copy2(ROOT / "Makefile", repo / "Makefile")
    proc = run(["make", "-o", "setup", "plots"], repo)
    assert "works offline" in proc.stdout
    page = (repo / "dvc_plots" / "index.html").read_text()
    assert re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?([^\"' >]+)", page) == libs  # no CDN
    assert all((repo / "dvc_plots" / name).read_text() == (vega / name).read_text() for name in libs)
    titles = [next(iter(p)) for p in yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]]
    assert page.count("vegaEmbed('#") == len(titles) == 6 and "<DVC_METRIC_" not in page
