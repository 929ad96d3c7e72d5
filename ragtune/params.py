"""params.yaml: one schema, one loader, one error format.

The pydantic models below are the only place a param's default, type, choices or range is written.
Every stage validates the whole file at start, before any model loads, so a typo anywhere is caught by
the first stage that runs. Errors are one line: `params.yaml: mine.range_min: must be <= 200, got 500`.

A validated section reads like the dict it replaces, `params["mine"]["range_min"]` (or
`params.mine.range_min`); modules read keys directly and never supply a default of their own.
With $RAGTUNE_PARAMS_TRACE=<file>, a stage records every key it reads (see `trace_reads`).
"""
from __future__ import annotations

import atexit
import difflib
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .errors import UserError
from .language import ISO_639_1

FirstStageName = Literal["bm25", "dense:base", "dense:finetuned", "dense:merged", "hybrid"]
RerankerName = Literal["none", "base", "finetuned", "merged"]
FIRST_STAGES = typing.get_args(FirstStageName)
RERANKERS = typing.get_args(RerankerName)
TrainerName = Literal["embedder", "reranker"]
TRAINERS = typing.get_args(TrainerName)
TRACE_ENV = "RAGTUNE_PARAMS_TRACE"


def _yaml_float(value: Any) -> Any:
    # YAML 1.1 reads 5e-5 (no dot) as a string; users write it that way with `dvc exp run -S`.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


Num = Annotated[float, BeforeValidator(_yaml_float)]
Share = Annotated[Num, Field(ge=0.0, le=1.0)]
Cutoffs = list[Annotated[int, Field(ge=1)]]

# Keys read since trace_reads() started (None: not tracing).
_reads: set[str] | None = None


class Section(BaseModel):
    """A params.yaml mapping: unknown keys refused, types strict, item access like a dict."""
    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)
    _path: str = PrivateAttr("")  # dotted prefix of this section's keys, e.g. "ingest.llm."

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        return {} if data is None else data  # `prepare:` with nothing under it

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if _reads is not None and name in type(self).__pydantic_fields__ and not isinstance(value, Section):
            _reads.add(self._path + name)
        return value

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).__pydantic_fields__:
            raise KeyError(f"{self._path}{key}")
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __contains__(self, key: object) -> bool:
        return key in type(self).__pydantic_fields__

    def __iter__(self):  # like a dict: iterate over keys
        return iter(type(self).__pydantic_fields__)

    def __len__(self) -> int:
        return len(type(self).__pydantic_fields__)

    def __eq__(self, other: object) -> bool:  # equal to a dict with the same keys and values
        if isinstance(other, dict):
            return dict(self.items()) == other
        return super().__eq__(other)

    __hash__ = None  # mutable, like a dict

    def keys(self) -> list[str]:
        return list(type(self).__pydantic_fields__)

    def values(self) -> list[Any]:
        return [self[k] for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self[k]) for k in self.keys()]

    def update(self, other: dict | None = None, /, **kw: Any) -> None:
        """Set several keys at once, validated together (cross-key checks see the new values)."""
        data = {**self.model_dump(), **(other or {}), **kw}
        try:
            new = type(self).model_validate(data)
        except ValidationError as e:
            raise _one_line(e, type(self), self._path) from None
        for key in self.keys():
            object.__setattr__(self, key, new.__dict__[key])
        _name_sections(self, self._path)


class Llm(Section):
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    prompt: str = "Write {n} short search queries, one per line, that this passage answers.\n\nPassage:\n{passage}"
    temperature: Num = Field(0.0, ge=0.0, le=2.0)
    max_retries: int = Field(4, ge=0, le=20)
    timeout: Num = Field(60.0, ge=1.0)

    @model_validator(mode="after")
    def _prompt_has_passage(self) -> Llm:
        if "{passage}" not in self.prompt:
            raise _bad("ingest.llm.prompt", "must contain {passage} (and may use {n})")
        return self


class Conversation(Section):
    query_mode: Literal["last_turn", "last_n_turns", "rewrite", "llm_rewrite"] = "last_turn"
    last_n: int = Field(3, ge=1)
    rewrite_field: str = "rewrite"
    # query_mode llm_rewrite asks ingest.llm's endpoint with this prompt
    rewrite_prompt: str = ("Rewrite the last user question of this conversation as one standalone search query "
                           "that can be understood without the conversation. Answer with the query only."
                           "\n\nConversation:\n{conversation}")

    @model_validator(mode="after")
    def _prompt_has_conversation(self) -> Conversation:
        if "{conversation}" not in self.rewrite_prompt:
            raise _bad("ingest.conversation.rewrite_prompt", "must contain {conversation} (and may use {question})")
        return self


class Ingest(Section):
    source: Literal["pydoc", "beir", "documents", "conversations", "groups"] = "pydoc"
    path: str = Field("data/input", min_length=1)
    strict: bool = True
    max_passages: int = Field(1000, ge=10)
    max_queries: int = Field(400, ge=10)
    chunk_unit: Literal["chars", "tokens"] = "chars"
    chunk_size: int = Field(1000, ge=20)
    chunk_overlap: int = Field(200, ge=0)
    queries_per_chunk: int = Field(1, ge=1, le=20)
    generator: Literal["heuristic", "llm"] = "heuristic"
    llm: Llm = Field(default_factory=Llm)
    conversation: Conversation = Field(default_factory=Conversation)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Ingest:
        if self.chunk_overlap >= self.chunk_size:
            raise _bad("ingest.chunk_overlap", f"must be < ingest.chunk_size ({self.chunk_size}), "
                                               f"got {self.chunk_overlap}")
        return self


class Prepare(Section):
    val_fraction: Num = Field(0.1, ge=0.0, le=0.5)
    test_fraction: Num = Field(0.2, ge=0.0, le=0.9)
    group_by: Optional[str] = None
    test_split: Optional[str] = None
    train_queries: Optional[Annotated[int, Field(ge=0)]] = None

    @model_validator(mode="after")
    def _fractions_leave_train(self) -> Prepare:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise _bad("prepare.test_fraction", "val_fraction + test_fraction must be < 1")
        return self


class Mine(Section):
    first_stage: Literal["bm25", "dense", "hybrid"] = "bm25"
    range_min: int = Field(3, ge=0)
    range_max: int = Field(50, ge=1)
    num_negatives: int = Field(7, ge=1, le=200)
    relative_margin: Num = Field(0.05, ge=0.0, le=1.0)
    random_negatives: int = Field(0, ge=0, le=200)
    rrf_k: int = Field(60, ge=1)
    fusion: Literal["rrf", "wsum"] = "rrf"
    fusion_grid: list[Share] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    val_depth: int = Field(20, ge=1)
    rescore_with: Optional[str] = None
    rescore_threshold: Num = Field(0.5, ge=0.0, le=1.0)
    index: Literal["flat", "hnsw", "ivf"] = "flat"
    # judged non-relevant docs (qrels grade <= 0): first = before mined ones, only = no mining, ignore
    given_negatives: Literal["first", "only", "ignore"] = "first"

    @model_validator(mode="after")
    def _window_not_empty(self) -> Mine:
        if self.range_min >= self.range_max:
            raise _bad("mine.range_min", f"must be < mine.range_max ({self.range_max}), got {self.range_min}")
        return self


class Synthetic(Section):
    queries: int = Field(0, ge=0)
    top_k: int = Field(10, ge=1)
    trainers: list[TrainerName] = Field(list(TRAINERS), min_length=1)


class Embedder(Section):
    base: str = "sentence-transformers/all-MiniLM-L6-v2"
    max_seq_length: int = Field(128, ge=8, le=8192)
    batch_size: int = Field(32, ge=2)
    lr: Num = Field(5e-5, ge=0.0, le=1.0)
    warmup: Num = Field(0.1, ge=0.0, le=1.0)
    loss: Literal["mnrl", "cached_mnrl", "margin_mse", "distill_kl"] = "mnrl"
    mini_batch_size: int = Field(16, ge=1)
    matryoshka_dims: Optional[list[Annotated[int, Field(ge=1)]]] = []
    num_negatives: int = Field(1, ge=0, le=50)
    encode_batch_size: int = Field(64, ge=1)
    eval_steps: int = Field(0, ge=0)
    min_steps: int = Field(16, ge=0)
    attention_dropout: Optional[Share] = 0.0
    nproc: int = Field(1, ge=1)


class Reranker(Section):
    base: str = "sentence-transformers/all-MiniLM-L6-v2"
    max_length: int = Field(128, ge=16, le=8192)
    group_size: int = Field(4, ge=2, le=64)
    batch_size: int = Field(4, ge=1)
    lr: Num = Field(1e-4, ge=0.0, le=1.0)
    warmup: Num = Field(0.1, ge=0.0, le=1.0)
    random_negatives: int = Field(2, ge=0)
    eval_steps: int = Field(0, ge=0)
    val_negatives: int = Field(9, ge=1)
    distill_weight: Num = Field(0.0, ge=0.0)
    attention_dropout: Optional[Share] = None
    lora: bool = False
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_target_modules: list[str] = ["query", "key", "value", "dense"]
    nproc: int = Field(1, ge=1)


class Merge(Section):
    weight: Union[Share, Literal["auto"]] = 0.5
    grid: list[Share] = [0.0, 0.25, 0.5, 0.75, 1.0]


class Evaluate(Section):
    first_stages: list[FirstStageName] = list(FIRST_STAGES)
    rerankers: list[RerankerName] = list(RERANKERS)
    rerank_depth: int = Field(10, ge=1)
    rerank_alpha: Union[Share, Literal["auto"]] = "auto"
    alpha_grid: list[Share] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    retrieve_depth: int = Field(100, ge=1)
    rrf_k: int = Field(60, ge=1)
    fusion: Literal["rrf", "wsum"] = "wsum"
    fusion_grid: list[Share] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    batch_size: int = Field(64, ge=1)
    ndcg_cutoffs: Cutoffs = [1, 3, 5, 10, 100]
    mrr_cutoffs: Cutoffs = [1, 10, 100]
    recall_cutoffs: Cutoffs = [1, 3, 5, 10, 100]
    precision_cutoffs: Cutoffs = [1, 5, 10]
    hit_cutoffs: Cutoffs = [1, 5, 10]
    map_cutoff: int = Field(100, ge=1)
    group_field: Optional[str] = None
    significance: Literal["randomization", "ttest"] = "randomization"


class Security(Section):
    trust_remote_code: bool = False
    allow_pickle: bool = False


class Params(Section):
    """The whole of params.yaml."""
    seed: int = Field(42, ge=0)
    epochs: int = Field(1, ge=1, le=1000)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    inference_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    train_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    language: Literal[ISO_639_1] = "en"  # ISO 639-1 code of the corpus: BM25 stopwords, stemmer, tokens
    ingest: Ingest = Field(default_factory=Ingest)
    prepare: Prepare = Field(default_factory=Prepare)
    mine: Mine = Field(default_factory=Mine)
    synthetic: Synthetic = Field(default_factory=Synthetic)
    embedder: Embedder = Field(default_factory=Embedder)
    reranker: Reranker = Field(default_factory=Reranker)
    merge: Merge = Field(default_factory=Merge)
    evaluate: Evaluate = Field(default_factory=Evaluate)
    security: Security = Field(default_factory=Security)

    @model_validator(mode="after")
    def _every_trainer_has_data(self) -> Params:
        # With no real training query a trainer left out of synthetic.trainers would have nothing to learn.
        if self.prepare.train_queries == 0 and self.synthetic.queries > 0:
            left_out = [t for t in TRAINERS if t not in self.synthetic.trainers]
            if left_out:
                raise _bad("synthetic.trainers", f"prepare.train_queries is 0, so the synthetic queries are the "
                                                 f"only training data; list {' and '.join(left_out)} too")
        return self


# ---------------------------------------------------------------- one-line errors


def _bad(key: str, message: str) -> UserError:
    return UserError(f"params.yaml: {key}: {message}")


def _suggest(key: str, names: list[str]) -> str | None:
    """The key the user probably meant: a close spelling, or the abbreviation (learning_rate -> lr)."""
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return close[0]
    initials = "".join(word[:1] for word in key.lower().split("_"))
    return next((n for n in names if n == initials or "".join(w[:1] for w in n.split("_")) == key.lower()), None)


def _section_class(annotation: Any) -> type[Section] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, Section) else None


def _choices(annotation: Any) -> list[str]:
    """Every Literal value inside an annotation (list[Literal[...]], Union[..., Literal[...]])."""
    if typing.get_origin(annotation) is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return [c for arg in typing.get_args(annotation) for c in _choices(arg)]


def _locate(root: type[Section], loc: tuple, extra: bool) -> tuple[str, type[Section], str]:
    """(dotted key, the model holding it, its field name) for a pydantic error location."""
    model, parts, field = root, [], ""
    for i, part in enumerate(loc):
        sub = _section_class(model.__pydantic_fields__[field].annotation) if field else model
        if extra and i == len(loc) - 1:  # the unknown key itself
            model, field = sub or model, str(part)
            parts.append(field)
        elif sub is not None and isinstance(part, str) and part in sub.__pydantic_fields__:
            model, field = sub, part
            parts.append(part)
        # else: a list index or a union member's tag, not part of the key
    return ".".join(parts), model, field


_NOUNS = {"int": "an integer", "float": "a number", "string": "a string", "bool": "true/false",
          "list": "a list", "model": "a mapping of keys", "dict": "a mapping of keys"}


def _message(error: dict, model: type[Section], field: str, key: str) -> str:
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        names = list(model.__pydantic_fields__)
        close = _suggest(field, names)
        hint = f" (did you mean '{key[:len(key) - len(field)]}{close}'?)" if close else ""
        return f"unknown key{hint}; allowed: {', '.join(names)}"
    if kind == "literal_error":
        return f"unknown value {value!r}; allowed: {', '.join(_choices(model.__pydantic_fields__[field].annotation))}"
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
              "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}
    if kind in bounds:
        op, name = bounds[kind]
        return f"must be {op} {ctx[name]}, got {value}"
    noun = _NOUNS.get(kind.split("_")[0])
    if kind in ("model_type", "dict_type"):
        return "expected a mapping of keys"
    if noun and value is None:
        return f"must not be empty; expected {noun}"
    if noun:
        return f"expected {noun}, got {value!r}"
    return error["msg"]


def _pick(errors: list[dict]) -> dict:
    # A union (0.5 or 'auto') fails once per member: report the member that matches the input's type.
    if isinstance(errors[0]["input"], str):
        return next((e for e in errors if e["type"] == "literal_error"), errors[0])
    return next((e for e in errors if e["type"] != "literal_error"), errors[0])


def _one_line(err: ValidationError, root: type[Section], prefix: str = "") -> UserError:
    # Unknown keys first: a typo'd key explains the rest.
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    located = [(_locate(root, tuple(e["loc"]), e["type"] == "extra_forbidden"), e) for e in errors]
    (key, model, field), _ = located[0]
    chosen = _pick([e for (k, _, _), e in located if k == key])
    key = prefix + key if key else prefix.rstrip(".") or "(top level)"
    return _bad(key, _message(chosen, model, field, key))


def _name_sections(section: Section, path: str) -> None:
    section._path = path
    for key in section.keys():
        child = section.__dict__[key]
        if isinstance(child, Section):
            _name_sections(child, f"{path}{key}.")


# ---------------------------------------------------------------- entry points


def validate(data: Any) -> Params:
    """Validate a parsed params.yaml; missing keys take their defaults."""
    try:
        params = Params.model_validate(data)
    except ValidationError as e:
        raise _one_line(e, Params) from None
    _name_sections(params, "")
    return params


def load(path: str | Path = "params.yaml") -> Params:
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


def defaults() -> Params:
    return validate({})


def leaf_keys(model: type[Section] = Params, prefix: str = "") -> dict[str, Any]:
    """{dotted key: default} for every key a user can set."""
    out: dict[str, Any] = {}
    for name, info in model.__pydantic_fields__.items():
        sub = _section_class(info.annotation)
        if sub is not None:
            out.update(leaf_keys(sub, f"{prefix}{name}."))
        else:
            out[prefix + name] = info.get_default(call_default_factory=True)
    return out


def trace_reads(stage: str) -> None:
    """With $RAGTUNE_PARAMS_TRACE=<file>: from now on, record every param key this process reads, and
    append `<stage> <key>` lines to that file when it exits. The e2e test compares them with dvc.yaml."""
    global _reads
    target = os.environ.get(TRACE_ENV)
    if not target:
        return
    _reads = set()

    def write(reads: set[str] = _reads) -> None:
        with open(target, "a", encoding="utf-8") as f:
            f.writelines(f"{stage} {key}\n" for key in sorted(reads))

    atexit.register(write)
