"""Merge a fine-tuned model with its base by weighted averaging of their weights.

Method: LM-Cocktail (Xiao et al., 2023, "LM-Cocktail: Resilient Tuning of Language Models via Model
Merging", arXiv:2311.13534): merged = w * fine_tuned + (1 - w) * base, over the parameters both
models share. Unlike LM-Cocktail's own script we keep the fine-tuned folder's config, tokenizer and
pooling untouched (it forces CLS pooling on encoders; all-MiniLM-L6-v2 uses mean pooling).

Keys are matched modulo the architecture prefix, so a cross-encoder (`bert.encoder...`, `classifier.*`)
merges with a bi-encoder body (`encoder...`): the shared body is averaged and the fine-tuned head, which
the base lacks, is kept as trained.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .errors import UserError
from .io import atomic_output

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"


def load_state_dict(model_dir: str | Path) -> dict:
    from safetensors.torch import load_file

    path = Path(model_dir) / WEIGHTS
    if not path.is_file():
        raise UserError(f"{model_dir}: no {WEIGHTS} (merging needs safetensors weights)")
    return load_file(str(path))


def _key_map(finetuned_keys: list[str], base_keys: set[str]) -> dict[str, str]:
    """Map each fine-tuned key to the base key it corresponds to, stripping one leading prefix if needed."""
    mapping = {}
    for key in finetuned_keys:
        if key in base_keys:
            mapping[key] = key
            continue
        head, _, rest = key.partition(".")
        if rest in base_keys:  # e.g. "bert.encoder.x" (cross-encoder) vs "encoder.x" (bi-encoder body)
            mapping[key] = rest
    return mapping


def same_weights(model_dir: str | Path, base_dir: str | Path) -> bool:
    """True when every tensor of `model_dir` equals its counterpart in `base_dir`: a "fine-tuned" model
    that is its base bit for bit. False when either folder has no safetensors to compare."""
    if not (Path(model_dir) / WEIGHTS).is_file() or not (Path(base_dir) / WEIGHTS).is_file():
        return False
    model, base = load_state_dict(model_dir), load_state_dict(base_dir)
    mapping = _key_map(list(model), set(base))
    return len(mapping) == len(model) and all(
        model[k].shape == base[b].shape and bool((model[k] == base[b]).all()) for k, b in mapping.items())


def merge_state_dicts(finetuned: dict, base: dict, weight: float) -> tuple[dict, dict]:
    """Return (merged state dict, stats). `weight` is the fine-tuned model's share."""
    mapping = _key_map(list(finetuned), set(base))
    merged, kept, skipped_shape = {}, [], []
    for key, tensor in finetuned.items():
        base_key = mapping.get(key)
        if base_key is None:
            merged[key] = tensor
            kept.append(key)
            continue
        other = base[base_key]
        if other.shape != tensor.shape:
            merged[key] = tensor
            skipped_shape.append(key)
            continue
        if not tensor.is_floating_point():  # e.g. position_ids buffers: nothing to average
            merged[key] = tensor
            continue
        merged[key] = (weight * tensor.float() + (1.0 - weight) * other.float()).to(tensor.dtype).contiguous()
    if not mapping:
        raise UserError("merge: the fine-tuned model and its base share no parameters; is merge.base right?")
    stats = {"shared_keys": len(mapping), "finetuned_only_keys": len(kept),
             "shape_mismatch_keys": len(skipped_shape)}
    return merged, stats


def merge_models(finetuned_dir: str | Path, base_dir: str | Path, weight: float, out_dir: str | Path) -> dict:
    """Write `out_dir`: a copy of the fine-tuned folder whose weights are merged with the base's."""
    from safetensors.torch import save_file

    finetuned = load_state_dict(finetuned_dir)
    base = load_state_dict(base_dir)
    merged, stats = merge_state_dicts(finetuned, base, weight)
    with atomic_output(out_dir, is_dir=True) as tmp:
        shutil.copytree(finetuned_dir, tmp, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(WEIGHTS, "checkpoint-*", "*.bin"))
        save_file(merged, str(tmp / WEIGHTS), metadata={"format": "pt"})
    stats["weight"] = weight
    log.info("merged %s with base %s at weight %.2f -> %s (%d shared tensors, %d kept from fine-tuned only)",
             finetuned_dir, base_dir, weight, out_dir, stats["shared_keys"], stats["finetuned_only_keys"])
    return stats


def _embedder_scorer(finetuned_dir: str, groups: list[dict], params: dict):
    """Return (model, val_ndcg) for the embedder, loading the model once; val is scored as in training."""
    from sentence_transformers import SentenceTransformer

    from .embeddings import val_evaluator, val_samples
    from .models import pick_device

    cfg = params["embedder"]
    model = SentenceTransformer(str(finetuned_dir), device=pick_device(params["device"]),
                                trust_remote_code=params["security"]["trust_remote_code"])
    model.max_seq_length = cfg["max_seq_length"]
    body = model[0].auto_model
    evaluator = val_evaluator(val_samples(groups), name="val", batch_size=cfg["encode_batch_size"])

    def val_ndcg() -> float:
        return float(evaluator(model)["val_ndcg@10"])

    return body, val_ndcg


def _reranker_scorer(finetuned_dir: str, groups: list[dict], params: dict):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .models import pick_device
    from .rerank import val_ndcg as reranker_val_ndcg

    cfg, device = params["reranker"], pick_device(params["device"])
    trust = params["security"]["trust_remote_code"]
    tokenizer = AutoTokenizer.from_pretrained(str(finetuned_dir), trust_remote_code=trust)
    model = AutoModelForSequenceClassification.from_pretrained(str(finetuned_dir), trust_remote_code=trust
                                                               ).to(device).eval()

    def val_ndcg() -> float:
        return reranker_val_ndcg(model, tokenizer, groups, max_length=cfg["max_length"],
                                 batch_size=params["evaluate"]["batch_size"], device=device,
                                 n_negatives=cfg["val_negatives"])

    return model, val_ndcg


def pick_weight(kind: str, finetuned_dir: str, base_dir: str, val_path: Path, grid: list[float],
                params: dict) -> tuple[float, dict[str, float]]:
    """`merge.weight: auto`: the grid weight with the best val nDCG@10 (ties: the larger weight)."""
    from .io import read_groups

    groups = [g for g in read_groups(val_path) if g["neg"]]
    if not groups:
        raise UserError(f"{val_path}: no val groups with negatives; set merge.weight to a number")
    model, val_ndcg = (_embedder_scorer if kind == "embedder" else _reranker_scorer)(finetuned_dir, groups, params)
    finetuned, base = load_state_dict(finetuned_dir), load_state_dict(base_dir)
    own_keys = set(model.state_dict())
    scores: dict[str, float] = {}
    for weight in sorted(set(float(w) for w in grid)):
        merged, _ = merge_state_dicts(finetuned, base, weight)
        loadable = {k: v for k, v in merged.items() if k in own_keys}
        if not loadable:
            raise UserError(f"{finetuned_dir}: its weights do not match the loaded model; cannot score merges")
        model.load_state_dict(loadable, strict=False)
        scores[f"{weight:g}"] = round(val_ndcg(), 4)
        log.info("%s merge weight %.2f: val nDCG@10 %.4f", kind, weight, scores[f"{weight:g}"])
    best = max(scores, key=lambda w: (scores[w], float(w)))
    log.info("%s: merge.weight auto -> %s (val nDCG@10 %s)", kind, best, scores[best])
    return float(best), scores
