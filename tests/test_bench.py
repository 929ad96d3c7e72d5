"""The SciFact benchmark's config and report: fast checks (the benchmark itself runs under `make bench`)."""
import json
from pathlib import Path

import yaml

from bench.scifact import CONFIG, ragtune_params
from bench.scifact_report import render
from ragtune.params import validate


def test_bench_config_gives_valid_params_with_the_shared_budget():
    config = yaml.safe_load(CONFIG.read_text())
    params = validate(ragtune_params(config, Path("/data/scifact")))
    budget = config["budget"]
    assert dict(params["ingest"]) == dict(params["ingest"], source="beir", path="/data/scifact")
    assert params["epochs"] == budget["epochs"] and params["seed"] == config["seed"]
    for key in ("max_seq_length", "batch_size", "lr", "num_negatives", "encode_batch_size"):
        assert params["embedder"][key] == budget[key], key
    assert params["embedder"]["base"] == budget["model"]


def _usage(wall):
    return {"wall_seconds": wall, "cpu_seconds": 2 * wall, "peak_rss_mib": 1000.0}


def test_report_ranks_systems_and_flags_rerankers_below_their_first_stage():
    metrics = lambda ndcg: {"nDCG@10": ndcg, "MRR@10": ndcg - 0.05, "R@100": 0.9}  # noqa: E731
    recipe = {"test": metrics(0.66), "steps": {"mine": 10.0, "train": 100.0, "evaluate": 20.0},
              "cpu_seconds": {"mine": 20.0, "train": 190.0, "evaluate": 40.0}, "train_queries": 500,
              "config": {"epochs": 1}, "process": _usage(140.0)}
    results = {
        "ragtune": {"eval": {"dense:base": metrics(0.62), "dense:finetuned": metrics(0.67),
                             "dense:finetuned + rerank:finetuned": metrics(0.65), "hybrid": metrics(0.70),
                             "hybrid + rerank:finetuned": metrics(0.71)},
                    "stages": {"mine": _usage(30.0), "train_embedder": _usage(90.0), "train_reranker": _usage(50.0)},
                    "noop_repro_seconds": 1.5, "splits": {"train": {"queries": 500}}, "params": {"epochs": 1},
                    # a user's alpha_grid without 1.0: the pure reranker's val score is not there to show
                    "rerank_alpha": {"finetuned": {"alpha": {"hybrid": 0.3, "dense:finetuned": 0.0},
                                                   "val_ndcg@10_by_alpha": {
                                                       "hybrid": {"0": 0.70, "0.3": 0.72, "0.6": 0.69},
                                                       "dense:finetuned": {"0": 0.67, "0.3": 0.66}}}}},
        "st": recipe,
    }
    doc = {"date": "2026-01-01", "config": {"budget": {"max_seq_length": 128}}, "results": results,
           "machine": {"cores": 2, "ram_gib": 24, "cpu": "cpu", "python": "3.11", "git_commit": "abc",
                       "load_average_at_start": [0, 0, 0], "packages": {"torch": "2"}}}
    text = render(doc)
    rows = [line.split(" | ")[0].lstrip("| ") for line in text.splitlines() if line.startswith("| ragtune: ")
            or line.startswith("| sentence-transformers recipe")]
    assert rows[:2] == ["ragtune: hybrid + rerank:finetuned", "ragtune: hybrid"]
    assert "below their own first stage: dense:finetuned + rerank:finetuned (-0.0200)" in text
    assert "Best system: ragtune: hybrid + rerank:finetuned" in text
    assert "hybrid 0.3 (0.7000 / n/a / 0.7200); dense:finetuned 0 (0.6700 / n/a / 0.6700)" in text
    assert "| sentence-transformers recipe training | 500 | 1 | 190 | 380 |" in text  # CPU s per 1k queries
    assert "ragtune 120 s" in text and "sentence-transformers recipe 110 s" in text  # mine + train


# bench/gpu.sh's pieces that need no model and no GPU: the pack's size budget and wheel set, the params of
# each setting, the quality check and the result files.
def test_gpu_pack_budget_counts_every_carried_part_against_64_mib(tmp_path):
    from bench.gpu_pack import LIMIT_BYTES, budget

    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "a.whl").write_bytes(b"x" * 1000)
    (tmp_path / "scifact.tgz").write_bytes(b"x" * 500)
    fits = budget(tmp_path, tree=2000)
    assert fits["parts"] == {"working tree": 2000, "carry/scifact.tgz": 500, "carry/wheels": 1000}
    assert fits["total"] == 3500 and fits["fits"] and fits["left"] == LIMIT_BYTES - 3500
    over = budget(tmp_path, tree=LIMIT_BYTES - 1000)
    assert not over["fits"] and over["left"] == -500


def test_gpu_pack_carries_what_the_image_lacks_and_nothing_it_has():
    from bench.gpu_pack import CARRIED_ANYWAY, IMAGE_PACKAGES, SKIPPED, closure, requirement_roots

    roots = requirement_roots()
    assert {"dvc", "dvclive", "bm25s", "flagembedding", "pytrec-eval-terrier", "sentence-transformers"} <= set(roots)
    assert not {"torch", "transformers", "peft", "faiss-cpu", "pytest"} & set(roots)
    pins = closure(roots)
    assert set(pins) & IMAGE_PACKAGES == set(CARRIED_ANYWAY) and not (set(pins) & set(SKIPPED))
    assert "dulwich" in pins and "scmrepo" in pins  # dvc imports them even in a --no-scm project
    assert all(version[0].isdigit() for version in pins.values())


def test_gpu_settings_give_valid_params_and_only_the_gpu_setting_changes_sizes():
    from bench.gpu_run import GPU_SIZES, gpu_params
    from bench.scifact import CONFIG, ragtune_params
    from ragtune.params import validate

    cpu_run = ragtune_params(yaml.safe_load(CONFIG.read_text()), Path("/data/scifact"))
    same = validate(gpu_params("cpu-budget", Path("/data/scifact"), "/m/minilm", "cuda", tiny=False))
    assert same["device"] == "cuda" and same["embedder"]["base"] == same["reranker"]["base"] == "/m/minilm"
    for section in ("embedder", "reranker", "mine", "prepare", "ingest"):
        drop = {"base"} if section in ("embedder", "reranker") else set()
        assert {k: v for k, v in same[section].items() if k not in drop} == {
            k: v for k, v in validate(cpu_run)[section].items() if k not in drop}, section
    gpu = validate(gpu_params("gpu-sizes", Path("/data/scifact"), "/m/minilm", "cuda", tiny=False))
    assert gpu["embedder"]["max_seq_length"] == gpu["reranker"]["max_length"] == 256
    assert gpu["embedder"]["batch_size"] == GPU_SIZES["embedder"]["batch_size"] > cpu_run["embedder"]["batch_size"]
    tiny = validate(gpu_params("cpu-budget", Path("/d"), "/m", "cpu", tiny=True))
    assert tiny["embedder"]["max_seq_length"] == 32 and tiny["device"] == "cpu"


def test_gpu_quality_check_is_strict_only_where_the_configuration_is_the_cpu_runs():
    from bench.gpu_run import compare

    cpu = {"dense:base": {"nDCG@10": 0.624}, "hybrid": {"nDCG@10": 0.700}}
    gpu = {"dense:base": {"nDCG@10": 0.646}, "hybrid": {"nDCG@10": 0.695}, "new": {"nDCG@10": 0.1}}
    same = compare(gpu, cpu, "cpu-budget")
    assert set(same["systems"]) == {"dense:base", "hybrid"} and not same["passed"]
    assert same["systems"]["dense:base"] == {"gpu": 0.646, "cpu": 0.624, "diff": 0.022, "ok": False}
    assert same["systems"]["hybrid"]["ok"]  # -0.005
    other = compare(gpu, cpu, "gpu-sizes")  # longer passages: better is fine, worse by > 0.01 is not
    assert other["passed"] and other["dense:base_vs_published"]["ok"]
    assert not compare({"hybrid": {"nDCG@10": 0.68}}, cpu, "gpu-sizes")["passed"]


def test_gpu_result_files_memory_per_stage_and_summary(tmp_path):
    import json

    from bench.gpu_report import render
    from bench.gpu_run import cuda_peaks, smi_peaks, write_result

    smi = tmp_path / "nvidia-smi.csv"
    smi.write_text("2026/11/30 20:00:00.000, 500 MiB, 0 %\n2026/11/30 20:00:01.500, 9000 MiB, 80 %\n"
                   "2026/11/30 20:00:03.000, 7000 MiB, 50 %\n2026/11/30 20:00:0")  # torn last line
    t = lambda s: __import__("datetime").datetime(2026, 11, 30, 20, 0, s).timestamp()  # noqa: E731
    assert smi_peaks(smi, {"mine": (t(0), t(1)), "train": (t(1), t(4)), "merge": (t(5), t(6))}) == {
        "mine": 500.0, "train": 9000.0, "merge": None}
    stats = tmp_path / "stats.jsonl"
    stats.write_text('{"stage": "train", "cuda_max_allocated_mib": 100.0}\n'
                     '{"stage": "train", "cuda_max_allocated_mib": 300.0}\n{"stage": "ingest"}\n')
    assert cuda_peaks(stats) == {"train": 300.0}
    usage = {"wall_seconds": 9.5, "cpu_seconds": 9.0, "peak_rss_mib": 2048.0}
    doc = {"setting": "gpu-sizes", "device": "cuda", "gpu": {"name": "NVIDIA H200", "torch": "2.11.0"},
           "params": {"embedder": {"max_seq_length": 256, "batch_size": 64, "encode_batch_size": 256},
                      "reranker": {"max_length": 256, "batch_size": 8, "group_size": 8}},
           "stages": {"train": usage}, "cuda_max_allocated_mib": {"train": 300.0}, "complete": False}
    path = write_result(tmp_path, "gpu-sizes", doc)
    assert path.name == "gpu-gpu-sizes.json" and json.loads(path.read_text()) == doc
    assert "| train | 9.5 | 9.0 | 2,048 | 300 | – |" in render([doc]) and "Cut short" in render([doc])


def test_tiny_scifact_keeps_the_judged_passages_of_the_first_queries(tmp_path):
    import json

    from bench.gpu_run import TINY_QUERIES, tiny_scifact

    src = tmp_path / "src"
    (src / "qrels").mkdir(parents=True)
    n = {split: k + 2 for split, k in TINY_QUERIES.items()}
    docs = [f"d{i}" for i in range(sum(n.values()) + 200)]
    (src / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": d}) + "\n" for d in docs))
    qrels = {split: [f"{split}{i}" for i in range(k)] for split, k in n.items()}
    (src / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": q}) + "\n"
                                               for qs in qrels.values() for q in qs))
    for split, qs in qrels.items():
        (src / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"{q}\td{199 - i}\t1\n" for i, q in enumerate(qs) if split == "train") + "".join(
            f"{q}\td{100 + i}\t1\n" for i, q in enumerate(qs) if split == "test"))
    out = tiny_scifact(src, tmp_path / "tiny")
    kept = [json.loads(line)["_id"] for line in (out / "corpus.jsonl").read_text().splitlines()]
    judged = {line.split("\t")[1] for split in n for line in
              (out / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]}
    assert judged <= set(kept) and len(judged) == sum(TINY_QUERIES.values())
    assert len((out / "queries.jsonl").read_text().splitlines()) == sum(TINY_QUERIES.values())


def test_flat_index_without_faiss_finds_what_faiss_finds(monkeypatch):
    # The GPU pack leaves faiss out (18 MB): DenseIndex's flat search must give the same runs without it.
    import sys

    import numpy as np

    from ragtune.retrieval import DenseIndex, ExactIP

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(500, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[7] = emb[3]  # a tie: broken by doc id in both
    queries = emb[[3, 10, 20]] + 0.01 * rng.normal(size=(3, 16)).astype(np.float32)
    ids = [f"d{i:03d}" for i in range(500)]
    with_faiss = DenseIndex(emb, ids).search(queries, ["a", "b", "c"], 20)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    index = DenseIndex(emb, ids)
    assert isinstance(index.index, ExactIP)
    without = index.search(queries, ["a", "b", "c"], 20)
    assert [list(r) for r in without.values()] == [list(r) for r in with_faiss.values()]
    assert all(np.allclose(list(without[q].values()), list(with_faiss[q].values()), atol=1e-6) for q in "abc")


def test_gpu_script_parses_and_returns_at_most_8_files():
    import re
    import subprocess

    from bench.gpu_run import SETTINGS

    script = Path(__file__).resolve().parents[1] / "bench" / "gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # The device tool brings back at most 8 files: gpu.log, nvidia-smi.csv, gpu-summary.md, and per setting
    # gpu-<setting>.json and gpu-<setting>-report.md.
    assert 3 + 2 * len(SETTINGS) <= 8
    assert re.search(r'SETTINGS=\$\{SETTINGS:-"gpu-sizes"\}', script.read_text())


def test_gpu_site_reports_each_process_and_runs_the_sitecustomize_it_hides(tmp_path):
    import json
    import os
    import subprocess
    import sys

    site = Path(__file__).resolve().parents[1] / "bench" / "gpu_site"
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['SHADOWED_RAN'] = '1'\n")
    stats = tmp_path / "stats.jsonl"
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{other}", RAGTUNE_GPU_STATS=str(stats),
               RAGTUNE_GPU_STAGE="mine", RAGTUNE_IMPORT_TRACE="1")
    out = subprocess.run([sys.executable, "-c", "import os, json; print(os.environ.get('SHADOWED_RAN'))"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"
    row = json.loads(stats.read_text())
    assert row["stage"] == "mine" and "json" in row["modules"] and "cuda_max_allocated_mib" not in row


def test_few_label_settings_give_valid_params():
    config = yaml.safe_load(CONFIG.read_text())
    full = validate(ragtune_params(config, Path("/data/scifact")))
    few = validate(ragtune_params(config, Path("/data/scifact"), 100))
    none = validate(ragtune_params(config, Path("/data/scifact"), 0))
    assert full["prepare"]["train_queries"] is None and full["synthetic"]["queries"] == 0
    assert few["prepare"]["train_queries"] == 100 and none["prepare"]["train_queries"] == 0
    # measured harmful to the embedder next to 100 real queries, helpful to the reranker
    assert few["synthetic"]["queries"] > 0 and few["synthetic"]["trainers"] == ["reranker"]
    assert none["synthetic"]["queries"] == config["settings"]["0"]["synthetic"]["queries"] > 0


def _run_results(ndcg_finetuned, train_queries, with_recipes=True):
    metrics = lambda ndcg: {"nDCG@10": ndcg, "MRR@10": ndcg, "R@100": 0.9}  # noqa: E731
    results = {"ragtune": {
        "eval": {"bm25": metrics(0.66), "dense:finetuned": metrics(ndcg_finetuned),
                 "hybrid + rerank:finetuned": metrics(0.71)},
        "stages": {"prepare": _usage(5.0), "mine": _usage(30.0), "train_embedder": _usage(90.0)},
        "splits": {"train": {"queries": train_queries}},
        "rerank_alpha": {"finetuned": {"alpha": {"hybrid": 0.3}, "test_ndcg@10_reranker_alone": {"hybrid": 0.69}}}}}
    if with_recipes:
        results["st"] = {"test": metrics(0.66), "steps": {"mine": 20.0, "train": 80.0}, "process": _usage(110.0)}
        results["flag"] = {"test": metrics(0.65), "steps": {"mine": 25.0, "train": 90.0}, "process": _usage(120.0)}
    return results


def test_summary_has_every_setting_named_as_specified(tmp_path):
    from bench.scifact import write_summary

    path = tmp_path / "scifact-summary.json"
    write_summary(path, "0", _run_results(0.64, 0, with_recipes=False), "c0")
    write_summary(path, "all", _run_results(0.69, 654), "c1")
    doc = write_summary(path, "100", _run_results(0.66, 100), "c1")
    assert json.loads(path.read_text()) == doc
    assert list(doc["settings"]) == ["all", "100", "0"] and doc["commit"] == "c1"
    s = doc["settings"]["all"]
    assert s["train_queries"] == 654
    assert s["ndcg@10"] == {"bm25": 0.66, "dense:finetuned": 0.69, "hybrid + rerank:finetuned": 0.71,
                            "reranker-alone:hybrid": 0.69, "recipe:sentence-transformers": 0.66,
                            "recipe:flagembedding": 0.65}
    assert s["wall_seconds"] == {"prepare": 5.0, "mine": 30.0, "train_embedder": 90.0,
                                 "sentence-transformers": 110.0, "flagembedding": 120.0}
    zero = doc["settings"]["0"]
    assert zero["train_queries"] == 0 and zero["commit"] == "c0" and "recipe:flagembedding" not in zero["ndcg@10"]
    # From the full setting, whichever setting ran last: (30 + 90) / (20 + 80); 5 + 30 + 90.
    assert doc["same_work_ratio_vs_sentence_transformers"] == 1.2 and doc["pipeline_wall_seconds"] == 125.0
    # `--only ragtune` later: the recipe rows of the earlier run stay, with the commit they came from; the
    # same-work ratio needs both in one run, so it is not carried.
    doc = write_summary(path, "all", _run_results(0.70, 654, with_recipes=False), "c2")
    s = doc["settings"]["all"]
    assert s["commit"] == "c2" and s["recipes_commit"] == "c1" and s["ndcg@10"]["dense:finetuned"] == 0.70
    assert s["ndcg@10"]["recipe:flagembedding"] == 0.65 and s["wall_seconds"]["sentence-transformers"] == 110.0
    assert doc["same_work_ratio_vs_sentence_transformers"] is None
    # another number of training queries is another experiment: nothing carried
    doc = write_summary(path, "100", _run_results(0.66, 90, with_recipes=False), "c2")
    assert "recipes_commit" not in doc["settings"]["100"] and "recipe:flagembedding" not in doc["settings"]["100"]["ndcg@10"]


def test_precision_bench_measures_speed_and_quality_on_a_beir_folder(tmp_path, tiny_model):
    import json
    import os
    import subprocess
    import sys

    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    words = "apple banana cherry grape lemon mango olive peach pear plum".split()
    docs = {f"d{i}": f"{words[i % 10]} {words[(i * 3) % 10]} {words[(i * 7) % 10]} note {i}" for i in range(40)}
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n"
                                               for d, t in docs.items()))
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": docs[f"d{i}"][:12]}) + "\n"
                                                for i in range(8)))
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{i}\t1\n" for i in range(8)))
    out = tmp_path / "precision.json"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "bench", "precision", "--data", str(data), "--model", tiny_model,
                           "--docs", "16", "--pairs", "16", "--rounds", "1", "--batch-size", "8", "--out", str(out)],
                          cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    variants = {"float32", "bfloat16", "int8"}
    assert set(result["encode_docs_per_second"]) == set(result["rerank_pairs_per_second"]) == variants
    assert set(result["encode_speedup"]) == set(result["rerank_speedup"]) == {"bfloat16", "int8"}
    quality = result["quality"]
    assert quality["test_queries"] == 8 and quality["docs"] == 40
    for variant in ("bfloat16", "int8"):
        assert 0.0 <= quality["ndcg@10"][variant] <= 1.0
        assert -1.0 <= quality["doc_cosine_to_float32"][variant]["min"] <= 1.0
        assert quality["ndcg@10_change"][variant] == round(quality["ndcg@10"][variant] - quality["ndcg@10"]["float32"], 4)
    # bfloat16 really ran: its embeddings are close to float32's, not identical.
    assert 0.99 < quality["doc_cosine_to_float32"]["bfloat16"]["min"] <= 1.0


def test_report_says_when_the_recipes_got_ragtunes_passes():
    from bench.scifact_report import repeated

    assert repeated({}) == "" and repeated({"ragtune": {"train_embedder": {"passes_per_epoch": 1}}}) == ""
    text = repeated({"ragtune": {"params": {"epochs": 2}, "train_embedder": {"passes_per_epoch": 4}}})
    assert "4 passes over its rows" in text and "8 epochs in place of 2" in text
