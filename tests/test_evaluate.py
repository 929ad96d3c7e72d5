from ragtune.evaluate import _by_group_means, _group_means, _pick_alpha, system_name


def test_per_group_means_use_each_querys_metadata():
    per_query = {"bm25": {"q1": {"nDCG@10": 1.0}, "q2": {"nDCG@10": 0.0}, "q3": {"nDCG@10": 0.5}}}
    queries = {"q1": {"metadata": {"domain": "a"}}, "q2": {"metadata": {"domain": "a"}},
               "q3": {"metadata": {"domain": "b"}}}
    groups = _group_means(per_query, queries, "domain")
    assert groups == {"bm25": {"a": {"nDCG@10": 0.5}, "b": {"nDCG@10": 0.5}}}
    assert _by_group_means(groups) == {"a": {"bm25": {"nDCG@10": 0.5}}, "b": {"bm25": {"nDCG@10": 0.5}}}
    assert _group_means(per_query, queries, None) == {}


def test_system_names():
    assert system_name("bm25", "none") == "bm25"
    assert system_name("hybrid", "merged") == "hybrid + rerank:merged"


def test_report_warnings_for_a_small_val_split_and_a_model_that_is_its_base(tiny_model, tmp_path):
    import shutil

    from ragtune.evaluate import _warnings
    from ragtune.params import defaults

    params = defaults()
    params["embedder"]["base"] = params["reranker"]["base"] = "tiny"
    shutil.copytree(tiny_model, tmp_path / "embedder")  # training saved the start model unchanged
    paths = {"dense:base": tiny_model, "dense:finetuned": str(tmp_path / "embedder"),
             "rerank:finetuned": str(tmp_path / "reranker")}
    warnings = _warnings(params, paths, n_val=2)
    assert len(warnings) == 2 and warnings[0].startswith("Only 2 val queries")
    assert warnings[1].startswith("The fine-tuned embedder IS the base model (tiny)")
    assert _warnings(params, paths, n_val=20) == warnings[1:]
    # One weight changed: a different model, no claim.
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "embedder" / "model.safetensors"))
    key = next(k for k, v in weights.items() if v.is_floating_point())
    weights[key] = weights[key] + 1e-3
    save_file(weights, str(tmp_path / "embedder" / "model.safetensors"), metadata={"format": "pt"})
    assert _warnings(params, paths, n_val=20) == []


def test_hybrid_wsum_weight_is_picked_on_val(tiny_model, tmp_path):
    from ragtune.evaluate import first_stage_runs
    from ragtune.params import defaults

    words = ["apple", "banana", "cherry", "grape", "lemon", "mango", "olive", "peach"]
    corpus = {f"d{i}": {"title": "", "text": f"{w} orchard notes {i}"} for i, w in enumerate(words)}
    split_queries = {"val": {"v": "apple orchard"}, "test": {"t": "mango orchard"}}
    params = defaults()
    params["evaluate"].update(first_stages=["bm25", "dense:base", "hybrid"], fusion="wsum",
                              fusion_grid=[1.0, 0.5], retrieve_depth=5)
    paths = {n: tiny_model for n in ("dense:base", "dense:finetuned", "dense:merged")}
    runs, val = first_stage_runs(params, corpus, split_queries, {"v": {"d0": 1}}, paths, "cpu", tmp_path)
    # BM25 alone finds d0 first, so weight 1.0 is at least as good on val; ties go to the first value.
    assert val["hybrid_bm25_weight"] == 1.0 and set(val["hybrid_val_ndcg@10_by_weight"]) == {"1", "0.5"}
    assert list(runs["test"]["hybrid"]["t"])[0] == "d5"


def _alpha_runs(val_runs, queries, alpha):
    """Reranked val runs: the reranker puts the relevant d1 first over bm25 from a share of 0.5 on, and
    pulls it below d2 over hybrid from a share of 0.3 on (hybrid already has it first)."""
    return {"bm25": {"q1": {"d1": 1.0, "d2": 2.0} if alpha["bm25"] < 0.5 else {"d1": 2.0, "d2": 1.0}},
            "hybrid": {"q1": {"d1": 2.0, "d2": 1.0} if alpha["hybrid"] < 0.3 else {"d1": 1.0, "d2": 2.0}}}


def test_rerank_share_is_picked_on_val_per_first_stage():
    cfg = {"rerank_alpha": "auto", "alpha_grid": [0.0, 0.2, 0.5, 1.0], "ndcg_cutoffs": [10]}
    val_runs = {"bm25": {}, "hybrid": {}}
    picked = _pick_alpha(cfg, val_runs, {"q1": "a query"}, {"q1": {"d1": 1}}, _alpha_runs)
    # Ties go to the larger share: bm25 is best from 0.5 on, hybrid up to 0.2.
    assert picked["alpha"] == {"bm25": 1.0, "hybrid": 0.2}
    assert picked["val_ndcg@10_by_alpha"]["hybrid"]["0"] == 1.0 > picked["val_ndcg@10_by_alpha"]["hybrid"]["0.5"]
    fixed = _pick_alpha(dict(cfg, rerank_alpha=0.4), val_runs, {"q1": "a query"}, {"q1": {"d1": 1}}, _alpha_runs)
    assert fixed == {"alpha": {"bm25": 0.4, "hybrid": 0.4}}
