"""What both trainers share: checkpoint folders, timing, and the statistics every training run records.

Both trainers write `metrics/train_<kind>.json` with the same keys for the same facts (base_model,
train_groups, val_queries, steps, val_ndcg@10_before / _best / _by_step, best_step, timings ...), then
their own extras.
"""
from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

_CHECKPOINT_RE = re.compile(r"^checkpoint-\d+$")


def _checkpoints(checkpoint_dir: Path) -> list[Path]:
    if not checkpoint_dir.is_dir():
        return []
    return [p for p in checkpoint_dir.iterdir() if p.is_dir() and _CHECKPOINT_RE.match(p.name)]


def checkpoint_step(path: Path) -> int:
    return int(path.name.split("-")[1])


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete `checkpoint-<step>` folder of an HF Trainer, or None.

    trainer_state.json is the last file a checkpoint gets; a kill while writing it leaves it torn, and such
    a checkpoint is skipped (the one before it is complete).
    """
    found = [p for p in _checkpoints(checkpoint_dir) if _is_json(p / "trainer_state.json")]
    return max(found, key=checkpoint_step, default=None)


def clear_checkpoints(checkpoint_dir: Path) -> None:
    """A fresh run must not rotate, resume from or mix with an older run's checkpoints."""
    old = _checkpoints(checkpoint_dir)
    if old:
        log.info("fresh run: removing %d old checkpoint(s) in %s", len(old), checkpoint_dir)
    for p in old:
        shutil.rmtree(p)


def _is_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def passes_per_epoch(steps_per_pass: int, min_steps: int) -> int:
    """How many times an epoch goes through the training rows: once, or as often as it takes to make
    at least `min_steps` optimizer steps.

    With a few dozen training queries one pass is a handful of steps, too few for the model to move
    (SciFact, 100 queries, batch 32: 4 steps lifted val nDCG@10 by 0.009, 32 steps by 0.039). Whole
    passes keep every row seen equally often; the user's `epochs` still multiplies the work, and val
    still picks the best checkpoint at the end of each epoch.
    """
    if steps_per_pass <= 0 or min_steps <= steps_per_pass:
        return 1
    return math.ceil(min_steps / steps_per_pass)


class Clock:
    """Wall and CPU seconds since the run started."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def stats(self) -> dict[str, float]:
        return {"wall_seconds": round(time.perf_counter() - self.wall0, 1),
                "cpu_seconds": round(time.process_time() - self.cpu0, 1)}


def run_stats(*, base_model: str, train_groups: int, val_queries: int, epochs: int, steps: int, batch_size: int,
              world: int, train_loss: float, before: float | None, best: float, best_step: int,
              by_step: dict[int, float], train_dtype: str) -> dict:
    """The facts both trainers record, under the same keys. `base_model` is the name the user gave in
    params (a path of this machine would differ across machines in `dvc metrics diff`); `by_step` maps
    each evaluated step to its val nDCG@10, stored as {"step": score} so `dvc metrics show` flattens it
    into one column per step."""
    return {
        "base_model": base_model,
        "train_groups": train_groups,
        "val_queries": val_queries,
        "epochs": epochs,
        "steps": steps,
        "batch_size": batch_size,
        "nproc": world,
        "effective_batch_size": batch_size * world,
        "train_dtype": train_dtype,
        "train_loss": round(float(train_loss), 6),
        "val_ndcg@10_before": before,
        "val_ndcg@10_best": best,
        "best_step": best_step,
        "val_ndcg@10_by_step": {str(step): score for step, score in by_step.items()},
    }
