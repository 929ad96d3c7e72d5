"""Fine-tune a cross-encoder reranker with FlagEmbedding's encoder-only reranker trainer, in-process.

What FlagEmbedding 1.4.2 gives: tokenisation of (query, passage) pairs, the collator, the listwise loss
(softmax cross-entropy over a group of 1 positive + group_size-1 negatives) and its HF Trainer subclass.
What this module adds around it:
- a bi-encoder base (a sentence-transformers folder such as all-MiniLM-L6-v2) first becomes a
  cross-encoder with a fresh, seeded 1-logit head; a real cross-encoder is used as is;
- groups come from memory (no `datasets` cache on disk) and mix hard negatives with random passages
  from other groups (hard-only training makes deep reranking worse), seeded per (seed, epoch, group);
- val reranking nDCG@10 before training (for a fresh head: the chance level, never kept), every
  `eval_steps` and after each epoch; the best model is kept in checkpoint_dir/best and written to
  out_dir at the end (LoRA adapters merged);
- two fixes to FlagEmbedding: losses are grouped by group size (its `view(train_batch_size, -1)`
  mis-groups or crashes on a last partial batch), and resume loads the checkpoint's weights into the
  inner model (the Trainer loads them with strict=False into the wrapper, whose keys never match, so
  a resume silently restarted from the base weights).
"""
from __future__ import annotations

import logging
import math
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import distributed
from .errors import UserError
from .io import TEACHER_TEMPERATURE, atomic_output, read_json, write_json
from .io import read_groups as io_read_groups
from .rerank import val_ndcg
from .tracking import open_live, quiet_progress, step_callback
from .training import Clock, last_checkpoint, run_stats

log = logging.getLogger(__name__)

BEST = "best"
START = "start"
STATE = "best.json"


# ---------------------------------------------------------------- models


def convert_to_cross_encoder(src: str, dst: str | Path, seed: int, *, security: Mapping[str, bool]) -> str:
    """Save `src`'s encoder with a fresh, seeded 1-logit head as an HF sequence-classification folder.

    Same result as `CrossEncoder(src, num_labels=1).save(dst)` (which calls the same transformers
    loader) without importing sentence-transformers; the seed makes the head repeatable.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    try:
        trust = security["trust_remote_code"]
        tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=trust)
        model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, ignore_mismatched_sizes=True,
                                                                   trust_remote_code=trust)
    except OSError as e:
        raise UserError(f"reranker.base '{src}': cannot load: {e}") from None
    with atomic_output(dst, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    log.info("converted %s into a cross-encoder with a fresh 1-logit head: %s", src, dst)
    return str(dst)


# ---------------------------------------------------------------- data


def read_groups(path: str | Path, *, need_neg: bool = True, synthetic: bool = True) -> list[dict[str, Any]]:
    """ragtune.io.read_groups, plus: training needs negatives, mined or drawn from other groups."""
    groups = io_read_groups(path, synthetic)
    if need_neg and not any(g["neg"] for g in groups) and len(groups) < 2:
        raise UserError(f"{path}: no negatives and no other group to draw random negatives from")
    return groups


def text_pool(groups: list[dict[str, Any]]) -> list[str]:
    """Every passage text of every group, first occurrence order: the random-negative pool."""
    return list(dict.fromkeys(t for g in groups for t in g["pos"] + g["neg"]))


def sample_group(group: dict[str, Any], pool: list[str], group_size: int, n_random: int,
                 rng: random.Random) -> list[str]:
    """One training group: a positive, then hard negatives, then `n_random` random passages.

    The random ones come from `pool` minus this group's positives. Groups with too few hard negatives
    repeat them (as FlagEmbedding does); groups with none use random passages only.
    """
    pos = rng.choice(group["pos"])
    hard = group["neg"]
    n_random = min(n_random, group_size - 1)
    if not hard:
        n_random = group_size - 1
    n_hard = group_size - 1 - n_random
    if len(hard) >= n_hard:
        negs = rng.sample(hard, n_hard)
    else:
        negs = rng.sample(hard * math.ceil(n_hard / len(hard)), n_hard)
    own = set(group["pos"])
    for _ in range(n_random):
        for _try in range(20):
            text = pool[rng.randrange(len(pool))]
            if text not in own:
                break
        negs.append(text)
    return [pos] + negs


def teacher_scores(group: dict[str, Any], texts: list[str]) -> list[float]:
    """The group's teacher score of each sampled text; a random passage from another group gets the
    group's lowest score (it ranks below every mined candidate)."""
    known = dict(zip(group["neg"], group["neg_scores"])) | dict(zip(group["pos"], group["pos_scores"]))
    floor = min(known.values())
    return [known.get(t, floor) for t in texts]


def distill_loss(grouped_logits, teacher, weight: float):
    """FlagEmbedding's distillation term: cross-entropy of the student's listwise softmax against the
    teacher's softmax (scores on [0, 1], at TEACHER_TEMPERATURE), times `weight`."""
    import torch

    targets = torch.softmax(teacher.view_as(grouped_logits).to(grouped_logits) / TEACHER_TEMPERATURE, dim=-1)
    return -weight * torch.mean(torch.sum(torch.log_softmax(grouped_logits, dim=-1) * targets, dim=-1))


# ---------------------------------------------------------------- FlagEmbedding glue (lazy imports)


def _flag_classes():
    """Subclasses of FlagEmbedding's model, dataset and trainer; built on first use (heavy imports)."""
    import torch
    from FlagEmbedding.abc.finetune.reranker import AbsRerankerTrainDataset
    from FlagEmbedding.abc.finetune.reranker.AbsModeling import RerankerOutput
    from FlagEmbedding.finetune.reranker.encoder_only.base import (
        CrossEncoderModel,
        EncoderOnlyRerankerTrainer,
    )

    class GroupedCrossEncoder(CrossEncoderModel):
        """FlagEmbedding's model with the listwise loss grouped by group size, not by batch size."""

        def __init__(self, base_model, tokenizer, group_size: int, distill_weight: float = 0.0):
            super().__init__(base_model, tokenizer=tokenizer, train_batch_size=1)
            self.group_size, self.distill_weight = group_size, distill_weight

        def forward(self, pair=None, teacher_scores=None):
            logits = self.encode(pair)
            loss = None
            if self.training:
                grouped = logits.view(-1, self.group_size)
                target = torch.zeros(grouped.size(0), device=grouped.device, dtype=torch.long)
                loss = self.compute_loss(grouped, target)
                if teacher_scores is not None and self.distill_weight > 0:
                    loss = loss + distill_loss(grouped, torch.as_tensor(teacher_scores), self.distill_weight)
            return RerankerOutput(loss=loss, scores=logits)

    class GroupDataset(AbsRerankerTrainDataset):
        """FlagEmbedding's dataset over in-memory groups with seeded hard + random negative mixing."""

        def __init__(self, args, tokenizer, groups, group_size: int, n_random: int, seed: int,
                     distill: bool = False):
            # Not calling super().__init__: it reads files through a `datasets` cache we don't want.
            self.args, self.tokenizer = args, tokenizer
            self.max_length = args.query_max_len + args.passage_max_len
            self.dataset = groups
            self.pool = text_pool(groups)
            self.group_size, self.n_random, self.seed, self.distill = group_size, n_random, seed, distill
            self.epoch = 0

        def __getitem__(self, item):
            # A fresh rng per (seed, epoch, group): same groups whatever the order, and on resume.
            rng = random.Random(f"{self.seed}:{self.epoch}:{item}")
            group = self.dataset[item]
            texts = sample_group(group, self.pool, self.group_size, self.n_random, rng)
            scores = teacher_scores(group, texts) if self.distill else None
            return [self.create_one_example(group["query"], t) for t in texts], scores

    from .models import FirstStepTrains

    class Trainer(FirstStepTrains, EncoderOnlyRerankerTrainer):  # warmup never gives step 1 a zero lr
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            # Checkpoints hold the inner HF model's keys; load them there (see module docstring).
            super()._load_from_checkpoint(resume_from_checkpoint, model=self.model.model)

    return GroupedCrossEncoder, GroupDataset, Trainer


def _add_lora(model, cfg: dict):
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"],
                        lora_dropout=0.0, target_modules=list(cfg["lora_target_modules"]))
    try:
        model = get_peft_model(model, config)
    except ValueError as e:
        raise UserError(f"params.yaml: reranker.lora_target_modules: {e}") from None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("LoRA r=%d alpha=%d on %s: %d of %d parameters trainable", cfg["lora_r"], cfg["lora_alpha"],
             cfg["lora_target_modules"], trainable, total)
    return model


def _save_model(model, tokenizer, dst: Path) -> None:
    """Save an HF model (or a PEFT model's adapter + head) with its tokenizer, atomically."""
    with atomic_output(dst, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def _finalize(best_dir: Path, start: str, out_dir: Path) -> None:
    """Write the best model to out_dir as a plain HF folder; a LoRA adapter is merged into its base."""
    if (best_dir / "adapter_config.json").is_file():
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        base = AutoModelForSequenceClassification.from_pretrained(start, num_labels=1)
        merged = PeftModel.from_pretrained(base, str(best_dir)).merge_and_unload()
        _save_model(merged, AutoTokenizer.from_pretrained(start), out_dir)
        return
    with atomic_output(out_dir, is_dir=True) as tmp:
        for f in sorted(best_dir.iterdir()):
            if f.is_file() and f.name != "training_args.bin":
                shutil.copy2(f, tmp / f.name)


# ---------------------------------------------------------------- training


def train_reranker(*, base: str, train_path: Path, val_path: Path, out_dir: Path, cfg: dict, epochs: int,
                   seed: int, device: str, checkpoint_dir: Path, live_dir: Path | None,
                   resume: bool = False, security: Mapping[str, bool], inference_dtype: str = "float32",
                   train_dtype: str = "float32", synthetic: bool = True) -> dict | None:
    """Fine-tune `base` (the model name from params) on the groups in train_path; save the val-best model
    to out_dir; return stats. Training runs in `train_dtype` mixed precision, val is scored in
    `inference_dtype` (ragtune.models.pick_train_dtype, pick_inference_dtype).

    Under torchrun (ragtune.distributed) each process trains on its share of the groups; rank 0 alone
    scores val, keeps the best model and writes out_dir (val scoring holds no collective, so the other
    ranks just wait for it in the next step's gradient all-reduce). Other ranks return None.
    """
    clock = Clock()
    train_path, val_path = Path(train_path), Path(val_path)
    out_dir, checkpoint_dir = Path(out_dir), Path(checkpoint_dir)
    train_groups = read_groups(train_path, synthetic=synthetic)
    val_groups = read_groups(val_path, need_neg=False)
    group_size, n_random = cfg["group_size"], cfg["random_negatives"]
    log.info("reranker training: %d train groups (%s), %d val queries (%s), group size %d (%d random)",
             len(train_groups), train_path, len(val_groups), val_path, group_size, min(n_random, group_size - 1))

    import transformers

    from .models import pick_device, seed_everything

    device = pick_device(device)
    main, world = distributed.is_main(), distributed.world_size()
    trained, start = _prepare_start(base, checkpoint_dir, resume, seed, security)
    seed_everything(seed)
    transformers.set_seed(seed)
    tokenizer, hf_model, max_length = _load_start(start, cfg, security)
    dataset, collator = _data(train_groups, train_path, tokenizer, cfg, max_length, seed)
    validation = _Validation(checkpoint_dir, tokenizer, val_groups, cfg, max_length, device, resume=resume,
                             live_dir=live_dir if main else None, trained=trained, dtype=inference_dtype)
    trainer, steps_per_epoch = _trainer(hf_model, tokenizer, dataset, collator, len(train_groups), cfg,
                                        _callbacks(validation, dataset, cfg["eval_steps"], trained, main),
                                        epochs=epochs, seed=seed, device=device, train_dtype=train_dtype,
                                        checkpoint_dir=checkpoint_dir)
    last = last_checkpoint(checkpoint_dir) if resume else None
    if resume and last is None:
        log.info("resume: no checkpoint in %s; starting from scratch", checkpoint_dir)
    log.info("training %d epochs x %d steps (batch %d groups of %d%s, max_length %d, lr %g, lora %s) on %s",
             epochs, steps_per_epoch, cfg["batch_size"], group_size,
             f" per process x {world} processes = {cfg['batch_size'] * world} groups per step" if world > 1 else "",
             max_length, cfg["lr"], cfg["lora"], device)
    result = trainer.train(resume_from_checkpoint=str(last) if last else None)  # DVCLiveCallback ends `live`
    if not main:
        return None

    if not validation.best_dir.is_dir():
        raise UserError(f"{checkpoint_dir}: no best model was saved; rerun without resume")
    _finalize(validation.best_dir, start, out_dir)
    history = validation.state["history"]
    by_step = {h["step"]: h["ndcg@10"] for h in history if h["step"] > 0}
    before = history[0]["ndcg@10"] if history[0]["step"] == 0 else None
    stats = run_stats(base_model=base, train_groups=len(train_groups), val_queries=len(val_groups),
                      epochs=epochs, steps=trainer.state.global_step, batch_size=cfg["batch_size"], world=world,
                      train_loss=result.training_loss, before=before,
                      best=max(h["ndcg@10"] for h in history if validation.keepable(h)),
                      best_step=validation.state["best_step"],
                      by_step=by_step, train_dtype=train_dtype)
    stats.update({
        "start": "cross-encoder" if trained else "bi-encoder + fresh 1-logit head",
        "group_size": group_size,
        "random_negatives": min(n_random, group_size - 1),
        "max_length": max_length,
        "lr": cfg["lr"],
        "lora": cfg["lora"],
        "distill_weight": cfg["distill_weight"],
        "val_ndcg@10_after": history[-1]["ndcg@10"],
        **clock.stats(),
    })
    log.info("reranker: val nDCG@10 %s before (%s), %.4f after, best %.4f at step %s -> %s",
             stats["val_ndcg@10_before"], "cross-encoder" if trained else "fresh head: chance level",
             stats["val_ndcg@10_after"], stats["val_ndcg@10_best"], stats["best_step"], out_dir)
    return stats


def _prepare_start(base: str, checkpoint_dir: Path, resume: bool, seed: int,
                   security: Mapping[str, bool]) -> tuple[bool, str]:
    """(is `base` a trained cross-encoder, the folder training starts from). A bi-encoder first gets a
    fresh, seeded head in checkpoint_dir/start; a fresh run clears checkpoint_dir first."""
    from .models import is_trained_reranker, resolve_model

    source = resolve_model(base)  # the params name; its location on this machine goes to the log only
    trained = is_trained_reranker(source)
    start = source if trained else str(checkpoint_dir / START)
    if distributed.is_main():  # rank 0 prepares the shared folder; the others wait at the barrier below
        if not resume and checkpoint_dir.exists():
            shutil.rmtree(checkpoint_dir)  # a fresh run must not pick up a previous run's best model
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        # On resume the head converted by the interrupted run is reused.
        if not trained and not (checkpoint_dir / START / "config.json").is_file():
            convert_to_cross_encoder(source, checkpoint_dir / START, seed, security=security)
    distributed.barrier()
    return trained, start


def _load_start(start: str, cfg: dict, security: Mapping[str, bool]):
    """(tokenizer, model, max_length): the start model, with LoRA when asked, and the longest input
    both the model and params allow."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .models import attention_dropout_overrides

    tokenizer = AutoTokenizer.from_pretrained(start, trust_remote_code=security["trust_remote_code"])
    dropout = attention_dropout_overrides(start, cfg["attention_dropout"], security, "reranker.attention_dropout")
    hf_model = AutoModelForSequenceClassification.from_pretrained(start, num_labels=1, **dropout,
                                                                  trust_remote_code=security["trust_remote_code"])
    limits = [cfg["max_length"], getattr(hf_model.config, "max_position_embeddings", None) or 10**9]
    if tokenizer.model_max_length and tokenizer.model_max_length < 10**6:
        limits.append(tokenizer.model_max_length)
    max_length = min(limits)
    if max_length < cfg["max_length"]:
        log.warning("reranker.max_length %d exceeds what %s takes; using %d", cfg["max_length"], start, max_length)
    if cfg["lora"]:
        hf_model = _add_lora(hf_model, cfg)
    return tokenizer, hf_model, max_length


def _data(train_groups: list[dict], train_path: Path, tokenizer, cfg: dict, max_length: int, seed: int):
    """FlagEmbedding's (dataset, collator) over the train groups."""
    from FlagEmbedding.abc.finetune.reranker import AbsRerankerCollator, AbsRerankerDataArguments

    _, GroupDataset, _ = _flag_classes()
    query_max_len = min(64, max_length // 4)  # queries are short; FlagEmbedding's default is 32
    data_args = AbsRerankerDataArguments(train_data=[str(train_path)], train_group_size=cfg["group_size"],
                                         query_max_len=query_max_len,
                                         passage_max_len=max_length - query_max_len)
    distill = cfg["distill_weight"] > 0
    if distill and not all("pos_scores" in g for g in train_groups):
        raise UserError(f"{train_path}: reranker.distill_weight needs teacher scores (pos_scores and "
                        f"neg_scores) in every group; the mine stage writes them")
    dataset = GroupDataset(data_args, tokenizer, train_groups, cfg["group_size"], cfg["random_negatives"], seed,
                           distill)
    collator = AbsRerankerCollator(tokenizer=tokenizer, query_max_len=data_args.query_max_len,
                                   passage_max_len=data_args.passage_max_len, padding=True, return_tensors="pt")
    return dataset, collator


def _trainer(hf_model, tokenizer, dataset, collator, n_groups: int, cfg: dict, callbacks: list, *, epochs: int,
             seed: int, device: str, train_dtype: str, checkpoint_dir: Path):
    """(FlagEmbedding's trainer, steps per epoch)."""
    from FlagEmbedding.abc.finetune.reranker import AbsRerankerTrainingArguments

    from .models import mixed_precision_args

    world = distributed.world_size()
    GroupedCrossEncoder, _, Trainer = _flag_classes()
    model = GroupedCrossEncoder(hf_model, tokenizer, cfg["group_size"], cfg["distill_weight"])

    # batch_size is per process; the trainer deals the batches out to the processes in turn and pads the
    # last round with batches from the start, so every process takes the same number of steps.
    steps_per_epoch = math.ceil(math.ceil(n_groups / cfg["batch_size"]) / world)
    total_steps = steps_per_epoch * epochs
    eval_steps = cfg["eval_steps"]
    args = AbsRerankerTrainingArguments(
        output_dir=str(checkpoint_dir), num_train_epochs=epochs, per_device_train_batch_size=cfg["batch_size"],
        learning_rate=cfg["lr"], warmup_steps=int(round(cfg["warmup"] * total_steps)), weight_decay=0.0,
        logging_steps=max(1, total_steps // 50), save_strategy="steps" if eval_steps else "epoch",
        save_steps=eval_steps or 500, save_total_limit=1, seed=seed, data_seed=seed,
        use_cpu=device == "cpu", report_to="none", dataloader_num_workers=0, remove_unused_columns=False,
        ddp_backend="gloo" if device == "cpu" and world > 1 else None,  # given in one process, accelerate fails
        disable_tqdm=False, **mixed_precision_args(train_dtype))
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      processing_class=tokenizer, callbacks=callbacks)
    quiet_progress(trainer)
    return trainer, steps_per_epoch


class _Validation:
    """Val nDCG@10 at a step: logged, stored in checkpoint_dir/best.json (kept across a resume), and the
    model saved to checkpoint_dir/best when it beats every earlier step."""

    def __init__(self, checkpoint_dir: Path, tokenizer, val_groups: list[dict], cfg: dict, max_length: int,
                 device: str, *, resume: bool, live_dir: Path | None, trained: bool, dtype: str = "float32"):
        self.best_dir, self.state_file = checkpoint_dir / BEST, checkpoint_dir / STATE
        self.trained = trained
        self.tokenizer, self.val_groups, self.cfg = tokenizer, val_groups, cfg
        self.max_length, self.device, self.dtype = max_length, device, dtype
        self.state = (read_json(self.state_file) if resume and self.state_file.is_file()
                      else {"history": [], "best_step": None})
        self.live = None
        if live_dir is not None:
            # No DVC experiment and no dvc.yaml of its own: the pipeline's dvc.yaml declares the plots.
            self.live = open_live(live_dir, resume=resume and bool(self.state["history"]), save_dvc_exp=False,
                                  dvcyaml=None, report=None)

    def keepable(self, h: dict) -> bool:
        # A fresh head's step-0 score is the chance level that training has to beat, not a model to keep.
        return self.trained or h["step"] > 0

    def __call__(self, step: int, wrapper) -> None:
        history = self.state["history"]
        if history and history[-1]["step"] == step:
            return
        from .models import autocast

        with autocast(self.dtype, self.device):  # as evaluate will score (inference_dtype)
            score = val_ndcg(wrapper.model, self.tokenizer, self.val_groups, max_length=self.max_length,
                             batch_size=max(8, self.cfg["batch_size"] * self.cfg["group_size"]),
                             device=self.device, n_negatives=self.cfg["val_negatives"])
        score = round(score, 6)  # the rounded value is compared, logged and stored
        history.append({"step": step, "ndcg@10": score})
        best = max((h["ndcg@10"] for h in history[:-1] if self.keepable(h)), default=None)
        improved = self.keepable(history[-1]) and (best is None or score > best)
        log.info("val nDCG@10 at step %d: %.4f%s", step, score, " (best so far)" if improved else "")
        if self.live is not None:
            self.live.step = step
            self.live.log_metric("val/ndcg@10", score)
        if improved:
            _save_model(wrapper.model, self.tokenizer, self.best_dir)
            self.state["best_step"] = step
        write_json(self.state_file, self.state)


def _callbacks(validation: _Validation, dataset, eval_steps: int, trained: bool, main: bool) -> list:
    """The trainer callbacks: val scoring (rank 0), the dataset's epoch, and DVCLive (rank 0)."""
    from transformers import TrainerCallback

    class Validation(TrainerCallback):
        def on_train_begin(self, args, st, control, model=None, **kwargs):
            # The start of the val curve: the base cross-encoder, or a fresh head's chance level.
            if main and not validation.state["history"]:
                validation(0, model)

        def on_epoch_begin(self, args, st, control, **kwargs):
            dataset.epoch = int(st.epoch + 1e-6)

        def on_step_end(self, args, st, control, model=None, **kwargs):
            if main and eval_steps and st.global_step % eval_steps == 0:
                validation(st.global_step, model)

        def on_epoch_end(self, args, st, control, model=None, **kwargs):
            if main:
                validation(st.global_step, model)

    callbacks: list = [Validation()]
    if validation.live is not None:
        callbacks.append(step_callback(validation.live))
    return callbacks
