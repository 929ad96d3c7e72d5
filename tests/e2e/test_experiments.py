"""DVC the way DVC users expect: no-op repro, minimal reruns, experiments and the queue, branch diffs,
a remote, DVCLive curves in `dvc plots`, and one linked copy of every model.

One `dvc repro` per session (conftest's `reproduced`); each test that changes something works on a copy.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import time
from pathlib import Path

import pytest
import yaml


from .conftest import ROOT, run

MODELS = ("embedder", "reranker", "embedder-merged", "reranker-merged")
CACHED_OUTS = ("data/raw", "data/prepared", "data/negatives", "metrics/runs", "release") + tuple(f"models/{m}" for m in MODELS)
DVCLIVE_PLOTS = ("training loss", "val nDCG@10 during training", "learning rate")


@pytest.fixture
def built(reproduced):
    """The session's reproduced repo (conftest), read only."""
    return reproduced


@pytest.fixture
def repo(reproduced_copy) -> Path:
    return reproduced_copy


def stages_run(proc) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout))


def set_param(repo: Path, key: str, value) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    section, _, name = key.rpartition(".")
    (params[section] if section else params)[name] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def changed_stages(repo: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], repo).stdout))


def assert_linked(repo: Path) -> None:
    """Each model exists once on disk: the workspace file is a read-only hard link into .dvc/cache, and
    release/<model>/ (the package stage) links the same file."""
    for name in MODELS:
        st = os.stat(repo / "models" / name / "model.safetensors")
        assert st.st_ino == os.stat(repo / "release" / name / "model.safetensors").st_ino
        assert st.st_nlink == 3, f"models/{name}/model.safetensors is a copy, not linked to the cache"
        assert not st.st_mode & 0o222, f"models/{name}/model.safetensors is writable (unprotected link)"


def readme_commands(heading: str) -> list[str]:
    """The commands in the README's bash blocks under `heading` (up to the next heading), comments cut."""
    section = (ROOT / "README.md").read_text().split(f"\n{heading}\n", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    return [re.sub(r"\s+#\s.*$", "", line).strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)
            for line in block.splitlines() if line.strip()]


def exp_rows(repo: Path) -> list[dict]:
    """`dvc exp show --json` flattened to {name, params, metrics (summary.json)} per commit/experiment
    row (the workspace row left out)."""
    rows = []

    def walk(entries):
        for entry in entries:
            for rev in [entry] + [e for exp in entry.get("experiments") or [] for e in exp.get("revs", [])]:
                data = rev.get("data") or {}
                if rev.get("rev") == "workspace":
                    continue
                rows.append({
                    "name": rev.get("name") or rev.get("rev"),
                    "params": ((data.get("params") or {}).get("params.yaml") or {}).get("data", {}),
                    "metrics": ((data.get("metrics") or {}).get("metrics/summary.json") or {}).get("data", {}),
                })

    walk(json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout))
    return rows


def test_unchanged_repro_is_a_fast_noop_and_git_tracks_the_right_files(built):
    repo = built.repo
    start = time.monotonic()
    proc = run(["dvc", "repro"], repo)
    elapsed = time.monotonic() - start
    assert not stages_run(proc), proc.stdout
    assert elapsed < 30, f"no-op `dvc repro` took {elapsed:.1f} s"  # ~2 s idle; slack for a busy CI
    assert "up to date" in run(["dvc", "status"], repo).stdout
    assert_linked(repo)

    # After the first repro git sees only small files: dvc.lock, DVC's .gitignore files, metrics.
    assert "dvc.lock" in built.untracked_after_repro
    for path in built.untracked_after_repro:
        assert path in {"dvc.lock", ".gitignore", "data/.gitignore", "models/.gitignore", "metrics/.gitignore"} \
            or path.startswith("metrics/") and not path.startswith("metrics/runs/"), path
    tracked = set(run(["git", "ls-files"], repo).stdout.splitlines())
    assert {"dvc.lock", "metrics/eval.json", "metrics/train_embedder.json", "metrics/train_reranker.json",
            "metrics/train_reranker/plots/metrics/val/ndcg@10.tsv"} <= tracked
    assert not [p for p in tracked if p.startswith(("models/", "data/raw", "metrics/runs/"))
                and not p.endswith(".gitignore")]
    for out in CACHED_OUTS:
        assert run(["git", "check-ignore", "-q", out], repo, check=False).returncode == 0, f"{out} not git-ignored"
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


def test_dvclive_curves_in_plots_show(built, tmp_path):
    repo = built.repo
    plots = json.loads(run(["dvc", "plots", "show", "--json"], repo).stdout)["data"]
    for name in DVCLIVE_PLOTS + ("nDCG@10 per system", "recall@k per first stage",
                                 "per-query change of the best fine-tuned system"):
        assert name in plots, sorted(plots)
        values = plots[name][0]["content"]["data"]["values"]
        assert values, f"plot {name!r} has no data"
    val = plots["val nDCG@10 during training"][0]["content"]["data"]["values"]
    assert {v["filename"].split("/")[0] for v in val} == {"train_embedder", "train_reranker"}
    assert all(v["step"] is not None for v in val)

    html = tmp_path / "plots"
    run(["dvc", "plots", "show", "-o", str(html)], repo)
    page = (html / "index.html").read_text()
    for name in DVCLIVE_PLOTS:
        assert name in page
    # DVCLive was told not to write a dvc.yaml of its own: the project's dvc.yaml is the only one.
    assert not list(repo.glob("metrics/**/dvc.yaml"))


def test_param_changes_rerun_only_downstream_and_branches_diff(repo, tmp_path):
    run(["git", "checkout", "-q", "-b", "other"], repo)

    # A reranker knob that merge and evaluate also read: reranker -> merge -> evaluate, nothing upstream.
    set_param(repo, "reranker.max_length", 48)
    assert changed_stages(repo) == {"train_reranker", "merge", "evaluate", "package"}
    assert stages_run(run(["dvc", "repro"], repo)) == {"train_reranker", "merge", "evaluate", "package"}
    # An evaluate knob: evaluate only.
    set_param(repo, "evaluate.rerank_depth", 10)
    assert changed_stages(repo) == {"evaluate"}
    assert stages_run(run(["dvc", "repro"], repo)) == {"evaluate", "package"}  # the cards quote eval.json
    # Rerun outputs are linked too, also those whose content was already in the cache.
    assert_linked(repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "shorter reranker input, deeper reranking"], repo)

    # The declared metrics are the headline only (--all: changed or not): no timings, a few lines.
    metrics = json.loads(run(["dvc", "metrics", "diff", "main", "other", "--all", "--json"], repo).stdout)
    assert set(metrics) == {"metrics/summary.json"}, metrics
    assert set(metrics["metrics/summary.json"]) == {"nDCG@10.best", "nDCG@10.dense:base", "nDCG@10.dense:finetuned",
                                                    "nDCG@10.rerank:finetuned"}, metrics
    text = run(["dvc", "metrics", "diff", "main", "other", "--all"], repo).stdout
    # One line per headline number: path, metric.system, main, other, change.
    assert re.search(r"^metrics/summary\.json +nDCG@10\.rerank:finetuned +[\d.]+ +[\d.]+ +\S+$", text, re.M), text
    assert "seconds" not in text and len(text.splitlines()) <= 6, text
    # Every metric of every system, when asked for by file (the README's recipe).
    full = run(["dvc", "metrics", "diff", "main", "other", "--targets", "metrics/eval.json"], repo).stdout
    assert re.search(r"^metrics/eval\.json +\S.* \+ rerank:\w+\.\w+@\d+ +[\d.]+ +[\d.]+ +-?[\d.]+$", full, re.M), full

    params = json.loads(run(["dvc", "params", "diff", "main", "other", "--json"], repo).stdout)["params.yaml"]
    assert (params["reranker.max_length"]["old"], params["reranker.max_length"]["new"]) == (64, 48)
    assert (params["evaluate.rerank_depth"]["old"], params["evaluate.rerank_depth"]["new"]) == (5, 10)

    out = tmp_path / "diff"
    run(["dvc", "plots", "diff", "main", "other", "-o", str(out)], repo)
    page = (out / "index.html").read_text()
    assert '"rev": "main"' in page and '"rev": "other"' in page

    # `git checkout` + `dvc checkout` switch the data and models with the branch.
    for branch, max_length in (("main", 64), ("other", 48)):
        run(["git", "checkout", "-q", branch], repo)
        run(["dvc", "checkout"], repo)
        assert "up to date" in run(["dvc", "status"], repo).stdout
        assert yaml.safe_load((repo / "params.yaml").read_text())["reranker"]["max_length"] == max_length
        assert_linked(repo)


def wait_for_queue(repo: Path) -> str:
    try:
        deadline = time.monotonic() + 900
        while True:
            status = run(["dvc", "queue", "status"], repo).stdout
            if not re.search(r"\b(Queued|Running)\b", status):
                return status
            assert time.monotonic() < deadline, status
            time.sleep(10)
    finally:
        run(["dvc", "queue", "stop"], repo, check=False)


EXPERIMENTS = [
    "dvc exp run -S epochs=2",
    "dvc exp run -S embedder.lr=3e-5 -S merge.weight=0.3",
    "dvc exp show",
    "dvc exp show --only-changed",
    "dvc exp show --drop '.*' --keep 'Experiment|epochs|.*\\.lr|nDCG@10\\..*'",
    "dvc exp diff",
]
QUEUE = [
    "dvc exp run --queue -S 'embedder.lr=1e-5,3e-5'",
    "dvc queue status",
    "dvc queue start",
    "dvc queue status",
    "dvc queue logs <name>",
    "dvc exp show",
]


def test_readme_experiment_commands(repo):
    """Every command of the README's "Experiments" and "A queue of experiments" blocks, in order, on one
    reproduced repo (one test: each experiment costs a training run)."""
    assert readme_commands("### Experiments: `dvc exp run`") == EXPERIMENTS
    assert readme_commands("### A queue of experiments") == QUEUE
    exp = lambda cmd, **kw: run(shlex.split(cmd), repo, **kw)  # noqa: E731

    proc = exp(EXPERIMENTS[0])
    assert stages_run(proc) == {"train_embedder", "train_reranker", "merge", "evaluate", "package"}
    # DVCLive runs inside the experiment with save_dvc_exp=False and no dvc.yaml of its own: it makes no
    # experiment of its own and says nothing about experiments or dvc.yaml.
    live_lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "dvclive" in line.lower()]
    assert not [line for line in live_lines if re.search(r"experiment|dvc\.yaml|dvcyaml|git", line, re.I)], live_lines
    names = run(["dvc", "exp", "list", "--name-only"], repo).stdout.split()
    assert len(names) == 1
    rows = exp_rows(repo)
    assert [r["params"]["epochs"] for r in rows if r["name"] == names[0]] == [2], rows

    # In a terminal `dvc exp show` pipes its table, at full width, into `less -S`: a 120-column terminal
    # shows each line's first 120 characters. With --only-changed those hold the experiment's name, its
    # headline metrics and the param it changed (the changed dependencies' hashes come after); nothing
    # is elided.
    changed = exp(EXPERIMENTS[3]).stdout
    screen = [line[:120] for line in changed.splitlines()]
    assert "…" not in changed, changed
    # The headline columns show when the experiment moved them (on the tiny random model two epochs may
    # leave every headline number as it was; then --only-changed rightly hides them).
    moved = len({json.dumps(r["metrics"], sort_keys=True) for r in exp_rows(repo)}) > 1
    assert re.search(r"\bepochs\s", screen[1] + " "), changed
    assert bool(re.search(r"\bnDCG@10\.\S+", screen[1])) == moved, changed
    value = r"\d\.\d+ .* " if moved else ""
    assert any(re.search(rf"\[{names[0]}\] .*{value}2(\s|$)", line) for line in screen), changed
    shown = exp(EXPERIMENTS[2]).stdout
    assert "…" not in shown, shown
    first = [line[:120] for line in shown.splitlines()]
    assert "Experiment" in first[1] and "nDCG@10.best" in first[1] and any(names[0] in line for line in first), shown

    exp(EXPERIMENTS[1])
    keep = shlex.split(EXPERIMENTS[4])
    table = list(csv.DictReader(io.StringIO(run(keep + ["--csv"], repo).stdout)))
    assert list(table[0]) == ["Experiment", "nDCG@10.best", "nDCG@10.dense:base", "nDCG@10.dense:finetuned",
                              "nDCG@10.rerank:finetuned", "epochs", "embedder.lr", "reranker.lr"], table[0]
    assert sorted(r["epochs"] for r in table) == ["1", "2", "2", "2"], table  # workspace, main, 2 experiments
    assert all(r["nDCG@10.best"] for r in table), table
    assert "embedder.lr" in run(keep, repo).stdout
    diff = exp(EXPERIMENTS[5]).stdout
    assert "merge.weight" in diff and "embedder.lr" in diff, diff

    # The grid from the prose: four queued experiments (removed again: the sweep below is the one run).
    run(shlex.split("dvc exp run --queue -S 'embedder.lr=1e-5,3e-5' -S 'epochs=1,2'"), repo)
    assert exp(QUEUE[1]).stdout.count("Queued") == 4
    run(["dvc", "queue", "remove", "--queued"], repo)
    # The sweep: the workspace holds epochs=2, merge.weight=0.3 from the run above; embedder.lr=3e-5 is
    # that same experiment again.
    exp(QUEUE[0])
    assert exp(QUEUE[1]).stdout.count("Queued") == 2
    exp(QUEUE[2])
    status = wait_for_queue(repo)
    assert status.count("Success") == 2, status
    queued = [line.split()[1] for line in status.splitlines() if "Success" in line]
    logs = exp(QUEUE[4].replace("<name>", queued[0])).stdout
    assert "Running stage" in logs or "skipping" in logs, logs
    rows = exp_rows(repo)
    lrs = sorted(r["params"]["embedder"]["lr"] for r in rows if r["params"]["merge"]["weight"] == 0.3)
    assert lrs == [1e-5, 3e-5, 3e-5], rows  # the run above and the two queued
    assert all(r["metrics"]["nDCG@10"]["best"] > 0 for r in rows), rows
    exp(QUEUE[5])  # runs; its columns, read as csv (a pipe gets no pager, so the plain table may be cut):
    assert "embedder.lr" in run(["dvc", "exp", "show", "--csv"], repo).stdout.splitlines()[0]

    # Keep one (branch), bring one into the workspace (apply), drop one (remove).
    name = names[0]
    run(["dvc", "exp", "branch", name, "two-epochs"], repo)
    assert yaml.safe_load(run(["git", "show", "two-epochs:params.yaml"], repo).stdout)["epochs"] == 2
    run(["dvc", "exp", "apply", name], repo)
    assert yaml.safe_load((repo / "params.yaml").read_text())["embedder"]["lr"] == 5e-5
    run(["dvc", "exp", "remove", name], repo)
    assert name not in run(["dvc", "exp", "list", "--name-only"], repo).stdout.split()


def test_metrics_are_the_headline_and_the_log_is_short(built):
    repo = built.repo
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    files = metrics[next(iter(metrics))]["data"] if "data" in metrics[next(iter(metrics))] else metrics
    assert set(files) == {"metrics/summary.json"}, metrics
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert list(summary) == ["nDCG@10"] and set(summary["nDCG@10"]) == {
        "best", "dense:base", "dense:finetuned", "rerank:finetuned"}, summary
    # The full set is still there, as plain outputs.
    assert "wall_seconds" in json.loads((repo / "metrics" / "train_embedder.json").read_text())

    # The stages' log: one line per step, no ANSI colour codes, no library chatter, within a budget.
    log = built.proc.stderr
    assert not re.search(r"\x1b\[", log), log
    assert "UserWarning" not in log and "Warning:" not in log, log
    assert not re.search(r"ragtune\.models: model ", log), log  # a folder's own resolution is debug detail
    lines = log.splitlines()
    assert len(lines) <= 70, f"{len(lines)} lines:\n{log}"


def test_push_then_pull_in_a_fresh_clone(repo, tmp_path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "local", str(remote)], repo)
    run(["git", "commit", "-qam", "dvc remote"], repo)
    run(["dvc", "push"], repo)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "models" / "embedder").exists()
    run(["dvc", "pull"], clone)
    for out in CACHED_OUTS:
        assert (clone / out).is_dir(), out
    assert_linked(clone)
    assert "up to date" in run(["dvc", "status"], clone).stdout
    assert not stages_run(run(["dvc", "repro"], clone))
