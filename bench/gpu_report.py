"""Markdown summary of bench/gpu_run.py's result files (gpu-<setting>.json)."""
from __future__ import annotations


def verdict(passed: bool | None) -> str:
    return "not checked" if passed is None else "passed" if passed else "FAILED"


def _mib(value) -> str:
    return "–" if value is None else f"{value:,.0f}"


def render_setting(doc: dict) -> list[str]:
    gpu, emb, rr = doc.get("gpu", {}), doc["params"]["embedder"], doc["params"]["reranker"]
    lines = [f"## {doc['setting']}{' (tiny rehearsal)' if doc.get('tiny') else ''}: device {doc['device']}"
             f"{', ' + gpu['name'] if gpu.get('name') else ''}, torch {gpu.get('torch')}",
             "", f"embedder: {emb['max_seq_length']} tokens, batch {emb['batch_size']}, encode batch "
             f"{emb['encode_batch_size']}; reranker: {rr['max_length']} tokens, batch {rr['batch_size']} groups "
             f"of {rr['group_size']}", "",
             "| stage | wall s | CPU s | peak RSS MiB | peak CUDA alloc MiB | GPU mem used MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    alloc, used = doc.get("cuda_max_allocated_mib", {}), doc.get("gpu_memory_used_mib", {})
    for name, s in doc["stages"].items():
        lines.append(f"| {name} | {s['wall_seconds']} | {s['cpu_seconds']} | {_mib(s['peak_rss_mib'])} | "
                     f"{_mib(alloc.get(name))} | {_mib(used.get(name))} |")
    if not doc.get("complete"):
        return lines + ["", "**Cut short**: the stages above finished; no quality check."]
    lines += ["", f"Pipeline: {doc['pipeline_wall_seconds']} s; no-op `dvc repro` {doc['noop_repro_seconds']} s. "
              f"Throughput: {', '.join(f'{k} {v}' for k, v in doc['throughput'].items())}.", ""]
    if doc.get("encode"):
        enc = doc["encode"]
        lines += [f"Corpus encoding ({enc['docs']} passages, {enc['max_seq_length']} tokens, "
                  f"batch {enc['batch_size']}): "
                  f"{enc['docs_per_second']['ragtune']} passages/s with ragtune's encode_corpus, "
                  f"{enc['docs_per_second']['bare']} with a bare SentenceTransformer.encode.", ""]
    quality = doc["quality"]
    lines += [f"Quality, nDCG@10 vs the CPU run ({doc['baseline']}), rule {quality['rule']}: "
              f"**{verdict(quality['passed'])}**", "", "| system | GPU | CPU | diff | ok |",
              "| --- | ---: | ---: | ---: | --- |"]
    for system, row in quality["systems"].items():
        lines.append(f"| {system} | {row['gpu']:.4f} | {row['cpu']:.4f} | {row['diff']:+.4f} | "
                     f"{'yes' if row['ok'] else 'NO'} |")
    published = quality.get("dense:base_vs_published")
    if published:
        lines += ["", f"dense:base {published['gpu']:.4f} vs published {published['published']} (MTEB, 256 tokens): "
                  f"{'within' if published['ok'] else 'NOT within'} 0.01"]
    return lines


def render(docs: list[dict]) -> str:
    lines = ["# ragtune on a GPU: SciFact (bench/gpu.sh)", ""]
    for doc in docs:
        lines += render_setting(doc) + [""]
    return "\n".join(lines)
