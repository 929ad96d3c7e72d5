"""Faults end to end: killed stages, two `dvc repro` at once, forced reruns, planted secrets, --resume.

Each test works on its own copy of the session's reproduced project (conftest's `reproduced`), except
the planted-key test, whose documents source reruns every stage on a fresh project.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from .conftest import env_for, run

TEMP_NAME = re.compile(r"^\..+\.(tmp|old)-")
KEY = "sk-planted-xyz-4a7c1e"


@pytest.fixture
def repo(reproduced_copy) -> Path:
    """A private copy of the session's reproduced project (conftest)."""
    return reproduced_copy


def set_params(repo: Path, **changes) -> None:
    """set_params(repo, **{"reranker.lr": 1e-4}) edits params.yaml like `dvc exp run -S` would; a callable
    value maps the old value to the new one."""
    p = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = p
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value(node.get(leaf)) if callable(value) else value
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digests(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): digest(f) for f in sorted(root.rglob("*")) if f.is_file()}


def leftovers(repo: Path) -> list[str]:
    """Temp paths of atomic writes anywhere in the workspace (outside .git and DVC's own folder)."""
    return sorted(str(p.relative_to(repo)) for p in repo.rglob(".*")
                  if TEMP_NAME.match(p.name) and not p.relative_to(repo).parts[0] in (".git", ".dvc"))


def start_repro(repo: Path, *args: str, **env) -> subprocess.Popen:
    # A new session: the test can signal `dvc repro` and its stage as one process group, like Ctrl-C
    # or a CI timeout would.
    return subprocess.Popen(["dvc", "repro", *args], cwd=repo, env=env_for(repo, **env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def stage_process(proc: subprocess.Popen, script: str, ready: Path, timeout: float = 600) -> psutil.Process:
    """Wait until `python stages/<script>` runs under `proc` and `ready` exists; return that process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"dvc repro ended ({proc.returncode}) before {script} got going:\n{out}\n{err}")
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        for kid in kids:
            try:
                cmd = kid.cmdline()
            except psutil.Error:
                continue
            if any(script in c for c in cmd) and "python" in Path(cmd[0]).name and ready.exists():
                return kid
        time.sleep(0.2)
    raise AssertionError(f"{script} did not reach {ready} in {timeout} s")


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------- killed stages


def test_sigterm_mid_stage_keeps_outputs_and_next_repro_reruns(repo):
    lock_before = yaml.safe_load((repo / "dvc.lock").read_text())
    model = repo / "models" / "reranker" / "model.safetensors"
    before = digest(model)
    set_params(repo, **{"reranker.lr": lambda lr: lr * 2})  # reruns train_reranker, merge, evaluate
    shutil.rmtree(repo / "checkpoints" / "reranker")  # so that `start` marks this run's progress

    proc = start_repro(repo)
    stage = stage_process(proc, "stages/train_reranker.py", repo / "checkpoints" / "reranker" / "start")
    os.killpg(proc.pid, signal.SIGTERM)  # dvc and the stage, as `kill -TERM -<pgid>` or a CI timeout does
    stage.wait(timeout=120)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    log = out + err
    assert "error: stage train_reranker interrupted (signal 15); no output was half-written" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]

    # Nothing half-written: no temp paths, and the declared output is either gone (DVC removes a
    # stage's outs before running it) or complete; dvc.lock still records the previous, complete run.
    assert leftovers(repo) == []
    assert not model.exists() or digest(model) == before
    assert yaml.safe_load((repo / "dvc.lock").read_text()) == lock_before
    # The previous version is in DVC's cache: `dvc checkout` brings it back byte for byte.
    run(["dvc", "checkout", "models/reranker"], repo)
    assert digest(model) == before

    again = run(["dvc", "repro"], repo)
    assert "Running stage 'train_reranker'" in again.stdout
    assert leftovers(repo) == []
    assert digest(model) != before  # the new lr trained a new model
    assert json.loads((repo / "metrics" / "eval.json").read_text())


def test_sigkill_mid_stage_leaves_nothing_half_written(repo):
    lock_before = yaml.safe_load((repo / "dvc.lock").read_text())
    model = repo / "models" / "reranker" / "model.safetensors"
    before = digest(model)
    set_params(repo, **{"reranker.lr": lambda lr: lr * 2})
    shutil.rmtree(repo / "checkpoints" / "reranker")

    proc = start_repro(repo)
    stage = stage_process(proc, "stages/train_reranker.py", repo / "checkpoints" / "reranker" / "start")
    stage.send_signal(signal.SIGKILL)  # no handler runs: the worst case for half-written files
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "failed to reproduce 'train_reranker'" in out + err
    assert not model.exists() or digest(model) == before
    assert yaml.safe_load((repo / "dvc.lock").read_text()) == lock_before

    # What a SIGKILL in the middle of a write leaves: a temp path of a writer that is gone. Plant such
    # leftovers for a directory output and a file output; the next run must clean them up.
    pid = dead_pid()
    half = repo / "models" / f".reranker.tmp-{pid}-abc123"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\0" * 100)
    (repo / "metrics" / f".eval.json.tmp-{pid}-def456").write_text('{"half": ')
    run(["dvc", "checkout", "models/reranker"], repo)
    assert digest(model) == before

    again = run(["dvc", "repro"], repo)
    assert "Running stage 'train_reranker'" in again.stdout
    assert leftovers(repo) == [], "stale temp paths of a killed writer were not cleaned up"
    assert "half" not in (repo / "metrics" / "eval.json").read_text()


# ---------------------------------------------------------------- two repros at once


def test_second_concurrent_repro_is_refused_by_dvc_lock(repo):
    set_params(repo, **{"evaluate.rerank_depth": lambda d: d - 1})  # only evaluate reruns
    first = start_repro(repo)
    try:
        stage_process(first, "stages/evaluate.py", repo / "dvc.yaml")
        second = run(["dvc", "repro"], repo, check=False, timeout=300)
        assert second.returncode != 0
        # DVC 3.67 releases its repo lock while a stage command runs; the per-output read/write locks
        # (.dvc/tmp/rwlock) are what refuse the second run, naming the first one's PID.
        assert re.search(r"is busy, it is being blocked by:\s+\(PID \d+\): .*dvc repro", second.stderr), \
            second.stdout + second.stderr
        assert "Running stage" not in second.stdout
        out, err = first.communicate(timeout=900)
        assert first.returncode == 0, out[-2000:] + err[-4000:]  # the first run was not disturbed
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.communicate()


# ---------------------------------------------------------------- determinism


def test_forced_repro_gives_identical_data_and_metrics(repo):
    def snapshot() -> dict[str, str]:
        files = tree_digests(repo / "data")
        files = {f"data/{k}": v for k, v in files.items() if not k.startswith("input")}
        for name in ("models", "metrics/runs"):
            files.update({f"{name}/{k}": v for k, v in tree_digests(repo / name).items()})
        for name in ("eval.json", "mining.json", "splits.json", "ingest.json", "per_query.csv"):
            files[f"metrics/{name}"] = digest(repo / "metrics" / name)
        return files

    first = snapshot()
    run(["dvc", "repro", "--force"], repo)
    second = snapshot()
    assert set(first) == set(second)
    differ = sorted(k for k in first if first[k] != second[k])
    assert differ == [], f"not deterministic: {differ}"


# ---------------------------------------------------------------- secrets


class _FakeLLM(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint: answers with queries made from the passage's words."""
    seen_keys: list[str] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeLLM.seen_keys.append(self.headers.get("Authorization", ""))
        prompt = body["messages"][-1]["content"]
        words = re.findall(r"[A-Za-z]{3,}", prompt.split("Passage:", 1)[-1])
        text = f"How does {' '.join(words[:6]).lower()} work in python?" if len(words) >= 4 else "none"
        reply = json.dumps({"id": "x", "object": "chat.completion", "model": body.get("model", "m"),
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_planted_api_key_never_reaches_a_file_or_log(project):
    # Its own fresh project: the documents source reruns every stage anyway, and it need not wait for
    # the shared repro's worker under `make test`.
    repo = project
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeLLM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # The `documents` source generates its queries with the configured generator (pydoc has its own).
        rng = random.Random(0)
        words = ("python module class function value list string file error data model index search rank "
                 "token buffer socket thread parser encoder decoder archive stream cache queue").split()
        docs = [{"_id": f"doc{i}", "title": f"Note {i}",
                 "text": " ".join(f"The {' '.join(rng.sample(words, 5))} handles case {i}-{j}."
                                  for j in range(4))} for i in range(120)]
        (repo / "docs").mkdir()
        (repo / "docs" / "notes.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
        set_params(repo, **{"ingest.source": "documents", "ingest.path": "docs", "ingest.generator": "llm",
                            "ingest.llm.base_url": f"http://127.0.0.1:{server.server_port}/v1"})
        proc = start_repro(repo, OPENAI_API_KEY=KEY)
        out, err = proc.communicate(timeout=900)
    finally:
        server.shutdown()
    assert proc.returncode == 0, out[-2000:] + err[-4000:]
    assert f"Bearer {KEY}" in _FakeLLM.seen_keys  # the key was really used...
    hits = [str(f.relative_to(repo)) for f in repo.rglob("*") if f.is_file() and KEY.encode() in f.read_bytes()]
    assert hits == [], f"API key written to {hits}"  # ...and never written: params, dvc.lock, caches,
    assert KEY not in out and KEY not in err          # metrics, model folders, DVC's cache, logs


# ---------------------------------------------------------------- resume


def test_killed_trainer_resumes_to_the_same_model(repo):
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["epochs"] = 6
    p["embedder"].update(eval_steps=2)
    (repo / "resume.yaml").write_text(yaml.safe_dump(p, sort_keys=False))

    def cmd(name: str, *extra: str) -> list[str]:
        return [sys.executable, "stages/train_embedder.py", "--params", "resume.yaml", "--out",
                f"models/emb-{name}", "--stats", f"emb-{name}.json", "--live", f"live-{name}", "--checkpoints",
                f"ck-{name}", *extra]

    straight = run(cmd("a"), repo)
    steps = json.loads((repo / "emb-a.json").read_text())["steps"]
    assert steps >= 10, "too few steps to kill a run in the middle"

    killed = subprocess.Popen(cmd("b"), cwd=repo, env=env_for(repo), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not list((repo / "ck-b").glob("checkpoint-*/trainer_state.json")):
        assert killed.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert not (repo / "models" / "emb-b").exists()
    last = max(int(c.name.split("-")[1]) for c in (repo / "ck-b").glob("checkpoint-*"))
    assert last < steps, "the run finished before it was killed"

    resumed = run(cmd("b", "--resume"), repo)
    stats = json.loads((repo / "emb-b.json").read_text())
    assert stats["resumed_from_step"] is not None and stats["steps"] == steps, resumed.stderr[-3000:]
    a = json.loads((repo / "emb-a.json").read_text())
    assert stats["val_ndcg@10_by_step"] == a["val_ndcg@10_by_step"]
    assert stats["val_ndcg@10_best"] == a["val_ndcg@10_best"] and stats["best_step"] == a["best_step"]
    assert digest(repo / "models" / "emb-b" / "model.safetensors") == \
        digest(repo / "models" / "emb-a" / "model.safetensors")
    assert straight.returncode == 0
