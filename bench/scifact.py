"""ragtune side by side with the sentence-transformers and FlagEmbedding recipes on SciFact.

    python -m bench scifact [--data ../shared/data/scifact] [--work bench/work/scifact] [--fresh]
                            [--only ragtune,st,flag,encode] [--train-queries all|100|0]

--train-queries N keeps a seeded subsample of N training queries (ragtune's prepare.train_queries; val
and test unchanged) and applies that setting's section of bench/scifact.yaml (`settings:`, e.g.
synthetic queries at 0); 0 = the corpus only. The recipes train on the same subsample (they read ragtune's
split); with 0 they have nothing to train on and are skipped. Each setting works in <work>/train-<N>.
Besides the dated report, bench/results/scifact-summary.json gets this setting's row (see
bench.scifact_report.update_summary); `make bench` runs all three settings.

Steps (each resumable: a finished step's result is kept in the work folder and reused unless --fresh):
1. ragtune   clone HEAD, write params.yaml from bench/scifact.yaml (+ the data path), run every stage
             with `dvc repro -s <stage>` (wall time, CPU time, peak RSS per stage), then a no-op `dvc repro`.
2. st        bench/recipes/st_recipe.py: `mine_hard_negatives` + MNRL, on ragtune's train split.
3. flag      bench/recipes/flag_recipe.py: FlagEmbedding's mining and encoder-only fine-tuning.
4. encode    ragtune's corpus encoding vs a bare `SentenceTransformer.encode` on the same texts.
All systems share the budget in bench/scifact.yaml (base model, passage length, epochs, batch size, lr,
negatives); where ragtune's embedder.min_steps repeats a small training set within each epoch, the recipes
get that many epochs, so every system goes through the data equally often. Val (carved out of SciFact train) is the only split any choice is made on; test is reported.
Writes bench/results/<date>.json and .md.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import yaml

from .machine import describe, git_commit
from .scifact_report import SETTINGS, passes_over_data, update_summary

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "bench" / "scifact.yaml"
STEPS = ("ragtune", "st", "flag", "encode")
METRICS = ("nDCG@10", "MRR@10", "R@100")
SUMMARY = ROOT / "bench" / "results" / "scifact-summary.json"


def measured(cmd: list[str], cwd: Path, env: dict, log_path: Path) -> dict:
    """Run `cmd`; wall seconds, CPU seconds (user + sys, all descendants) and peak RSS of the largest process."""
    start = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        # wait4's rusage covers the child and every descendant it waited for: the whole step.
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log_path.read_text()[-4000:]
        sys.exit(f"error: {' '.join(cmd)} failed with exit code {code}; log: {log_path}\n{tail}")
    return {"wall_seconds": round(wall, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def ragtune_params(config: dict, data: Path, train_queries: int | None = None) -> dict:
    """params.yaml for the run: the budget, bench/scifact.yaml's `ragtune:` section, and with
    `train_queries` (a subsample) that setting's section of `settings:` on top."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    budget = config["budget"]
    params.update(seed=config["seed"], epochs=budget["epochs"])
    params["embedder"].update(base=budget["model"], **{k: budget[k] for k in (
        "max_seq_length", "batch_size", "lr", "num_negatives", "encode_batch_size")})
    for section, values in config["ragtune"].items():
        if isinstance(values, dict):
            params.setdefault(section, {}).update(values)
        else:
            params[section] = values
    if train_queries is not None:
        for section, values in (config.get("settings", {}).get(str(train_queries)) or {}).items():
            params.setdefault(section, {}).update(values)
        params.setdefault("prepare", {})["train_queries"] = train_queries
    params["ingest"]["path"] = str(data)
    return params


def stage_names(project: Path) -> list[str]:
    return list(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])


def run_ragtune(work: Path, data: Path, config: dict, env: dict, train_queries: int | None = None) -> dict:
    project = work / "ragtune"
    if project.exists():
        shutil.rmtree(project)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
    params = ragtune_params(config, data, train_queries)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(env, PYTHONPATH=str(project), HF_HOME=str(project / ".cache" / "huggingface"))
    log_path = work / "ragtune.log"
    stages = {}
    for name in stage_names(project):
        stages[name] = measured(["dvc", "repro", "-s", name], project, env, log_path)
        print(f"ragtune {name}: {stages[name]}", flush=True)
    noop = measured(["dvc", "repro"], project, env, log_path)
    eval_json = json.loads((project / "metrics" / "eval.json").read_text())
    splits = json.loads((project / "metrics" / "splits.json").read_text())
    return {"stages": stages, "noop_repro_seconds": noop["wall_seconds"], "eval": eval_json,
            "splits": splits, "params": params,
            "mining": json.loads((project / "metrics" / "mining.json").read_text()),
            "train_embedder": json.loads((project / "metrics" / "train_embedder.json").read_text()),
            "train_reranker": json.loads((project / "metrics" / "train_reranker.json").read_text()),
            "rerank_alpha": json.loads((project / "metrics" / "rerank_alpha.json").read_text())}


def run_recipe(name: str, work: Path, config: dict, env: dict) -> dict:
    # Same work: a recipe goes through the data as often as ragtune's embedder did (embedder.min_steps
    # repeats a small training set within each epoch; the recipes have no such rule of their own).
    stats = json.loads((work / "ragtune" / "metrics" / "train_embedder.json").read_text())
    budget = dict(config["budget"], epochs=passes_over_data(config["budget"]["epochs"], stats))
    out = work / name
    args = [sys.executable, "-m", f"bench.recipes.{name}_recipe", "--project", str(work / "ragtune"),
            "--out", str(out), "--model", model_path(budget["model"]), "--seed", str(config["seed"]),
            *(f"--{key.replace('_', '-')}={value}" for key, value in budget.items() if key != "model")]
    usage = measured(args, ROOT, dict(env, PYTHONPATH=str(ROOT)), work / f"{name}.log")
    result = json.loads((out / "result.json").read_text())
    result["process"] = usage
    return result


def run_encode(work: Path, config: dict, env: dict) -> dict:
    out = work / "encode.json"
    args = [sys.executable, "-m", "bench.encode_speed", "--corpus", str(work / "ragtune" / "data" / "raw" /
            "corpus.jsonl"), "--model", model_path(config["budget"]["model"]),
            "--max-seq-length", str(config["budget"]["max_seq_length"]),
            "--batch-size", str(config["budget"]["encode_batch_size"]), "--out", str(out)]
    measured(args, ROOT, dict(env, PYTHONPATH=str(ROOT)), work / "encode.log")
    return json.loads(out.read_text())


def model_path(name: str) -> str:
    sys.path.insert(0, str(ROOT))
    from ragtune.models import resolve_model

    return resolve_model(name)


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=ROOT.parent / "shared" / "data" / "scifact",
              show_default=True, help="BEIR SciFact folder")
@click.option("--work", type=click.Path(path_type=Path), default=ROOT / "bench" / "work" / "scifact",
              show_default=True, help="where the runs happen (not in git)")
@click.option("--only", default=",".join(STEPS), show_default=True, help="comma-separated steps to run")
@click.option("--fresh", is_flag=True, help="rerun steps whose results are already in --work")
@click.option("--train-queries", "setting", type=click.Choice(SETTINGS), default="all", show_default=True,
              help="training queries: all of SciFact train, a seeded subsample of 100, or 0 (corpus only)")
def main(data: Path, work: Path, only: str, fresh: bool, setting: str) -> None:
    if not (data / "corpus.jsonl").is_file():
        sys.exit(f"error: {data}: no corpus.jsonl; pass --data with the BEIR SciFact folder")
    config = yaml.safe_load(CONFIG.read_text())
    wanted = [s.strip() for s in only.split(",") if s.strip()]
    unknown = set(wanted) - set(STEPS)
    if unknown:
        sys.exit(f"error: --only: unknown step(s) {', '.join(sorted(unknown))}; choose from {', '.join(STEPS)}")
    train_queries = None if setting == "all" else int(setting)
    if train_queries == 0:  # the recipes need labelled training queries
        wanted = [s for s in wanted if s not in ("st", "flag")]
    work = work / f"train-{setting}"
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HF_HOME=str(ROOT / ".cache" / "huggingface"), TOKENIZERS_PARALLELISM="false")
    machine = describe(ROOT)
    results = {}
    for step in STEPS:
        saved = work / f"{step}.result.json"
        if step in wanted and (fresh or not saved.is_file()):
            if step != "ragtune" and not (work / "ragtune" / "data" / "prepared").is_dir():
                sys.exit(f"error: step {step} needs ragtune's splits: run the ragtune step first")
            print(f"== {step}", flush=True)
            load = [round(x, 2) for x in os.getloadavg()]  # other jobs on the machine inflate wall times
            if step == "ragtune":
                result = run_ragtune(work, data.resolve(), config, env, train_queries)
            elif step == "encode":
                result = run_encode(work, config, env)
            else:
                result = run_recipe(step, work, config, env)
            result["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
            result["load_average_at_start"] = load
            result["commit"] = git_commit(work / "ragtune" if step == "ragtune" else ROOT)
            saved.write_text(json.dumps(result, indent=2) + "\n")
        if saved.is_file():
            results[step] = json.loads(saved.read_text())
    write_report(results, config, machine, work, setting)
    # The commit of the pipeline code that made the numbers (a later report-only run may be at another).
    write_summary(SUMMARY, setting, results, results.get("ragtune", {}).get("commit") or machine["git_commit"])


def write_summary(path: Path, setting: str, results: dict, commit: str) -> dict:
    """Put this setting's row into the summary file (rewritten whole, atomically)."""
    from ragtune.io import write_json

    old = json.loads(path.read_text()) if path.is_file() else None
    doc = update_summary(old, setting, results, commit)
    write_json(path, doc)
    return doc


def write_report(results: dict, config: dict, machine: dict, work: Path, setting: str = "all") -> None:
    from .scifact_report import render

    date = datetime.date.today().isoformat()
    out = ROOT / "bench" / "results" / (date if setting == "all" else f"{date}-train-{setting}")
    doc = {"date": date, "machine": machine, "config": config, "results": results}
    ragtune_report = work / "ragtune" / "metrics" / "report.md"
    if "ragtune" in results and ragtune_report.is_file():  # its significance tests, kept beside the results
        doc["ragtune_report"] = f"{out.name}-ragtune-report.md"
        shutil.copyfile(ragtune_report, out.parent / doc["ragtune_report"])
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    text = render(doc)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
