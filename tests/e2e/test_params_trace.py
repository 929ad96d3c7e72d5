"""Each stage's `params:` in dvc.yaml are exactly the keys it reads (issue 11, part 2).

One `dvc repro` on the tiny model with $RAGTUNE_PARAMS_TRACE set: every stage records each param key it
reads (ragtune.params.trace_reads), and each stage's record is compared with what dvc.yaml declares.

The rule, per stage:
- every key it reads is declared (an undeclared read leaves stale outputs that look current);
- every declared key is read in this run, or is listed in CONDITIONAL below: read only under settings
  this run does not use (the setting is named, so the list can be checked by reading the code);
- a whole section may be declared (`- mine`); it counts as all of its keys, so the same two rules apply
  to each of them. Declare a section whole when the stage reads all of it (counting CONDITIONAL keys),
  else list its keys one by one.
"""
from __future__ import annotations

import pytest
import yaml

from ragtune import params


# stage -> {key or "section." prefix: the setting under which the stage reads it}
CONDITIONAL = {
    "ingest": {
        "ingest.path": "ingest.source: beir, documents, conversations or groups",
        "ingest.strict": "ingest.source: beir, conversations or groups",
        "ingest.chunk_unit": "ingest.source: documents",
        "ingest.chunk_size": "ingest.source: documents",
        "ingest.chunk_overlap": "ingest.source: documents",
        "ingest.queries_per_chunk": "ingest.source: documents",
        "ingest.generator": "ingest.source: documents",
        "ingest.llm.": "ingest.generator: llm",
        "ingest.conversation.": "ingest.source: conversations",
    },
    "prepare": {},
    "mine": {
        "mine.rescore_threshold": "mine.rescore_with set",
        "embedder.base": "mine.first_stage: dense or hybrid",
        "embedder.max_seq_length": "mine.first_stage: dense or hybrid",
        "embedder.encode_batch_size": "mine.first_stage: dense or hybrid",
        "security.": "mine.first_stage: dense or hybrid, or mine.rescore_with set (a model loads)",
        "ingest.generator": "synthetic.queries > 0",
        "ingest.queries_per_chunk": "synthetic.queries > 0",
        "ingest.llm.": "synthetic.queries > 0 with ingest.generator: llm",
    },
    "train_embedder": {
        "embedder.mini_batch_size": "embedder.loss: cached_mnrl",
    },
    "train_reranker": {
        "reranker.lora_r": "reranker.lora: true",
        "reranker.lora_alpha": "reranker.lora: true",
        "reranker.lora_target_modules": "reranker.lora: true",
    },
    "merge": {  # merge.weight: auto scores each weight of merge.grid on val
        "device": "merge.weight: auto",
        "inference_dtype": "merge.weight: auto",
        "merge.grid": "merge.weight: auto",
        "embedder.max_seq_length": "merge.weight: auto",
        "embedder.encode_batch_size": "merge.weight: auto",
        "reranker.max_length": "merge.weight: auto",
        "reranker.val_negatives": "merge.weight: auto",
        "evaluate.batch_size": "merge.weight: auto",
    },
    "evaluate": {
        "evaluate.rrf_k": "evaluate.fusion: rrf",
    },
    "package": {
        "ingest.path": "ingest.source other than pydoc (the card names the data folder)",
    },
}

ALL_KEYS = list(params.leaf_keys())


def expand(entry: str) -> set[str]:
    """A dvc.yaml params entry -> the leaf keys it covers (a section covers all of its keys)."""
    keys = {k for k in ALL_KEYS if k == entry or k.startswith(entry + ".")}
    assert keys, f"dvc.yaml declares '{entry}', which is no param"
    return keys


def conditional(stage: str) -> set[str]:
    out = set()
    for entry in CONDITIONAL[stage]:
        out |= {k for k in ALL_KEYS if k == entry or (entry.endswith(".") and k.startswith(entry))}
    return out


@pytest.fixture
def traced(reproduced) -> tuple[dict, dict]:
    """(stage -> declared params entries, stage -> keys read) from the session's traced `dvc repro`."""
    stages = yaml.safe_load((reproduced.repo / "dvc.yaml").read_text())["stages"]
    return {name: s.get("params", []) for name, s in stages.items()}, reproduced.params_read


@pytest.mark.e2e
@pytest.mark.parametrize("stage", list(CONDITIONAL))
def test_stage_declares_exactly_the_params_it_reads(traced, stage):
    declared_entries, read_by = traced
    assert set(declared_entries) == set(CONDITIONAL), "a stage without a row in CONDITIONAL"
    read = read_by.get(stage, set())
    assert read, f"{stage} recorded no param read: did it run with the trace on?"
    declared = set().union(*(expand(e) for e in declared_entries[stage]))
    maybe = conditional(stage)
    assert sorted(read - declared) == [], f"{stage} reads params that dvc.yaml does not declare"
    assert sorted(maybe & read) == [], f"{stage} reads these in this run: drop them from CONDITIONAL"
    assert sorted(declared - read - maybe) == [], f"{stage} declares params it never reads"
    assert sorted(maybe - declared) == [], f"{stage} reads these under other settings: declare them"
