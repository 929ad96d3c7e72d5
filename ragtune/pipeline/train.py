"""What the two training stages share: the base model check, torchrun's process group, the stats file.

The trainer comes in as an argument, so this module imports neither trainer and each training stage
depends only on its own.
"""
from __future__ import annotations

from collections.abc import Callable
import logging
from pathlib import Path

from .. import distributed
from ..io import write_json
from ..logs import summary
from ..models import checked_model, pick_device, pick_inference_dtype, pick_train_dtype
from ..report import few_val_queries

log = logging.getLogger(__name__)


def run_training(kind: str, train: Callable[..., dict | None], params: dict, *, negatives_dir: str, out_dir: str,
                 stats_path: str, live_dir: str, checkpoint_dir: str, resume: bool) -> None:
    """Check `params[kind]["base"]`, call `train` (a trainer's function), write its stats (rank 0 only)."""
    cfg = params[kind]
    negatives = Path(negatives_dir)
    # The trainer records the name and loads what it resolves to.
    checked_model(cfg["base"], params["security"], f"{kind}.base")
    # Under torchrun (see ragtune.distributed): join the process group; only rank 0 writes outputs.
    device = distributed.init(pick_device(params["device"]))
    train_dtype = pick_train_dtype(params["train_dtype"], device)
    main = distributed.is_main()
    try:
        stats = train(base=cfg["base"], train_path=negatives / "train.jsonl", val_path=negatives / "val.jsonl",
                      out_dir=Path(out_dir), cfg=cfg, epochs=params["epochs"], seed=params["seed"],
                      device=device, inference_dtype=pick_inference_dtype(params["inference_dtype"], device),
                      train_dtype=train_dtype,
                      checkpoint_dir=Path(checkpoint_dir), synthetic=kind in params["synthetic"]["trainers"],
                      live_dir=Path(live_dir) if main else None, resume=resume, security=params["security"])
    finally:
        distributed.finish()
    if not main:
        return
    write_json(stats_path, stats)
    if warning := few_val_queries(stats["val_queries"]):
        log.warning("%s", warning)
    before, after = stats.get("val_ndcg@10_before"), stats.get("val_ndcg@10_best")
    summary(f"{kind} val nDCG@10 {before} -> {after} -> {out_dir}")
