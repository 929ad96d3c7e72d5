"""Time `dvc repro` on the default data from a fresh clone: per-stage wall times, total, no-op rerun.

    python -m bench.repro_time [--keep DIR]

Clones the committed HEAD into a temp dir (as a user would), runs `dvc repro` with the project's venv,
then `dvc repro` again (must do nothing), and writes bench/results/repro-<date>.json and .md.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from .machine import describe

ROOT = Path(__file__).resolve().parents[1]
STAGE_DONE = re.compile(r"stage (\w+): done in ([\d.]+) s")


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return elapsed, proc.stdout + proc.stderr


@click.command()
@click.option("--keep", type=click.Path(path_type=Path), default=None, help="clone here and keep it")
def main(keep: Path | None) -> None:
    work = keep or Path(tempfile.mkdtemp(prefix="ragtune-repro-"))
    if work.exists() and any(work.iterdir()):
        shutil.rmtree(work)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(work), HF_HOME=str(work / ".cache" / "huggingface"))
    machine = describe(ROOT)
    total, log = timed(["dvc", "repro"], work, env)
    stages = {name: float(sec) for name, sec in STAGE_DONE.findall(log)}
    noop, _ = timed(["dvc", "repro"], work, env)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    results = {
        "date": datetime.date.today().isoformat(), "machine": machine,
        "total_seconds": round(total, 1), "noop_repro_seconds": round(noop, 2),
        "stage_seconds": stages, "dvc_and_import_overhead_seconds": round(total - sum(stages.values()), 1),
        "peak_rss_mib_largest_stage": round(children.ru_maxrss / 1024, 1),
        "eval": json.loads((work / "metrics" / "eval.json").read_text()),
    }
    out = ROOT / "bench" / "results" / f"repro-{results['date']}"
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# `dvc repro` on the default data ({results['date']})", "",
             f"Machine: {machine['cores']} cores, {machine['ram_gib']} GiB, {machine['cpu']}; "
             f"commit {machine['git_commit'][:10]}; load average at start {machine['load_average_at_start']}.",
             "", "| stage | seconds (inside the stage) |", "|---|---|",
             *(f"| {s} | {t:.1f} |" for s, t in stages.items()),
             f"| DVC + Python start-up | {results['dvc_and_import_overhead_seconds']:.1f} |",
             f"| **total** | **{results['total_seconds']:.1f}** |", "",
             f"No-op `dvc repro` afterwards: {results['noop_repro_seconds']:.2f} s. "
             f"Peak RSS of the largest stage: {results['peak_rss_mib_largest_stage']} MiB.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
