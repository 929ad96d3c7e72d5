"""Model cards in the Hugging Face format (YAML front matter + markdown) for the four model folders.

Everything a card says comes from this run's params and the metrics files the earlier stages wrote, so
a card cannot drift from the model it describes. A card never holds an absolute path, a secret (none is
ever in params or metrics) or query text: only names the user gave, counts and scores.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from .io import read_json
from .report import _table as markdown_table
from .report import rerank_shares

MODELS = ("embedder", "reranker", "embedder-merged", "reranker-merged")
# The metrics files a card reads (all under metrics/), by the name the card code uses.
FACT_FILES = {"ingest": "ingest.json", "splits": "splits.json", "mining": "mining.json",
              "train_embedder": "train_embedder.json", "train_reranker": "train_reranker.json",
              "merge": "merge.json", "eval": "eval.json", "rerank_alpha": "rerank_alpha.json"}
TABLE_METRICS = ("nDCG@10", "MRR@10", "R@10", "R@100", "MAP@100")
# Hugging Face's metric type names (the keys of the hub's evaluation-results schema).
_METRIC_TYPES = {"nDCG": "ndcg", "MRR": "mrr", "R": "recall", "P": "precision", "MAP": "map", "Hit": "hit",
                 "F1": "f1"}
_LOSSES = {"mnrl": "MultipleNegativesRankingLoss (in-batch and hard negatives)",
           "cached_mnrl": "CachedMultipleNegativesRankingLoss (in-batch and hard negatives, gradient cache)"}
_SOURCES = {"pydoc": "the built-in demo corpus: Python's standard-library documentation with heuristic queries",
            "beir": "a BEIR-format folder (corpus, queries, relevance judgments)",
            "documents": "raw documents, chunked into passages, with generated queries",
            "conversations": "multi-turn conversations with judged user turns"}


def read_facts(metrics_dir: str | Path) -> dict:
    """The metrics files of this run, keyed as in FACT_FILES."""
    return {key: read_json(Path(metrics_dir) / name) for key, name in FACT_FILES.items()}


def hub_name(name: str) -> str | None:
    """The base model's name for the card: a hub id as the user gave it; None for a local folder (its path
    says where it lay on this machine, which means nothing elsewhere and must not ship)."""
    if Path(name).expanduser().is_dir() or name.startswith((".", "/", "~")) or "\\" in name:
        return None
    return name


def _base_text(name: str) -> str:
    hub = hub_name(name)
    return f"[`{hub}`](https://huggingface.co/{hub})" if hub else "a local model folder (not on the hub)"


def dataset_name(ingest: dict) -> str:
    """A short name for the training data: the demo's name, or the data folder's name (never its path)."""
    if ingest["source"] == "pydoc":
        return "ragtune-pydoc-demo"
    return Path(str(ingest["path"]).rstrip("/\\")).name or ingest["source"]


def systems_of(model: str, results: dict) -> list[str]:
    """The evaluated systems this model takes part in, in eval.json's order."""
    kind, _, merged = model.partition("-")
    role = "merged" if merged else "finetuned"
    if kind == "embedder":
        return [s for s in results if s.split(" + ")[0] == f"dense:{role}"]
    return [s for s in results if s.endswith(f" + rerank:{role}")]


def baselines_of(model: str, results: dict) -> list[str]:
    """The systems to compare with: the base embedder, or each first stage without the reranker."""
    if model.startswith("embedder"):
        return [s for s in ("dense:base",) if s in results]
    firsts = [s.split(" + ")[0] for s in systems_of(model, results)]
    return [s for s in firsts if s in results]


def metric_type(name: str) -> str:
    """`nDCG@10` -> `ndcg_at_10` (the hub's naming); unknown families are lower-cased."""
    family, _, k = name.partition("@")
    base = _METRIC_TYPES.get(family, re.sub(r"\W+", "_", family).lower())
    return f"{base}_at_{k}" if k else base


def _model_index(model: str, params: dict, facts: dict) -> list[dict]:
    results = facts["eval"]
    task = ({"type": "sentence-similarity", "name": "Retrieval"} if model.startswith("embedder")
            else {"type": "text-ranking", "name": "Reranking"})
    dataset = {"name": dataset_name(params["ingest"]), "type": dataset_name(params["ingest"]), "split": "test"}
    entries = []
    for system in systems_of(model, results):
        # The headline metrics only (eval.json has ~25 per system); values exactly as eval.json has them.
        metrics = [{"type": metric_type(m), "value": results[system][m], "name": f"{m} ({system})"}
                   for m in TABLE_METRICS if isinstance(results[system].get(m), (int, float))]
        entries.append({"task": dict(task), "dataset": dict(dataset), "metrics": metrics})
    return [{"name": model, "results": entries}]


def front_matter(model: str, params: dict, facts: dict) -> dict:
    kind = model.split("-")[0]
    base = hub_name(params[kind]["base"])
    fm: dict = {}
    if base:
        fm["base_model"] = base
    if kind == "embedder":
        fm["library_name"] = "sentence-transformers"
        fm["pipeline_tag"] = "sentence-similarity"
        tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "retrieval"]
    else:
        # The folder is a plain transformers sequence-classification model: sentence-transformers'
        # CrossEncoder and FlagEmbedding's FlagReranker both load it; the hub's widget runs it as
        # text-ranking through sentence-transformers.
        fm["library_name"] = "sentence-transformers"
        fm["pipeline_tag"] = "text-ranking"
        tags = ["sentence-transformers", "cross-encoder", "reranker", "text-ranking", "flagembedding"]
    tags += ["ragtune"] + (["merge", "lm-cocktail"] if model.endswith("-merged") else [])
    fm["tags"] = tags
    fm["license"] = None  # the user's to fill: it depends on the base model's and the data's licenses
    fm["model-index"] = _model_index(model, params, facts)
    return fm


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _pooling(model_dir: Path) -> tuple[str, bool]:
    """(pooling mode, normalised?) of a sentence-transformers folder, for the plain-transformers recipe."""
    mode, normalize = "mean", False
    modules = model_dir / "modules.json"
    for module in (read_json(modules) if modules.is_file() else []):
        kind = module.get("type", "")
        if kind.endswith("Normalize"):
            normalize = True
        if kind.endswith("Pooling"):
            config = model_dir / module.get("path", "") / "config.json"
            cfg = read_json(config) if config.is_file() else {}
            mode = next((re.sub(r"_tokens?$", "", k[len("pooling_mode_"):]) for k, v in cfg.items()
                         if k.startswith("pooling_mode_") and v is True), mode)
    return mode, normalize


def _data_lines(params: dict, facts: dict) -> list[str]:
    ingest, splits, mining, m = facts["ingest"], facts["splits"], facts["mining"], params["mine"]
    sizes = ", ".join(f"{s} {splits[s]['queries']}" for s in ("train", "val", "test") if s in splits)
    extra = f", plus {m['random_negatives']} random negatives" if m["random_negatives"] else ""
    group = f", grouped by `{splits['group_by']}` so no group is in two splits" if splits.get("group_by") else ""
    return [
        f"- **Training data:** {_SOURCES.get(ingest['source'], ingest['source'])} "
        f"(`{dataset_name(params['ingest'])}`): {ingest.get('documents')} passages, {ingest.get('queries')} "
        f"judged queries.",
        f"- **Splits** (queries, seed {params['seed']}): {sizes}{group}. Every choice (best checkpoint, merge "
        f"weight, reranker interpolation) was made on val; test was only scored.",
        f"- **Hard negatives:** mined with `{m['first_stage']}` from {mining.get('window')}, "
        f"{m['num_negatives']} per query, dropping candidates within a relative margin of "
        f"{m['relative_margin']} of the positive's score (likely unjudged positives)"
        f"{extra}; "
        f"{mining.get('groups')} training groups.",
    ]


def _training_lines(kind: str, params: dict, facts: dict) -> list[str]:
    cfg, s = params[kind], facts[f"train_{kind}"]
    if kind == "embedder":
        how = (f"sentence-transformers `SentenceTransformerTrainer`, {_LOSSES.get(cfg['loss'], cfg['loss'])}, "
               f"{cfg['num_negatives']} hard negative(s) per row, no-duplicates batches; batch size "
               f"{s.get('effective_batch_size', cfg['batch_size'])}, lr {cfg['lr']:g}, warmup {cfg['warmup']:g}, "
               f"max_seq_length {cfg['max_seq_length']}")
    else:
        how = (f"FlagEmbedding encoder-only reranker training (starting from "
               f"{'a cross-encoder' if s.get('start') == 'cross-encoder' else 'the bi-encoder body with a fresh 1-logit head'}), "
               f"listwise cross-entropy over groups of 1 positive + {cfg['group_size'] - 1} negatives; "
               f"{s.get('effective_batch_size', cfg['batch_size'])} groups per step, lr {cfg['lr']:g}, "
               f"max_length {cfg['max_length']}{', LoRA (merged into the weights)' if cfg['lora'] else ''}")
    chosen = f"the checkpoint at step {s.get('best_step')} (best val nDCG@10)"
    before, best = s.get("val_ndcg@10_before"), s.get("val_ndcg@10_best")
    if before is not None and best is not None and best <= before:
        chosen += (". **Fine-tuning did not beat the base model on val**; this checkpoint is shipped so that its "
                   "test scores can be compared, but the base model may serve you better")
    return [
        f"- **Training:** {how}; {s.get('epochs')} epoch(s), {s.get('steps')} steps.",
        f"- **Val nDCG@10:** {_num(s.get('val_ndcg@10_before'))} before training"
        f"{' (a fresh head is not scored)' if s.get('val_ndcg@10_before') is None else ''}, "
        f"{_num(s.get('val_ndcg@10_best'))} for the saved model: {chosen}.",
    ]


def _merge_lines(kind: str, facts: dict) -> list[str]:
    m = facts["merge"][kind]
    by_weight = m.get("val_ndcg@10_by_weight")
    picked = (f" (picked on val from {', '.join(f'{w}: {_num(v)}' for w, v in by_weight.items())})"
              if by_weight else " (set in params)")
    return [f"- **Merge (LM-Cocktail):** weights = {m['weight']:g} x fine-tuned + {1 - m['weight']:g} x base, "
            f"over the {m.get('shared_keys')} tensors both share{picked}; the fine-tuned model's config, "
            f"tokenizer and head are kept."]


def _results_section(model: str, facts: dict) -> str:
    results = facts["eval"]
    own, base = systems_of(model, results), baselines_of(model, results)
    if not own:
        return "## Test results\n\nThis model was not part of any evaluated system (see `evaluate.*` in params).\n"
    shown = [m for m in TABLE_METRICS if m in results[own[0]]]
    rows = [[f"**{s}**" if s in own else s] + [f"{results[s][m]:.4f}" for m in shown] for s in base + own]
    n_test = facts["splits"].get("test", {}).get("queries")
    lines = [f"## Test results\n\nOn the held-out test split ({n_test} queries), every number from pytrec_eval "
             f"(trec_eval). Rows in bold use this model; the others are for comparison.\n",
             markdown_table(["System"] + shown, rows)]
    if not model.startswith("embedder"):
        role = "merged" if model.endswith("-merged") else "finetuned"
        chosen = facts["rerank_alpha"].get(role, {})
        if chosen.get("alpha"):
            lines.append(f"\nReranked scores were interpolated with the first stage's (min-max per query): "
                         f"alpha x reranker + (1 - alpha) x first stage, alpha per first stage {rerank_shares(chosen)}.")
    return "\n".join(lines) + "\n"


_EMBEDDER_USE = '''```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{path}")  # or the hub id you uploaded it to
queries = model.encode(["your question"])
passages = model.encode(["a passage that may answer it", "another passage"])
print(model.similarity(queries, passages))  # cosine similarity{normalized}
```

Plain transformers ({pooling} pooling{norm_step}, as this folder's `modules.json` says):

```python
import torch
from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{path}")
model = AutoModel.from_pretrained("{path}")
batch = tokenizer(["your question"], padding=True, truncation=True, max_length={max_len}, return_tensors="pt")
with torch.no_grad():
    tokens = model(**batch).last_hidden_state
{pool_code}
```
'''
_POOL_CODE = {
    "mean": "mask = batch[\"attention_mask\"].unsqueeze(-1).float()\n"
            "embeddings = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)",
    "cls": "embeddings = tokens[:, 0]",
    "max": "mask = batch[\"attention_mask\"].unsqueeze(-1).bool()\n"
           "embeddings = tokens.masked_fill(~mask, -1e9).max(1).values",
}
_RERANKER_USE = '''```python
from sentence_transformers import CrossEncoder

model = CrossEncoder("{path}", max_length={max_len})  # or the hub id you uploaded it to
scores = model.predict([("your question", "a passage"), ("your question", "another passage")])
ranking = model.rank("your question", ["a passage", "another passage"])
```

```python
from FlagEmbedding import FlagReranker

reranker = FlagReranker("{path}", use_fp16=False, max_length={max_len})
scores = reranker.compute_score([["your question", "a passage"], ["your question", "another passage"]])
```

Plain transformers (one relevance logit per pair; higher is more relevant):

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{path}")
model = AutoModelForSequenceClassification.from_pretrained("{path}").eval()
batch = tokenizer(["your question"], ["a passage"], padding=True, truncation=True, max_length={max_len},
                  return_tensors="pt")
with torch.no_grad():
    scores = model(**batch).logits[:, 0]
```

`CrossEncoder.predict` applies a sigmoid to the logit and `FlagReranker.compute_score` returns it raw
(`normalize=True` for the sigmoid): the ranking is the same.
'''


def _usage(model: str, params: dict, model_dir: Path, path: str) -> str:
    if model.startswith("embedder"):
        pooling, normalize = _pooling(model_dir)
        code = _POOL_CODE.get(pooling, _POOL_CODE["mean"])
        if normalize:
            code += "\nembeddings = torch.nn.functional.normalize(embeddings, dim=-1)"
        text = _EMBEDDER_USE.format(path=path, max_len=params["embedder"]["max_seq_length"], pooling=pooling,
                                    normalized="; embeddings are unit length" if normalize else "",
                                    norm_step=", then unit length" if normalize else "", pool_code=code)
    else:
        text = _RERANKER_USE.format(path=path, max_len=params["reranker"]["max_length"])
    return "## How to use\n\n" + text


def _details(model: str, model_dir: Path) -> str:
    """Model details read from the folder itself: architecture, size, sequence length, similarity."""
    config = read_json(model_dir / "config.json") if (model_dir / "config.json").is_file() else {}
    arch = ", ".join(config.get("architectures") or [config.get("model_type", "?")])
    rows = [f"- **Architecture:** {arch}, {config.get('num_hidden_layers', '?')} layers, hidden size "
            f"{config.get('hidden_size', '?')}, vocabulary {config.get('vocab_size', '?')}"]
    if model.startswith("embedder"):
        pooling, normalize = _pooling(model_dir)
        # sentence-transformers 6 keeps the length in the tokenizer's config (older folders: sentence_bert_config).
        max_len = next((read_json(f).get(key) for f, key in (
            (model_dir / "sentence_bert_config.json", "max_seq_length"),
            (model_dir / "tokenizer_config.json", "model_max_length")) if f.is_file() and read_json(f).get(key)),
            "?")
        sim_file = model_dir / "config_sentence_transformers.json"
        sim = (read_json(sim_file).get("similarity_fn_name") if sim_file.is_file() else None) or "cosine"
        rows += [f"- **Modules:** transformer -> {pooling} pooling{' -> normalize' if normalize else ''}",
                 f"- **Output:** {config.get('hidden_size', '?')}-dimensional vectors, {sim} similarity",
                 f"- **Max sequence length:** {max_len} tokens (longer input is truncated)"]
    else:
        rows += [f"- **Output:** {config.get('num_labels', 1)} relevance logit per (query, passage) pair"]
    return "## Model details\n\n" + "\n".join(rows) + "\n"


def _versions() -> str:
    """The library versions that made the model (read from package metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    rows = []
    for name in ("torch", "transformers", "sentence-transformers", "FlagEmbedding", "safetensors"):
        try:
            rows.append(f"- {name} {version(name)}")
        except PackageNotFoundError:
            continue
    return "## Framework versions\n\n" + "\n".join(rows) + "\n"


_CITATIONS = {
    "embedder": ["Reimers and Gurevych, *Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks*, "
                 "EMNLP 2019, arXiv:1908.10084",
                 "Henderson et al., *Efficient Natural Language Response Suggestion for Smart Reply* "
                 "(MultipleNegativesRankingLoss), 2017, arXiv:1705.00652"],
    "reranker": ["Xiao et al., *C-Pack: Packaged Resources To Advance General Chinese Embedding* "
                 "(FlagEmbedding, BGE rerankers), 2023, arXiv:2309.07597"],
    "merged": ["Xiao et al., *LM-Cocktail: Resilient Tuning of Language Models via Model Merging*, 2023, "
               "arXiv:2311.13534"],
}


def _citations(model: str) -> str:
    refs = _CITATIONS[model.split("-")[0]] + (_CITATIONS["merged"] if model.endswith("-merged") else [])
    return "## Citations\n\n" + "\n".join(f"- {r}" for r in refs) + "\n"


def _intro(model: str, params: dict) -> str:
    kind = model.split("-")[0]
    what = ("A bi-encoder **embedder** (sentence-transformers) for first-stage dense retrieval: it maps "
            "queries and passages to vectors compared by cosine similarity."
            if kind == "embedder" else
            "A cross-encoder **reranker**: it reads a (query, passage) pair and returns one relevance "
            "score, to reorder a first stage's top candidates.")
    how = (f"It is {_base_text(params[kind]['base'])} fine-tuned with ragtune "
           f"(a DVC pipeline)" + (", then merged with its base (weight averaging)." if model.endswith("-merged")
                                  else "."))
    return f"# ragtune {model}\n\n{what} {how}\n"


def model_card(model: str, params: dict, facts: dict, model_dir: str | Path, path: str) -> str:
    """The README.md of one model folder: front matter, how it was made, test results, how to use it.

    `path` is the folder as the usage examples name it (a relative path, never this machine's absolute one).
    """
    kind = model.split("-")[0]
    made = [f"- **Base model:** {_base_text(params[kind]['base'])}"]
    made += _data_lines(params, facts) + _training_lines(kind, params, facts)
    if model.endswith("-merged"):
        made += _merge_lines(kind, facts)
    fm = yaml.safe_dump(front_matter(model, params, facts), sort_keys=False, allow_unicode=True)
    fm = fm.replace("\nlicense: null\n", "\nlicense: null  # yours to fill (e.g. apache-2.0): mind the base "
                                         "model's and the training data's licenses\n", 1)
    parts = [f"---\n{fm}---\n", _intro(model, params), _details(model, Path(model_dir)),
             "## How it was made\n\n" + "\n".join(made) + "\n", _results_section(model, facts),
             _usage(model, params, Path(model_dir), path), _versions(), _citations(model)]
    return "\n".join(parts)
