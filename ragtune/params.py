"""params.yaml: one schema, one loader, one error format.

Every stage validates the whole file at start, before any model loads, so a typo anywhere is caught
by the first stage that runs. Errors are one line: `params.yaml: mine.range_min: must be <= 200, got 500`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .language import ISO_639_1

FIRST_STAGES = ("bm25", "dense:base", "dense:finetuned", "dense:merged", "hybrid")
RERANKERS = ("none", "base", "finetuned", "merged")


@dataclass
class Spec:
    """One leaf param: its type(s), default, and allowed values or range."""
    types: tuple
    default: Any
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    item_choices: tuple | None = None  # for lists: allowed items
    help: str = ""

    def check(self, key: str, value: Any) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise _bad(key, f"must not be empty; allowed: {self.allowed()}")
        if float in self.types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, str) and float in self.types and str not in self.types:
            try:  # YAML reads 5e-5 (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) and bool not in self.types or not isinstance(value, self.types):
            raise _bad(key, f"expected {self.allowed()}, got {value!r}")
        if self.choices is not None and not isinstance(value, (int, float)) and value not in self.choices:
            raise _bad(key, f"unknown value {value!r}; allowed: {', '.join(map(str, self.choices))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and value < self.min:
                raise _bad(key, f"must be >= {self.min}, got {value}")
            if self.max is not None and value > self.max:
                raise _bad(key, f"must be <= {self.max}, got {value}")
        if isinstance(value, list) and self.item_choices is not None:
            for item in value:
                if item not in self.item_choices:
                    raise _bad(key, f"unknown value {item!r}; allowed: {', '.join(self.item_choices)}")
        return value

    def allowed(self) -> str:
        names = {int: "an integer", float: "a number", str: "a string", bool: "true/false",
                 list: "a list", dict: "a mapping"}
        desc = " or ".join(names.get(t, t.__name__) for t in self.types)
        if self.choices:
            desc += f" ({', '.join(map(str, self.choices))})"
        if self.min is not None or self.max is not None:
            desc += f" in [{self.min if self.min is not None else '-inf'}, " \
                    f"{self.max if self.max is not None else 'inf'}]"
        return desc


def _bad(key: str, message: str) -> UserError:
    return UserError(f"params.yaml: {key}: {message}")


INT, NUM, STR, BOOL, LIST = (int,), (float, int), (str,), (bool,), (list,)

SCHEMA: dict[str, Any] = {
    "seed": Spec(INT, 42, min=0),
    "epochs": Spec(INT, 1, min=1, max=1000),
    "device": Spec(STR, "auto", choices=("auto", "cpu", "cuda", "mps")),
    # formats (issue 15): the corpus language, an ISO 639-1 code (BM25 stopwords, stemmer, tokens)
    "language": Spec(STR, "en", choices=ISO_639_1, help="ISO 639-1 code of the corpus"),
    "ingest": {
        "source": Spec(STR, "pydoc", choices=("pydoc", "beir", "documents", "conversations", "groups")),
        "path": Spec(STR, "data/input", help="folder with your data (beir/documents/conversations); "
                                             "a dvc.yaml dependency, so edits to it rerun ingest"),
        "strict": Spec(BOOL, True),
        "max_passages": Spec(INT, 2000, min=10),
        "max_queries": Spec(INT, 600, min=10),
        "chunk_unit": Spec(STR, "chars", choices=("chars", "tokens")),
        "chunk_size": Spec(INT, 1000, min=20),
        "chunk_overlap": Spec(INT, 200, min=0),
        "queries_per_chunk": Spec(INT, 1, min=1, max=20),
        "generator": Spec(STR, "heuristic", choices=("heuristic", "llm")),
        "llm": {
            "base_url": Spec(STR, "http://127.0.0.1:8000/v1"),
            "model": Spec(STR, "gpt-4o-mini"),
            "api_key_env": Spec(STR, "OPENAI_API_KEY"),
            "prompt": Spec(STR, "Write {n} short search queries, one per line, that this passage "
                                "answers.\n\nPassage:\n{passage}"),
            "temperature": Spec(NUM, 0.0, min=0.0, max=2.0),
            "max_retries": Spec(INT, 4, min=0, max=20),
            "timeout": Spec(NUM, 60.0, min=1.0),
        },
        "conversation": {
            "query_mode": Spec(STR, "last_turn", choices=("last_turn", "last_n_turns", "rewrite", "llm_rewrite")),
            "last_n": Spec(INT, 3, min=1),
            "rewrite_field": Spec(STR, "rewrite"),
            # formats (issue 15): query_mode llm_rewrite asks ingest.llm's endpoint with this prompt
            "rewrite_prompt": Spec(STR, "Rewrite the last user question of this conversation as one standalone "
                                        "search query that can be understood without the conversation. Answer "
                                        "with the query only.\n\nConversation:\n{conversation}"),
        },
    },
    "prepare": {
        "val_fraction": Spec(NUM, 0.1, min=0.0, max=0.5),
        "test_fraction": Spec(NUM, 0.2, min=0.0, max=0.9),
        "group_by": Spec(STR, None, nullable=True, help="metadata key: no group in two splits; null: "
                                                        "conversation_id when every query has one"),
        "test_split": Spec(STR, None, nullable=True, help="source split to evaluate on (e.g. dev); null: "
                                                          "the source's test split, else carved"),
    },
    "mine": {
        "first_stage": Spec(STR, "bm25", choices=("bm25", "dense", "hybrid")),
        "range_min": Spec(INT, 3, min=0),
        "range_max": Spec(INT, 50, min=1),
        "num_negatives": Spec(INT, 7, min=1, max=200),
        "relative_margin": Spec(NUM, 0.05, min=0.0, max=1.0),
        "random_negatives": Spec(INT, 0, min=0, max=200),
        "rrf_k": Spec(INT, 60, min=1),
        "val_depth": Spec(INT, 20, min=1, help="first-stage candidates per val query (checkpoint selection)"),
        "rescore_with": Spec(STR, None, nullable=True, help="cross-encoder to drop likely false negatives"),
        "rescore_threshold": Spec(NUM, 0.5, min=0.0, max=1.0),
        "index": Spec(STR, "flat", choices=("flat", "hnsw", "ivf")),
        # formats (issue 15): judged non-relevant documents (qrels grade <= 0) as negatives
        "given_negatives": Spec(STR, "first", choices=("first", "only", "ignore"),
                                help="first: judged non-relevant docs before mined ones; only: no mining; "
                                     "ignore: like any other doc"),
    },
    "embedder": {
        "base": Spec(STR, "sentence-transformers/all-MiniLM-L6-v2"),
        "max_seq_length": Spec(INT, 128, min=8, max=8192),
        "batch_size": Spec(INT, 32, min=2),
        "lr": Spec(NUM, 5e-5, min=0.0, max=1.0),
        "warmup": Spec(NUM, 0.1, min=0.0, max=1.0),
        "loss": Spec(STR, "mnrl", choices=("mnrl", "cached_mnrl")),
        "mini_batch_size": Spec(INT, 16, min=1),
        "matryoshka_dims": Spec(LIST, [], nullable=True),
        "num_negatives": Spec(INT, 1, min=0, max=50),
        "encode_batch_size": Spec(INT, 64, min=1),
        "eval_steps": Spec(INT, 0, min=0, help="score val (and checkpoint) every N steps; 0 = once per epoch"),
        "nproc": Spec(INT, 1, min=1, help="training processes (torch DDP: GPUs, or CPU processes); "
                                          "batch_size is per process"),
    },
    "reranker": {
        "base": Spec(STR, "sentence-transformers/all-MiniLM-L6-v2"),
        "max_length": Spec(INT, 256, min=16, max=8192),
        "group_size": Spec(INT, 8, min=2, max=64),
        "batch_size": Spec(INT, 4, min=1),
        "lr": Spec(NUM, 6e-5, min=0.0, max=1.0),
        "warmup": Spec(NUM, 0.1, min=0.0, max=1.0),
        "random_negatives": Spec(INT, 2, min=0),
        "eval_steps": Spec(INT, 0, min=0, help="also pick the best checkpoint every N steps; 0 = per epoch"),
        "val_negatives": Spec(INT, 9, min=1, help="val: rank positives + the first N mined negatives"),
        "lora": Spec(BOOL, False),
        "lora_r": Spec(INT, 16, min=1),
        "lora_alpha": Spec(INT, 32, min=1),
        "lora_target_modules": Spec(LIST, ["query", "key", "value", "dense"]),
        "nproc": Spec(INT, 1, min=1, help="training processes (torch DDP: GPUs, or CPU processes); "
                                          "batch_size is per process"),
    },
    "merge": {
        "weight": Spec((float, int, str), 0.5, choices=("auto",), min=0.0, max=1.0),
        "grid": Spec(LIST, [0.0, 0.25, 0.5, 0.75, 1.0]),
    },
    "evaluate": {
        "first_stages": Spec(LIST, list(FIRST_STAGES), item_choices=FIRST_STAGES),
        "rerankers": Spec(LIST, list(RERANKERS), item_choices=RERANKERS),
        "rerank_depth": Spec(INT, 20, min=1),
        "rerank_alpha": Spec((float, int, str), "auto", choices=("auto",), min=0.0, max=1.0,
                             help="reranker share when interpolating with the first stage (1 = pure "
                                  "reranker); auto = best on val from alpha_grid"),
        "alpha_grid": Spec(LIST, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
        "retrieve_depth": Spec(INT, 100, min=1),
        "rrf_k": Spec(INT, 60, min=1),
        "batch_size": Spec(INT, 64, min=1),
        "ndcg_cutoffs": Spec(LIST, [1, 3, 5, 10, 100]),
        "mrr_cutoffs": Spec(LIST, [1, 10, 100]),
        "recall_cutoffs": Spec(LIST, [1, 3, 5, 10, 100]),
        "precision_cutoffs": Spec(LIST, [1, 5, 10]),
        "hit_cutoffs": Spec(LIST, [1, 5, 10]),
        "map_cutoff": Spec(INT, 100, min=1),
        "group_field": Spec(STR, None, nullable=True),
        "significance": Spec(STR, "randomization", choices=("randomization", "ttest")),
    },
    "security": {
        "trust_remote_code": Spec(BOOL, False),
        "allow_pickle": Spec(BOOL, False),
    },
}


def _validate(schema: dict, data: Any, prefix: str) -> dict:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _bad(prefix.rstrip(".") or "(top level)", "expected a mapping of keys")
    out: dict[str, Any] = {}
    for key in data:
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise _bad(f"{prefix}{key}", f"unknown key{hint}; allowed: {', '.join(schema)}")
    for key, spec in schema.items():
        if isinstance(spec, dict):
            out[key] = _validate(spec, data.get(key), f"{prefix}{key}.")
        elif key in data:
            out[key] = spec.check(f"{prefix}{key}", data[key])
        else:
            out[key] = spec.default if not isinstance(spec.default, list) else list(spec.default)
    return out


def _cross_checks(p: dict) -> None:
    m = p["mine"]
    if m["range_min"] >= m["range_max"]:
        raise _bad("mine.range_min", f"must be < mine.range_max ({m['range_max']}), got {m['range_min']}")
    i = p["ingest"]
    if i["chunk_overlap"] >= i["chunk_size"]:
        raise _bad("ingest.chunk_overlap", f"must be < ingest.chunk_size ({i['chunk_size']}), "
                                           f"got {i['chunk_overlap']}")
    pr = p["prepare"]
    if pr["val_fraction"] + pr["test_fraction"] >= 1.0:
        raise _bad("prepare.test_fraction", "val_fraction + test_fraction must be < 1")
    for name in ("ndcg_cutoffs", "mrr_cutoffs", "recall_cutoffs", "precision_cutoffs", "hit_cutoffs"):
        for c in p["evaluate"][name]:
            if not isinstance(c, int) or isinstance(c, bool) or c < 1:
                raise _bad(f"evaluate.{name}", f"cutoffs must be positive integers, got {c!r}")
    for w in p["evaluate"]["alpha_grid"]:
        if not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
            raise _bad("evaluate.alpha_grid", f"values must be numbers in [0, 1], got {w!r}")
    for w in p["merge"]["grid"]:
        if not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
            raise _bad("merge.grid", f"weights must be numbers in [0, 1], got {w!r}")
    for d in p["embedder"]["matryoshka_dims"] or []:
        if not isinstance(d, int) or d < 1:
            raise _bad("embedder.matryoshka_dims", f"dims must be positive integers, got {d!r}")


def validate(data: Any) -> dict:
    params = _validate(SCHEMA, data, "")
    _cross_checks(params)
    return params


def load(path: str | Path = "params.yaml") -> dict:
    """Read and validate params.yaml; missing keys take their defaults."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{line}: invalid YAML: {getattr(e, 'problem', e)}") from None
    return validate(raw)


def defaults() -> dict:
    return validate({})
