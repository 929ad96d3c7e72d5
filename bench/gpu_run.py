"""The SciFact pipeline on a GPU, stage by stage, measured; bench/gpu.sh calls it (see there for the setup).

    python -m bench.gpu_run expand-model --src CARRY/model --dest DIR
    python -m bench.gpu_run run --setting cpu-budget|gpu-sizes --data DIR --model DIR --work DIR --out DIR
                                [--device cuda] [--tiny] [--smi-log FILE]
    python -m bench.gpu_run summary --out DIR

Settings (both from bench/scifact.yaml's budget and ragtune section, so the same data, splits and seed):
- cpu-budget: exactly the committed CPU run's configuration (128-token passages, batch 32, 1 epoch), on the
  GPU. Its nDCG@10 is compared system by system with bench/results/2026-12-04.json (the full-train CPU
  run, bfloat16 training): within 0.01 passes.
  What still differs: CUDA kernels, the GPU's own mixed precision (train_dtype and inference_dtype auto:
  bfloat16 on an H200, as on the bfloat16 CPU), base weights rounded to fp16 by the pack, exact flat search
  with numpy instead of faiss.
- gpu-sizes: what a GPU user would pick (GPU_SIZES): full 256-token passages and queries (the model's own
  max_seq_length; SciFact abstracts run ~300 tokens, so 128 cuts most of them), reranker pairs at 256 tokens,
  twice the training batch (more in-batch negatives for MNRL) and 4x the encoding batch. Not the CPU run's
  configuration, so its numbers are compared as "not worse than the CPU run by more than 0.01", and dense:base
  against the published all-MiniLM-L6-v2 SciFact nDCG@10 (0.645, MTEB, 256 tokens).
Each stage runs as `python -m dvc repro -s <stage>` in a `dvc init --no-scm` copy of the project: wall / CPU
seconds and peak RSS (as bench/scifact.py), peak CUDA memory per process (bench/gpu_site), GPU memory in use
per stage from an nvidia-smi log, and throughput. The result file is rewritten after every stage, so a run
cut short by its time limit still reports what it finished.
"""
from __future__ import annotations

import csv
import datetime
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import yaml

from .gpu_report import verdict
from .machine import describe
from .scifact import CONFIG, ROOT, measured, ragtune_params, stage_names
from .scifact_report import passes_over_data

BASELINE = ROOT / "bench" / "results" / "2026-12-04.json"  # full train, bfloat16 training (4489b9c)
TOLERANCE = 0.01
PUBLISHED_BASE_NDCG10 = 0.645  # all-MiniLM-L6-v2 on SciFact test, MTEB leaderboard, 256 tokens
GPU_SIZES = {"embedder": {"max_seq_length": 256, "batch_size": 64, "encode_batch_size": 256},
             "reranker": {"max_length": 256, "batch_size": 8}}
SETTINGS = {"cpu-budget": {}, "gpu-sizes": GPU_SIZES}
# The CPU rehearsal: a slice of SciFact (tiny_scifact) and short texts, so the pipeline runs in minutes.
TINY = {"embedder": {"max_seq_length": 32}, "reranker": {"max_length": 32}}
TINY_QUERIES = {"train": 40, "test": 20}  # the first judged queries of each split
TINY_DISTRACTORS = 100                     # unjudged passages, the first of the corpus
PROJECT_IGNORE = shutil.ignore_patterns(".git", ".venv", ".cache", "bench", "tests", "models", "metrics",
                                        "checkpoints", "dvclive", "release", "cache", "tmp", "__pycache__")


def merged(params: dict, overrides: dict) -> dict:
    for section, values in overrides.items():
        params[section].update(values)
    return params


def tiny_scifact(src: Path, dest: Path) -> Path:
    """A BEIR folder with TINY_QUERIES of each split, their judged passages and TINY_DISTRACTORS others."""
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    qids, docs = set(), set()
    for split, n in TINY_QUERIES.items():
        lines = (src / "qrels" / f"{split}.tsv").read_text().splitlines()
        kept, rows = [], [lines[0]]
        for line in lines[1:]:
            qid, docid = line.split("\t")[:2]
            if qid not in kept and len(kept) < n:
                kept.append(qid)
            if qid in kept:
                rows.append(line)
                docs.add(docid)
        qids.update(kept)
        (dest / "qrels" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    corpus = (src / "corpus.jsonl").read_text().splitlines()
    distractors = [line for line in corpus if json.loads(line)["_id"] not in docs][:TINY_DISTRACTORS]
    (dest / "corpus.jsonl").write_text("\n".join(
        [line for line in corpus if json.loads(line)["_id"] in docs] + distractors) + "\n")
    queries = [line for line in (src / "queries.jsonl").read_text().splitlines() if json.loads(line)["_id"] in qids]
    (dest / "queries.jsonl").write_text("\n".join(queries) + "\n")
    return dest


def gpu_params(setting: str, data: Path, model: str, device: str, tiny: bool) -> dict:
    """bench/scifact.py's params for the setting, with the carried model, the device and (tiny) the slice."""
    params = merged(ragtune_params(yaml.safe_load(CONFIG.read_text()), data), SETTINGS[setting])
    params["embedder"]["base"] = params["reranker"]["base"] = model
    params["device"] = device
    return merged(params, TINY) if tiny else params


def make_project(project: Path, params: dict, env: dict) -> None:
    """A copy of the code without git (`dvc init --no-scm`): the device gets a working tree, not a clone."""
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(ROOT, project, ignore=PROJECT_IGNORE)
    shutil.rmtree(project / "data", ignore_errors=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = [sys.executable, "-m", "dvc"]
    if (project / ".dvc").is_dir():
        subprocess.run([*dvc, "config", "core.no_scm", "true"], cwd=project, env=env, check=True)
    else:
        subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=project, env=env, check=True)


def smi_peaks(smi_log: Path | None, windows: dict) -> dict:
    """{stage: peak GPU memory in use (MiB)} from `nvidia-smi --query-gpu=timestamp,memory.used,...` rows."""
    if smi_log is None or not smi_log.is_file():
        return {}
    samples = []
    for row in csv.reader(smi_log.read_text().splitlines()):
        try:
            stamp = datetime.datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
            samples.append((stamp, float(row[1].strip().split()[0])))
        except (IndexError, ValueError):
            continue  # a header or a torn last line
    return {stage: max((mib for t, mib in samples if start <= t <= end), default=None)
            for stage, (start, end) in windows.items()}


def cuda_peaks(stats_file: Path) -> dict:
    """{stage: largest per-process peak of torch's CUDA allocations (MiB)} from bench/gpu_site's lines."""
    peaks: dict = {}
    if stats_file.is_file():
        for line in stats_file.read_text().splitlines():
            row = json.loads(line)
            if "cuda_max_allocated_mib" in row:
                peaks[row["stage"]] = max(peaks.get(row["stage"], 0.0), row["cuda_max_allocated_mib"])
    return peaks


def _first(stats: dict, *keys: str):
    """The first of `keys` in a metrics file (key names differ between ragtune versions), else None."""
    return next((stats[k] for k in keys if k in stats), None)


def throughput(project: Path, stages: dict) -> dict:
    """Items per second of each stage's main work, from its metrics files and wall time."""
    read = lambda name: json.loads((project / "metrics" / name).read_text())  # noqa: E731
    out = {}
    for stage, items in (("train_embedder", ("train_rows", "train_groups")),
                         ("train_reranker", ("train_groups", "groups"))):
        if stage in stages:
            stats = read(f"{stage}.json")
            n, seconds = _first(stats, *items), _first(stats, "train_seconds", "wall_seconds")
            if n and seconds:
                passes = passes_over_data(stats["epochs"], stats)
                out[f"{stage}_{items[0].split('_')[1]}_per_second"] = round(n * passes / seconds, 1)
    if "mine" in stages:
        passages = sum(1 for _ in open(project / "data" / "raw" / "corpus.jsonl"))
        out["mine_passages_per_second"] = round(passages / stages["mine"]["wall_seconds"], 1)
    return out


def encode_speed(project: Path, doc: dict, work: Path, env: dict) -> dict:
    """Corpus passages per second at the setting's length and batch: bench/encode_speed.py on the device."""
    emb, out = doc["params"]["embedder"], work / "encode.json"
    cmd = [sys.executable, "-m", "bench.encode_speed", "--corpus", str(project / "data" / "raw" / "corpus.jsonl"),
           "--model", emb["base"], "--max-seq-length", str(emb["max_seq_length"]), "--batch-size",
           str(emb["encode_batch_size"]), "--device", doc["device"], "--rounds", "1" if doc["tiny"] else "2",
           "--docs", "100" if doc["tiny"] else "100000", "--out", str(out)]
    measured(cmd, ROOT, dict(env, PYTHONPATH=os.pathsep.join([str(ROOT), env["PYTHONPATH"]]),
                             RAGTUNE_GPU_STAGE="encode_speed"), work / "encode.log")
    return json.loads(out.read_text())


def compare(eval_now: dict, baseline: dict, setting: str) -> dict:
    """nDCG@10 per system against the CPU run; what passes depends on whether the configs are the same."""
    same_config = setting == "cpu-budget"
    rows = {}
    for system, metrics in eval_now.items():
        if system in baseline:
            diff = round(metrics["nDCG@10"] - baseline[system]["nDCG@10"], 4)
            ok = abs(diff) <= TOLERANCE if same_config else diff >= -TOLERANCE
            rows[system] = {"gpu": round(metrics["nDCG@10"], 4), "cpu": round(baseline[system]["nDCG@10"], 4),
                            "diff": diff, "ok": ok}
    out = {"rule": f"|gpu - cpu| <= {TOLERANCE}" if same_config else f"gpu - cpu >= -{TOLERANCE} (other sizes)",
           "systems": rows, "passed": bool(rows) and all(r["ok"] for r in rows.values())}
    if not same_config and "dense:base" in eval_now:
        base = eval_now["dense:base"]["nDCG@10"]
        out["dense:base_vs_published"] = {"gpu": round(base, 4), "published": PUBLISHED_BASE_NDCG10,
                                          "ok": abs(base - PUBLISHED_BASE_NDCG10) <= TOLERANCE}
    return out


def gpu_info() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    count=torch.cuda.device_count(), bf16=torch.cuda.is_bf16_supported())
    return info


def write_result(out: Path, setting: str, doc: dict) -> Path:
    path = out / f"gpu-{setting}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


@click.group()
def cli() -> None:
    pass


@cli.command("expand-model")
@click.option("--src", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--dest", type=click.Path(path_type=Path), required=True)
def expand_model(src: Path, dest: Path) -> None:
    """The packed folder with fp32 weights again (the trainers' optimizer states stay fp32, as on CPU)."""
    from safetensors.torch import load, save_file

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.gz"))
    with gzip.open(src / "model.fp16.safetensors.gz", "rb") as fh:
        tensors = load(fh.read())
    save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()},
              str(dest / "model.safetensors"))
    print(f"model: {dest} ({len(tensors)} tensors, fp32)")


@cli.command()
@click.option("--setting", type=click.Choice(list(SETTINGS)), required=True)
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="BEIR SciFact folder")
@click.option("--model", type=click.Path(exists=True, path_type=Path), required=True, help="expanded model folder")
@click.option("--work", type=click.Path(path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="result files ($OUT)")
@click.option("--device", default="cuda", show_default=True)
@click.option("--tiny", is_flag=True, help="a slice of SciFact and 32-token texts: the CPU rehearsal")
@click.option("--smi-log", type=click.Path(path_type=Path), default=None, help="nvidia-smi's csv log")
@click.option("--keep", is_flag=True, help="reuse the project in --work: finished stages are skipped by dvc")
def run(setting, data, model, work, out, device, tiny, smi_log, keep) -> None:
    """Every stage of the pipeline with `dvc repro -s`, measured; writes OUT/gpu-<setting>.json."""
    work, out = work.resolve() / setting, out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if tiny:
        data = tiny_scifact(data, work / "scifact-tiny")
    params = gpu_params(setting, data.resolve(), str(model.resolve()), device, tiny)
    stats_file = work / "gpu_stats.jsonl"
    project = work / "ragtune"
    env = dict(os.environ, RAGTUNE_GPU_STATS=str(stats_file), TOKENIZERS_PARALLELISM="false",
               DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(project), *filter(None, os.environ.get("PYTHONPATH", "").split(
                   os.pathsep)), str(ROOT / "bench" / "gpu_site")]))
    if not (keep and project.is_dir()):
        make_project(project, params, env)
    baseline = json.loads(BASELINE.read_text())["results"]["ragtune"]
    doc = {"setting": setting, "tiny": tiny, "device": device, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "machine": describe(ROOT), "gpu": gpu_info(), "params": params, "baseline": BASELINE.name,
           "stages": {}, "complete": False}
    windows = {}
    for name in stage_names(project):
        start = time.time()
        usage = measured([sys.executable, "-m", "dvc", "repro", "-s", name], project,
                         dict(env, RAGTUNE_GPU_STAGE=name), work / "ragtune.log")
        windows[name] = (start, time.time())
        doc["stages"][name] = usage
        print(f"{setting} {name}: {usage}", flush=True)
        write_result(out, setting, doc)
    finish(doc, project, baseline, stats_file, smi_log, windows, out, env)


def finish(doc, project, baseline, stats_file, smi_log, windows, out, env) -> None:
    """Quality and memory first (written at once), then the encoding throughput, which may run out of time."""
    doc["pipeline_wall_seconds"] = round(sum(s["wall_seconds"] for s in doc["stages"].values()), 1)
    doc["throughput"] = throughput(project, doc["stages"])
    doc["eval"] = json.loads((project / "metrics" / "eval.json").read_text())
    for name in ("train_embedder", "train_reranker", "mining", "splits"):
        doc[name] = json.loads((project / "metrics" / f"{name}.json").read_text())
    doc["quality"] = compare(doc["eval"], baseline["eval"], doc["setting"])
    if doc["tiny"]:  # a slice of SciFact scores nothing like the full run: shown, never judged
        doc["quality"].update(passed=None, rule="none: a tiny slice is not comparable with the CPU run")
    doc["complete"] = True
    shutil.copyfile(project / "metrics" / "report.md", out / f"gpu-{doc['setting']}-report.md")
    write_result(out, doc["setting"], doc)  # quality first: the steps below may run out of time
    doc["noop_repro_seconds"] = measured([sys.executable, "-m", "dvc", "repro"], project, env,
                                         stats_file.parent / "ragtune.log")["wall_seconds"]
    for step in ("memory", "encode_speed"):
        if step == "encode_speed":
            start = time.time()
            doc["encode"] = encode_speed(project, doc, stats_file.parent, env)
            windows["encode_speed"] = (start, time.time())
        doc["cuda_max_allocated_mib"] = cuda_peaks(stats_file)
        doc["gpu_memory_used_mib"] = smi_peaks(smi_log, windows)
        write_result(out, doc["setting"], doc)
    print(json.dumps({k: doc[k] for k in ("pipeline_wall_seconds", "cuda_max_allocated_mib", "throughput")}))
    print(f"quality ({doc['quality']['rule']}): {verdict(doc['quality']['passed'])}")


@cli.command()
@click.option("--out", type=click.Path(exists=True, path_type=Path), required=True)
def summary(out: Path) -> None:
    """OUT/gpu-summary.md: one table per setting (stage seconds, GPU memory) and the quality checks."""
    from .gpu_report import render

    docs = [json.loads(p.read_text()) for p in sorted(out.glob("gpu-*.json"))]
    text = render(docs)
    (out / "gpu-summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    cli()
