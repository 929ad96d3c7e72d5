"""`dvc repro` end to end on the tiny model: every declared output, reloadable models, sane metrics."""
import json
import re

import yaml

from .conftest import run


def declared_outputs(repo):
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        for section in ("outs", "metrics"):
            for entry in stage.get(section, []):
                yield entry if isinstance(entry, str) else next(iter(entry))


def test_dvc_repro_runs_every_stage(project):
    proc = run(["dvc", "repro"], project)
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
