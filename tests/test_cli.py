"""Stage scripts under faults: bad params, unwritable or full output folders. One line, exit 1, no traceback.

Each stage script runs in a subprocess on tiny hand-made data, the way `dvc repro` runs it.
"""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ragtune import cli

ROOT = Path(__file__).resolve().parents[1]


def stage(tmp_path: Path, script: str, *args: str, params: dict | None = None) -> subprocess.CompletedProcess:
    if params is not None:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    return subprocess.run([sys.executable, str(ROOT / "stages" / f"{script}.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def write_beir(root: Path, n_docs: int = 12, n_queries: int = 6, query_words: int = 6) -> None:
    """data/raw (BEIR, one qrels file) and data/prepared (train / val / test) with one positive per query."""
    raw, prepared = root / "data" / "raw", root / "data" / "prepared"
    (raw / "qrels").mkdir(parents=True)
    (prepared / "qrels").mkdir(parents=True)
    words = "python module class function value list string file error index search rank".split()
    with open(raw / "corpus.jsonl", "w") as f:
        for i in range(n_docs):
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": " ".join(words[(i + j) % 12] for j in range(8))
                                + f" number {i}"}) + "\n")
    queries = [{"_id": f"q{i}", "text": f"Query {i} about " + " ".join(words[(i * 3 + j) % 12]
                                                                        for j in range(query_words))}
               for i in range(n_queries)]
    for folder in (raw, prepared):
        (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    header = "query-id\tcorpus-id\tscore\n"
    (raw / "qrels" / "all.tsv").write_text(header + "".join(f"q{i}\td{i}\t1\n" for i in range(n_queries)))
    splits = {"train": range(0, n_queries - 2), "val": [n_queries - 2], "test": [n_queries - 1]}
    for split, ids in splits.items():
        (prepared / "qrels" / f"{split}.tsv").write_text(header + "".join(f"q{i}\td{i}\t1\n" for i in ids))


# ---------------------------------------------------------------- bad params, before any model loads


def test_bad_param_fails_before_any_model_loads(tmp_path):
    start = time.perf_counter()
    proc = stage(tmp_path, "train_embedder", params={"epochs": -1})
    took = time.perf_counter() - start
    assert one_error_line(proc) == "error: params.yaml: epochs: must be >= 1, got -1"
    # Only the "started" line was logged: no data read, no library imported, no model loaded.
    assert [line for line in proc.stderr.splitlines() if not line.startswith("error: ")] == \
        [line for line in proc.stderr.splitlines() if "stage train_embedder: started" in line]
    assert took < 60  # a model load alone takes ~10 s of imports


def test_typo_in_a_key_names_the_key_and_a_suggestion(tmp_path):
    proc = stage(tmp_path, "train_reranker", params={"reranker": {"learning_rate": 1e-4, "group_sise": 4}})
    line = one_error_line(proc)
    assert line.startswith("error: params.yaml: reranker.")
    assert "unknown key" in line and "did you mean 'reranker." in line


def test_unknown_first_stage_name(tmp_path):
    proc = stage(tmp_path, "mine", params={"mine": {"first_stage": "colbert"}})
    assert one_error_line(proc) == ("error: params.yaml: mine.first_stage: unknown value 'colbert'; "
                                    "allowed: bm25, dense, hybrid")
    proc = stage(tmp_path, "evaluate", params={"evaluate": {"first_stages": ["bm25", "dense:tuned"]}})
    assert "evaluate.first_stages: unknown value 'dense:tuned'" in one_error_line(proc)


def test_num_negatives_larger_than_the_corpus_allows(tmp_path):
    write_beir(tmp_path, n_docs=12)
    proc = stage(tmp_path, "mine", params={"mine": {"num_negatives": 12, "range_max": 10}})
    line = one_error_line(proc)
    assert line.startswith("error: params.yaml: mine.num_negatives: 12 is more than this corpus allows")
    assert "12 documents" in line and "at most 11 negatives" in line
    assert not (tmp_path / "data" / "negatives").exists()
    # random_negatives count too, and the message says so.
    proc = stage(tmp_path, "mine", params={"mine": {"num_negatives": 8, "random_negatives": 4, "range_max": 10}})
    assert "mine.num_negatives: 8 (+ mine.random_negatives 4) is more than" in one_error_line(proc)


def test_missing_model_folder_names_the_key_only_in_stages_that_load_it(tmp_path):
    write_beir(tmp_path)
    params = {"embedder": {"base": "/nonexistent"}, "mine": {"first_stage": "bm25", "range_min": 0,
                                                            "range_max": 10, "num_negatives": 3}}
    # BM25 mining needs no embedder: it runs.
    proc = stage(tmp_path, "mine", params=params)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "negatives" / "train.jsonl").is_file()
    # The trainer does, and says which key is wrong, before reading data or loading a model.
    start = time.perf_counter()
    proc = stage(tmp_path, "train_embedder", params=params)
    line = one_error_line(proc)
    assert line.startswith("error: params.yaml: embedder.base: no such directory '/nonexistent'"), line
    assert time.perf_counter() - start < 120  # imports (torch, for seeding) only; no data read, no model
    params["mine"]["first_stage"] = "dense"
    line = one_error_line(stage(tmp_path, "mine", params=params))
    assert line.startswith("error: params.yaml: embedder.base: no such directory '/nonexistent'"), line


def test_uncached_hub_id_offline_stops_the_stage_at_once(tmp_path):
    write_beir(tmp_path)
    start = time.perf_counter()
    proc = stage(tmp_path, "train_reranker", params={"reranker": {"base": "some-org/some-model"}})
    took = time.perf_counter() - start
    line = one_error_line(proc)
    assert line.startswith("error: params.yaml: reranker.base: no local folder 'some-org/some-model'"), line
    assert "packaged default" in line and "retry" not in proc.stderr.lower()
    assert took < 120, f"took {took:.1f} s"  # imports only: the libraries' retries alone took 78 s


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def test_trainer_log_is_short_and_plain_unless_verbose(tmp_path, tiny_model):
    # A fresh reranker head on a bi-encoder body: transformers' load report (ANSI bold), FlagEmbedding's
    # tokenizer UserWarning, the Trainer's printed log dicts and progress bars, all off a terminal.
    write_beir(tmp_path, n_docs=12, n_queries=8)
    params = {"reranker": {"base": tiny_model, "batch_size": 2, "group_size": 3, "max_length": 32},
              "mine": {"range_min": 0, "range_max": 10, "num_negatives": 2}}
    assert stage(tmp_path, "mine", params=params).returncode == 0
    proc = stage(tmp_path, "train_reranker", params=params)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert not ANSI.search(out), out
    assert "Warning" not in out and "{'loss'" not in out and "it/s" not in out, out
    assert not re.search(r"model \S+ -> ", out), out
    lines = proc.stderr.splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d ragtune", line) for line in lines), out  # only ragtune's own lines
    assert len(lines) <= 12, out
    # -v (or RAGTUNE_VERBOSE=1, which dvc passes on) brings the detail back.
    verbose = stage(tmp_path, "train_reranker", "-v", params=params)
    assert verbose.returncode == 0, verbose.stderr
    assert len(verbose.stderr.splitlines()) > len(lines) and "{'loss'" in verbose.stdout + verbose.stderr


# ---------------------------------------------------------------- unwritable / full disk


def test_unwritable_output_folder_is_one_line_and_keeps_what_was_written(tmp_path):
    write_beir(tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "splits.json").write_text('{"old": true}\n')
    (tmp_path / "blocked").write_text("a file where a folder should be")  # root ignores chmod; this blocks it
    proc = stage(tmp_path, "prepare", "--out", "blocked/prepared", params={})
    line = one_error_line(proc)
    assert line.startswith("error: blocked: cannot create output directory")
    assert (tmp_path / "metrics" / "splits.json").read_text() == '{"old": true}\n'
    assert (tmp_path / "blocked").read_text() == "a file where a folder should be"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 KiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_full_disk_is_one_line_and_the_old_output_survives(tmp_path, tiny_disk):
    write_beir(tmp_path, n_docs=40, n_queries=40, query_words=200)  # ~50 KB of queries: more than the disk
    old = tiny_disk / "prepared"
    (old / "qrels").mkdir(parents=True)
    (old / "queries.jsonl").write_text('{"_id": "q0", "text": "old"}\n')
    proc = stage(tmp_path, "prepare", "--out", str(old), "--stats", str(tmp_path / "splits.json"), params={})
    line = one_error_line(proc)
    assert "no space left on device" in line.lower(), line
    assert (old / "queries.jsonl").read_text() == '{"_id": "q0", "text": "old"}\n'
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["prepared"]  # the temp folder was removed
    assert not (tmp_path / "splits.json").exists()


@pytest.fixture
def in_process_stage(tmp_path, monkeypatch):
    """For `cli.stage` run in the test process: a project folder with params, the environment the stage
    sets restored afterwards, and the SIGTERM handler it installs removed again."""
    monkeypatch.chdir(tmp_path)
    for name in ("HF_HOME", "TOKENIZERS_PARALLELISM", "DVCLIVE_OPEN", "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG"):
        monkeypatch.setenv(name, os.environ[name]) if name in os.environ else monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "_signalled", [])
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_disk_errors_outside_atomic_writes_are_one_line(in_process_stage, capsys):
    # A library writing on its own (a trainer's checkpoint) can hit a full disk too; simulated here.
    with pytest.raises(SystemExit) as exit_info:
        with cli.stage("demo"):
            raise OSError(errno.ENOSPC, "No space left on device", "checkpoints/embedder/checkpoint-4")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "error: checkpoints/embedder/checkpoint-4: No space left on device; outputs already written " \
           "are unchanged\n" in err
    with pytest.raises(ZeroDivisionError):  # a bug is still a bug: a traceback, not a tidy line
        with cli.stage("demo"):
            1 / 0


def test_sigterm_wrapped_by_a_library_is_still_the_interruption(in_process_stage, capsys):
    # SIGTERM landing inside transformers' lazy import comes out as ModuleNotFoundError (seen in the e2e
    # SIGTERM test); the stage still reports the interruption in one line.
    with pytest.raises(SystemExit) as exit_info:
        with cli.stage("demo"):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except KeyboardInterrupt as e:
                raise ModuleNotFoundError("Could not import module 'set_seed'") from e
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.endswith("error: stage demo interrupted (signal 15); no output was half-written\n")


# ---------------------------------------------------------------- bad input files, caught at ingest


@pytest.mark.parametrize("name, content, message", [
    ("corpus.jsonl", b'{"_id": "d0", "text": "ok"}\n{"_id": "d1", "text": "caf\xe9"}\n',
     "corpus.jsonl:2: not UTF-8: byte 0xe9 at byte offset 54; re-encode the file as UTF-8"),
    ("qrels/heldout.tsv", b"q0\td0\t1\n", "qrels/heldout.tsv: unknown split name 'heldout'; allowed: train, val"),
])
def test_bad_input_file_is_one_line_at_ingest_and_keeps_earlier_outputs(tmp_path, name, content, message):
    src = tmp_path / "input"
    (src / "qrels").mkdir(parents=True)
    (src / "corpus.jsonl").write_text('{"_id": "d0", "text": "ok"}\n{"_id": "d1", "text": "b"}\n')
    (src / "queries.jsonl").write_text('{"_id": "q0", "text": "a"}\n{"_id": "q1", "text": "b"}\n')
    (src / "qrels" / "test.tsv").write_text("q0\td0\t1\nq1\td1\t1\n")
    (src / name).write_bytes(content)
    for path in ("data/raw/corpus.jsonl", "metrics/ingest.json"):  # a previous run's outputs
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("old\n")
    proc = stage(tmp_path, "ingest", params={"ingest": {"source": "beir", "path": "input"}})
    line = one_error_line(proc)
    assert line.startswith("error: input/") and message in line, line
    assert (tmp_path / "data" / "raw" / "corpus.jsonl").read_text() == "old\n"
    assert (tmp_path / "metrics" / "ingest.json").read_text() == "old\n"
