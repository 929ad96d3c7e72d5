"""How ingest + prepare scale: a synthetic BEIR corpus (1M passages by default) through the library
functions the stages call, recording wall time and peak RSS of each.

    python bench/ingest_scale.py                      # 1M passages, data in /tmp (never in the repo)
    python bench/ingest_scale.py --passages 100000    # a quicker look

Each phase runs in its own child process, so its peak RSS (resource.getrusage ru_maxrss) is its own.
Writes bench/results/ingest_scale.json.
"""
from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze", "bo", "du")
         for b in ("ran", "tel", "mos", "vik", "dap", "sor", "lun", "gez", "pim", "hol", "bar", "cen", "fot")]


def make_beir(folder: Path, passages: int, queries: int, seed: int) -> None:
    """corpus.jsonl (~120 words, ~850 characters a passage), queries.jsonl, qrels/{train,test}.tsv;
    streamed to disk."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i in range(passages):
            text = " ".join(rng.choices(WORDS, k=120)).capitalize() + "."
            f.write(json.dumps({"_id": f"doc{i}", "title": f"Title {i % 1000}", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        for i in range(queries):
            f.write(json.dumps({"_id": f"q{i}", "text": " ".join(rng.choices(WORDS, k=8)),
                                "metadata": {"topic": f"t{i % 50}"}}) + "\n")
    n_test = queries // 5
    for split, ids in (("test", range(n_test)), ("train", range(n_test, queries))):
        with open(folder / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for i in ids:
                for d in rng.sample(range(passages), 2):
                    f.write(f"q{i}\tdoc{d}\t1\n")
    (folder / "DONE").write_text(f"{passages} {queries} {seed}\n")


def run_phase(phase: str, work: Path, seed: int) -> dict:
    """Run one phase in this process (the child): the same library calls the stage scripts make."""
    import logging

    sys.path.insert(0, str(ROOT))
    from ragtune.pipeline import ingest, prepare
    from ragtune.params import defaults

    logging.basicConfig(level=logging.WARNING)
    params = defaults()
    params["seed"] = seed
    params["ingest"].update(source="beir", path=str(work / "input"))
    start = time.perf_counter()
    if phase == "ingest":
        ingest.run(params, out_dir=str(work / "raw"), stats_path=str(work / "metrics" / "ingest.json"))
    else:
        prepare.run(params, raw_dir=str(work / "raw"), out_dir=str(work / "prepared"),
                    stats_path=str(work / "metrics" / "splits.json"))
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak_kib / 1024, 1)}


@click.command()
@click.option("--passages", default=1_000_000, show_default=True)
@click.option("--queries", default=10_000, show_default=True)
@click.option("--work", default="/tmp/ragtune-ingest-scale", show_default=True, help="data goes here, not in the repo")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default=str(ROOT / "bench" / "results" / "ingest_scale.json"), show_default=True)
@click.option("--phase", type=click.Choice(["ingest", "prepare"]), default=None, hidden=True)
def main(passages, queries, work, seed, out, phase):
    work = Path(work)
    if phase:  # child process
        print(json.dumps(run_phase(phase, work, seed)))
        return
    marker = work / "input" / "DONE"
    if not marker.is_file() or marker.read_text().split() != [str(passages), str(queries), str(seed)]:
        start = time.perf_counter()
        make_beir(work / "input", passages, queries, seed)
        print(f"generated {passages} passages in {time.perf_counter() - start:.0f} s -> {work / 'input'}")
    result = {"passages": passages, "queries": queries,
              "corpus_mb": round((work / "input" / "corpus.jsonl").stat().st_size / 2**20, 1)}
    for name in ("ingest", "prepare"):
        proc = subprocess.run([sys.executable, __file__, "--phase", name, "--work", str(work), "--seed", str(seed),
                               "--passages", str(passages), "--queries", str(queries)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
        result[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(name, result[name])
    splits = json.loads((work / "metrics" / "splits.json").read_text())
    result["splits"] = {s: splits[s]["queries"] for s in ("train", "val", "test")}
    result["python"] = sys.version.split()[0]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
