"""`dvc repro` with few labels on the tiny model: synthetic queries, teacher scores, distilling students."""
import json

import yaml

from .conftest import run


def test_few_labels_pipeline_trains_on_synthetic_queries_with_teacher_scores(project):
    p = yaml.safe_load((project / "params.yaml").read_text())
    p["prepare"]["train_queries"] = 5
    p["synthetic"].update(queries=40, top_k=10, trainers=["reranker"])  # the embedder: real queries only
    p["embedder"].update(loss="margin_mse")
    p["reranker"].update(distill_weight=1.0)
    p["evaluate"].update(fusion="wsum", fusion_grid=[0.0, 0.5, 1.0])
    (project / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(["dvc", "repro"], project)

    splits = json.loads((project / "metrics" / "splits.json").read_text())
    mining = json.loads((project / "metrics" / "mining.json").read_text())
    assert splits["train"]["queries"] == 5 and mining["groups_real"] == 5
    gen = mining["synthetic_generation"]
    assert gen["kept"] == 40 and mining["groups_synthetic"] == 40 - mining["synthetic_inconsistent"] > 0
    # No synthetic query is a near-duplicate of a val or test query.
    from ragtune.io import read_qrels, read_queries
    from ragtune.synthetic import HeldOut

    queries = read_queries(project / "data" / "prepared" / "queries.jsonl")
    held = HeldOut(queries[q]["text"] for s in ("val", "test")
                   for q in read_qrels(project / "data" / "prepared" / "qrels" / f"{s}.tsv")[0])
    real = {queries[q]["text"] for q in read_qrels(project / "data" / "prepared" / "qrels" / "train.tsv")[0]}
    groups = [json.loads(line) for line in (project / "data/negatives/train.jsonl").read_text().splitlines()]
    assert len(groups) == mining["groups"]
    assert not any(held.near_duplicate(g["query"]) for g in groups if g["query"] not in real)
    assert all(len(g["pos_scores"]) == len(g["pos"]) and len(g["neg_scores"]) == len(g["neg"]) for g in groups)

    emb = json.loads((project / "metrics" / "train_embedder.json").read_text())
    rer = json.loads((project / "metrics" / "train_reranker.json").read_text())
    assert emb["loss"] == "margin_mse" and rer["distill_weight"] == 1.0
    assert sum(g.get("synthetic", False) for g in groups) == mining["groups_synthetic"]
    assert emb["train_groups"] == mining["groups_real"] and rer["train_groups"] == mining["groups"]
    alpha = json.loads((project / "metrics" / "rerank_alpha.json").read_text())
    assert set(alpha["finetuned"]["test_ndcg@10_reranker_alone"]) >= {"bm25", "hybrid"}
    assert "weighted sum, BM25 weight" in (project / "metrics" / "report.md").read_text()
