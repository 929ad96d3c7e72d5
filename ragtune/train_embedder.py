"""Fine-tune the bi-encoder with sentence-transformers' trainer on mined groups.

Train rows: one per (query, positive) with `num_negatives` hard negatives as extra columns
(anchor, positive, negative_1..n), loss MultipleNegativesRankingLoss (in-batch + hard negatives) or its
cached variant (a large effective batch of in-batch negatives at small memory; gradient accumulation
would not add in-batch negatives). Batches never hold the same text twice (NO_DUPLICATES), so a query
with several positives never meets itself and no hard negative doubles as another row's positive.

Validation is reranking-style: each val query's pos + neg texts are ranked by cosine similarity and
scored with nDCG@10, so an evaluation costs one encode of those texts, never of the whole corpus.
The base model is scored before training; the best checkpoint (by that score) is what we save.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

from . import distributed
from .embeddings import model_fingerprint, val_evaluator, val_samples
from .errors import UserError
from .io import BASE_VAL_METRICS, DISTILL_LOSSES, TEACHER_TEMPERATURE, atomic_output, read_groups, read_json
from .tracking import open_live, quiet_progress, step_callback
from .training import Clock, checkpoint_step, clear_checkpoints, last_checkpoint, passes_per_epoch, run_stats

log = logging.getLogger(__name__)

VAL_NAME = "val"
METRIC = f"eval_{VAL_NAME}_ndcg@10"  # the key the trainer logs for the evaluator's nDCG@10


def build_rows(groups: list[dict], num_negatives: int, labels: bool = False
               ) -> tuple[dict[str, list], dict[str, int]]:
    """Columns anchor, positive, negative_1..n: one row per (query, positive); with `labels`, also
    "label" = the teacher's scores of [positive, negative_1..n] (groups' pos_scores / neg_scores).

    A group with fewer negatives than `num_negatives` reuses its own negatives cyclically (still hard,
    still from the right query); a group with none cannot fill the columns and its rows are dropped.
    The k-th positive of a query starts at negative k*n, so several positives spread over the mined list.
    """
    columns: dict[str, list[str]] = {"anchor": [], "positive": []}
    for j in range(1, num_negatives + 1):
        columns[f"negative_{j}"] = []
    if labels:
        columns["label"] = []
    counts = {"rows": 0, "rows_padded": 0, "rows_dropped_no_negatives": 0, "groups_dropped_no_negatives": 0}
    for group in groups:
        negs = group["neg"]
        if num_negatives and not negs:
            counts["groups_dropped_no_negatives"] += 1
            counts["rows_dropped_no_negatives"] += len(group["pos"])
            continue
        for k, pos in enumerate(group["pos"]):
            columns["anchor"].append(group["query"])
            columns["positive"].append(pos)
            picks = [(k * num_negatives + j) % len(negs) for j in range(num_negatives)]
            for j, i in enumerate(picks):
                columns[f"negative_{j + 1}"].append(negs[i])
            if labels:
                columns["label"].append([group["pos_scores"][k]] + [group["neg_scores"][i] for i in picks])
            counts["rows"] += 1
            if num_negatives > len(negs):
                counts["rows_padded"] += 1
    return columns, counts


def _make_loss(model, cfg: dict, gather: bool = False):
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        DistillKLDivLoss,
        MarginMSELoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.util import pairwise_cos_sim

    # gather: with N processes, every query also meets the other processes' passages as in-batch
    # negatives, as one process with an N x batch_size batch would.
    if cfg["loss"] == "margin_mse":
        # GPL: student cosine margins regress onto the teacher's (both on about a [0, 1] scale).
        loss = MarginMSELoss(model, similarity_fct=pairwise_cos_sim)
    elif cfg["loss"] == "distill_kl":
        # Listwise: the student's softmax over [pos, negatives] (cosine / 0.05, MNRL's scale 20) toward
        # the teacher's softmax at TEACHER_TEMPERATURE.
        loss = DistillKLDivLoss(model, similarity_fct=pairwise_cos_sim, student_temperature=0.05,
                                teacher_temperature=TEACHER_TEMPERATURE)
    elif cfg["loss"] == "cached_mnrl":
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=cfg["mini_batch_size"],
                                                  gather_across_devices=gather)
    else:
        loss = MultipleNegativesRankingLoss(model, gather_across_devices=gather)
    dims = list(cfg["matryoshka_dims"] or [])
    if dims:
        full = model.get_embedding_dimension()
        if any(d > full for d in dims):
            raise UserError(f"params.yaml: embedder.matryoshka_dims: {dims} exceeds the model's "
                            f"embedding size {full}")
        loss = MatryoshkaLoss(model, loss, matryoshka_dims=sorted(dims, reverse=True))
    return loss


def train_embedder(*, base: str, train_path: Path, val_path: Path, out_dir: Path, cfg: dict, epochs: int,
                   seed: int, device: str, checkpoint_dir: Path, live_dir: Path | None,
                   resume: bool = False, security: Mapping[str, bool], inference_dtype: str = "float32",
                   train_dtype: str = "float32", synthetic: bool = True) -> dict | None:
    """Fine-tune `base` (the model name from params) and save the best checkpoint on val to `out_dir`;
    train in `train_dtype` mixed precision and encode val in `inference_dtype` (each as params' picked for
    the device: ragtune.models.pick_train_dtype, pick_inference_dtype).

    Returns the run's statistics (rows, steps, val nDCG@10 of the base and of the saved model, timings).
    If no checkpoint beats the base on val, the best checkpoint is still saved (so `evaluate` shows
    what fine-tuning did) and the stats say `improved: false`; the log says so loudly.

    Under torchrun (ragtune.distributed) each process trains on its share of the batches; only rank 0
    saves the model and gets the stats, the other ranks return None.
    """
    clock = Clock()
    train_path, val_path = Path(train_path), Path(val_path)
    out_dir, checkpoint_dir = Path(out_dir), Path(checkpoint_dir)
    # Read and check the data before the ~10 s library import and the model load.
    train_groups, columns, counts, samples = _read_data(train_path, val_path, cfg, synthetic)
    from .models import seed_everything

    seed_everything(seed)
    model = _load_model(base, cfg, device, security)
    world = distributed.world_size()
    plan = _plan(counts["rows"], cfg, epochs, world, train_path)
    resume_from = _pick_checkpoint(checkpoint_dir, resume)
    evaluator = val_evaluator(samples, name=VAL_NAME, batch_size=cfg["encode_batch_size"], dtype=inference_dtype,
                              device=device)
    trainer = _trainer(model, columns, evaluator, cfg, plan, seed=seed, device=device, train_dtype=train_dtype,
                       checkpoint_dir=checkpoint_dir, live_dir=live_dir, resumed=resume_from is not None)
    # The evaluator itself, not trainer.evaluate(): that marks the model as prepared for accelerate
    # (1.15), whose train() then skips the DDP wrapper, and N processes would each train a model of
    # their own without a word. Every rank scores (no collective in it), so all log the same history.
    base_metrics = _base_val_metrics(evaluator, model, base, cfg, val_path, inference_dtype)
    base_score = float(base_metrics[f"{VAL_NAME}_ndcg@10"])
    if resume_from is None:  # the first point of the DVCLive curve, as trainer.evaluate() would log it
        trainer.log({f"eval_{k}": v for k, v in base_metrics.items()})
    log.info("val nDCG@10 of the base model: %.4f", base_score)
    _log_plan(counts["rows"], cfg, plan, epochs, world, checkpoint_dir, resume_from)
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if not distributed.is_main():
        return None
    best_score, best_step, by_step = _best(trainer.state, base_score)
    _save(model, out_dir, best_step)
    stats = run_stats(base_model=base, train_groups=len(train_groups), val_queries=len(samples), epochs=epochs,
                      steps=int(trainer.state.global_step), batch_size=cfg["batch_size"], world=world,
                      train_loss=result.training_loss, before=round(base_score, 6),
                      best=round(best_score, 6), best_step=best_step, by_step=by_step, train_dtype=train_dtype)
    stats.update({
        "train_rows": counts["rows"],
        "rows_padded": counts["rows_padded"],
        "rows_dropped_no_negatives": counts["rows_dropped_no_negatives"],
        "num_negatives": cfg["num_negatives"],
        "steps_per_epoch": plan["steps_per_epoch"],
        "passes_per_epoch": plan["passes_per_epoch"],
        "min_steps": cfg["min_steps"],
        "loss": cfg["loss"],
        "improved": best_score > base_score,
        "resumed_from_step": checkpoint_step(resume_from) if resume_from else None,
        "train_seconds": round(float(result.metrics.get("train_runtime", 0.0)), 1),
        **clock.stats(),
    })
    return stats


def _read_data(train_path: Path, val_path: Path, cfg: dict, synthetic: bool = True):
    """(train groups, train columns, row counts, val samples), or a UserError naming the file; `synthetic`:
    keep mine's synthetic groups."""
    train_groups = read_groups(train_path, synthetic)
    val_groups = read_groups(val_path)
    num_negatives = cfg["num_negatives"]
    distill = cfg["loss"] in DISTILL_LOSSES
    if distill and not num_negatives:
        raise UserError(f"params.yaml: embedder.num_negatives: embedder.loss {cfg['loss']} compares the "
                        f"positive with negatives; set it to 1 or more")
    if distill and not all("pos_scores" in g for g in train_groups):
        raise UserError(f"{train_path}: embedder.loss {cfg['loss']} needs teacher scores (pos_scores and "
                        f"neg_scores) in every group; the mine stage writes them")
    columns, counts = build_rows(train_groups, num_negatives, labels=distill)
    if counts["rows"] == 0:
        raise UserError(f"{train_path}: no training rows: every group lacks negatives "
                        f"(embedder.num_negatives is {num_negatives})")
    samples = val_samples(val_groups)
    if not samples:
        raise UserError(f"{val_path}: no val group has negatives, so checkpoints cannot be compared")
    log.info("train data %s: %d groups -> %d rows (query, positive, %d negatives); %d rows reuse their "
             "group's negatives to fill the columns, %d rows dropped (group has no negatives)",
             train_path, len(train_groups), counts["rows"], num_negatives, counts["rows_padded"],
             counts["rows_dropped_no_negatives"])
    log.info("val data %s: %d of %d queries with positives and negatives (%d distinct texts to encode per evaluation)",
             val_path, len(samples), len(val_groups),
             len({t for s in samples for t in s["positive"] + s["negative"]}))
    return train_groups, columns, counts, samples


def _load_model(base: str, cfg: dict, device: str, security: Mapping[str, bool]):
    from sentence_transformers import SentenceTransformer

    from .models import attention_dropout_overrides, resolve_model

    path = resolve_model(base)  # the params name; its location on this machine goes to the log only
    model = SentenceTransformer(str(path), device=device, trust_remote_code=security["trust_remote_code"],
                                config_kwargs=attention_dropout_overrides(path, cfg["attention_dropout"], security,
                                                                          "embedder.attention_dropout"))
    model.max_seq_length = cfg["max_seq_length"]
    log.info("base model %s (%s) on %s, max_seq_length %d, embedding size %d", base, path, device,
             model.max_seq_length, model.get_embedding_dimension())
    return model


def _base_val_metrics(evaluator, model, base: str, cfg: dict, val_path: Path, dtype: str) -> dict[str, float]:
    """The base model's val metrics: mine's (BASE_VAL_METRICS), when it ranked the same val groups with the
    same model files, max_seq_length and dtype by cosine, as the evaluator does; else the evaluator's."""
    from .models import resolve_model

    scored = val_path.parent / BASE_VAL_METRICS
    if scored.is_file() and model.similarity_fn_name == "cosine":
        doc = read_json(scored)
        if (doc.get("model_fingerprint") == model_fingerprint(resolve_model(base))
                and doc.get("max_seq_length") == cfg["max_seq_length"]
                and doc.get("inference_dtype", "float32") == dtype):
            log.info("val metrics of the base model from %s (mine ranked val with its embeddings)", scored)
            return {f"{VAL_NAME}_{k}": float(v) for k, v in doc["metrics"].items()}
    return evaluator(model)


def _plan(rows: int, cfg: dict, epochs: int, world: int, train_path: Path) -> dict[str, int]:
    """Passes over the rows per epoch (enough for embedder.min_steps), steps per epoch, total steps,
    evaluation interval and warmup steps."""
    batch_size = cfg["batch_size"]  # per process: a step takes world x batch_size rows
    if world > 1:
        # Only complete rounds of `world` full batches: every process must take the same number of steps
        # (sentence-transformers shards batches unevenly otherwise) and the gathered loss wants equal batches.
        steps_per_pass = rows // batch_size // world
        if steps_per_pass == 0:
            raise UserError(f"{train_path}: {rows} rows make no full step of {world} processes x "
                            f"batch {batch_size}; lower embedder.batch_size or embedder.nproc")
    else:
        steps_per_pass = math.ceil(rows / batch_size)
    passes = passes_per_epoch(steps_per_pass, cfg["min_steps"])
    steps_per_epoch = steps_per_pass * passes
    total_steps = steps_per_epoch * epochs
    return {
        "passes_per_epoch": passes,
        "train_passes": passes * epochs,  # the trainer's epochs: each a shuffled pass over the rows
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "eval_steps": cfg["eval_steps"] or steps_per_epoch,  # 0 = once per epoch
        # An integer: transformers reads a float warmup_steps < 1 as a ratio but 1.0 as one step.
        "warmup_steps": math.ceil(total_steps * cfg["warmup"]),
    }


def _pick_checkpoint(checkpoint_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: a fresh run, whose stale checkpoints are removed)."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    resume_from = last_checkpoint(checkpoint_dir) if resume else None
    if resume and resume_from is None:
        log.warning("resume requested but %s holds no checkpoint: starting a fresh run", checkpoint_dir)
    if resume_from is None and distributed.is_main():
        clear_checkpoints(checkpoint_dir)
    distributed.barrier()  # every rank has picked its checkpoint before the trainer writes new ones
    return resume_from


def _trainer(model, columns: dict, evaluator, cfg: dict, plan: dict, *, seed: int, device: str, train_dtype: str,
             checkpoint_dir: Path, live_dir: Path | None, resumed: bool):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from .models import mixed_precision_args

    world = distributed.world_size()
    eval_steps = plan["eval_steps"]
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=plan["train_passes"],
        per_device_train_batch_size=cfg["batch_size"],
        per_device_eval_batch_size=cfg["encode_batch_size"],
        learning_rate=cfg["lr"],
        warmup_steps=plan["warmup_steps"],
        seed=seed,
        data_seed=seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=2,  # the best and the latest are kept (the latest for --resume)
        load_best_model_at_end=True,
        metric_for_best_model=METRIC,
        greater_is_better=True,
        logging_steps=max(1, min(eval_steps, plan["total_steps"] // 20)),
        logging_first_step=True,
        report_to="none",  # only our DVCLive callback, never a tracker picked up from the environment
        use_cpu=device == "cpu",
        **mixed_precision_args(train_dtype),
        dataloader_num_workers=0,
        dataloader_drop_last=world > 1,  # see _plan
        ddp_backend="gloo" if device == "cpu" and world > 1 else None,  # given in one process, accelerate fails
    )
    callbacks = []
    if live_dir is not None:
        # dvcyaml=False: never touch the project's dvc.yaml; save_dvc_exp=False: no experiments of its own.
        live = open_live(live_dir, resume=resumed, dvcyaml=False, save_dvc_exp=False)
        callbacks.append(step_callback(live))
    from .models import FirstStepTrains

    class Trainer(FirstStepTrains, SentenceTransformerTrainer):  # warmup never gives step 1 a zero lr
        pass

    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                      loss=_make_loss(model, cfg, gather=world > 1), evaluator=evaluator, callbacks=callbacks)
    quiet_progress(trainer)
    return trainer


def _log_plan(rows: int, cfg: dict, plan: dict, epochs: int, world: int, checkpoint_dir: Path,
              resume_from: Path | None) -> None:
    batch_size = cfg["batch_size"]
    passes = plan["passes_per_epoch"]
    repeated = f" ({passes} passes over the rows, to reach embedder.min_steps {cfg['min_steps']})" if passes > 1 else ""
    log.info("training %d rows, batch %d%s, %d steps per epoch%s, %d epoch(s), %d steps, warmup %d, lr %g, "
             "loss %s%s; checkpoints in %s%s", rows, batch_size,
             f" per process x {world} processes = {batch_size * world} rows per step" if world > 1 else "",
             plan["steps_per_epoch"], repeated, epochs, plan["total_steps"], plan["warmup_steps"], cfg["lr"], cfg["loss"],
             f" + matryoshka {cfg['matryoshka_dims']}" if cfg["matryoshka_dims"] else "",
             checkpoint_dir, f"; resuming from {resume_from.name}" if resume_from else "")


def _best(state, base_score: float) -> tuple[float, int, dict[int, float]]:
    """(best val nDCG@10, its step, {step: val nDCG@10}) from the trainer's state; warns when no
    checkpoint beat the base model."""
    if state.best_model_checkpoint is None or state.best_metric is None:
        raise RuntimeError("trainer finished without a best checkpoint; nothing trustworthy to save")
    best_score = float(state.best_metric)
    best_step = checkpoint_step(Path(state.best_model_checkpoint))
    by_step = {int(h["step"]): round(h[METRIC], 6) for h in state.log_history if METRIC in h}
    if best_score > base_score:
        log.info("val nDCG@10: base %.4f -> best %.4f at step %d", base_score, best_score, best_step)
    else:
        log.warning("!!! FINE-TUNING DID NOT IMPROVE THE EMBEDDER ON VAL: base nDCG@10 %.4f, best fine-tuned "
                    "%.4f (step %d). The fine-tuned checkpoint is saved anyway so that evaluate shows the "
                    "effect; prefer the base model, or change the data or params (lr, epochs, negatives).",
                    base_score, best_score, best_step)
    return best_score, best_step, by_step


def _save(model, out_dir: Path, best_step: int) -> None:
    # The trainer loaded the best checkpoint into `model`; save it as a plain SentenceTransformer folder
    # (modules.json, pooling, Normalize, safetensors) without optimizer state or pickled training args.
    # No generated model card: it records training durations, and the same seed must give the same bytes;
    # the stats train_embedder returns describe the run instead.
    with atomic_output(out_dir, is_dir=True) as tmp:
        model.save(str(tmp), create_model_card=False, safe_serialization=True)
    log.info("saved the best checkpoint (step %d) to %s", best_step, out_dir)
