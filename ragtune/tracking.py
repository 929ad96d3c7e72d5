"""DVCLive for the trainers, safe to resume after a kill.

DVCLive rewrites `metrics.json` in place (open "w", then dump) and appends rows to `plots/metrics/*.tsv`.
A run killed in between leaves an empty `metrics.json` or a half-written last row, and
`Live(resume=True)` then dies in `json.load`. `open_live` repairs both from what the .tsv files hold
before handing the folder to DVCLive.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from .io import write_json, write_text

log = logging.getLogger(__name__)


def open_live(live_dir: str | Path, resume: bool, **kwargs: Any):
    """`dvclive.Live` on `live_dir`; with `resume`, first repair what a killed run left behind."""
    from dvclive import Live

    if resume:
        repair_live_dir(Path(live_dir))
    return Live(dir=str(live_dir), resume=resume, **kwargs)


def step_callback(live):
    """transformers' DVCLiveCallback, logging every row at the trainer's optimizer step.

    The stock callback counts its own steps (one per log call), so a curve drifts from the steps the
    trainer reports (an eval and a loss log at step 7 land at DVCLive steps 7 and 8, say), and the plots
    would disagree with `best_step` in metrics/train_*.json. log_model=False: HF_DVCLIVE_LOG_MODEL
    can never copy checkpoints into DVC's cache.
    """
    from transformers.integrations import DVCLiveCallback  # dvclive.huggingface's is deprecated

    class AtTrainerStep(DVCLiveCallback):
        def on_log(self, args, state, control, **kwargs):
            if self.live is not None:
                self.live.step = state.global_step
            super().on_log(args, state, control, **kwargs)

    return AtTrainerStep(live=live, log_model=False)


def repair_live_dir(live_dir: Path) -> list[str]:
    """Drop torn last rows of the .tsv files and rebuild an unreadable metrics.json; return what was fixed."""
    fixed = []
    metrics_dir = live_dir / "plots" / "metrics"
    tsvs = sorted(metrics_dir.rglob("*.tsv")) if metrics_dir.is_dir() else []
    for tsv in tsvs:
        text = tsv.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            write_text(tsv, text[: text.rfind("\n") + 1])
            fixed.append(str(tsv))

    metrics_file = live_dir / "metrics.json"
    if metrics_file.exists():
        try:
            json.loads(metrics_file.read_text(encoding="utf-8"))
        except ValueError:
            write_json(metrics_file, _summary_from_tsvs(metrics_dir, tsvs))
            fixed.append(str(metrics_file))
    for path in fixed:
        log.warning("%s was cut short when the last run was killed; repaired from the logged rows", path)
    return fixed


def _summary_from_tsvs(metrics_dir: Path, tsvs: list[Path]) -> dict:
    """DVCLive's summary: the last value of each metric, nested by its path, plus the last step."""
    summary: dict[str, Any] = {}
    step = 0
    for tsv in tsvs:
        with open(tsv, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        *parents, name = tsv.relative_to(metrics_dir).with_suffix("").parts
        node = summary
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = float(rows[-1][name])
        step = max(step, int(rows[-1]["step"]))
    summary["step"] = step
    return summary


def quiet_progress(trainer) -> None:
    """A transformers Trainer prints every log dict (`{'loss': ...}`) to stdout; the curves are in DVCLive
    already. Unless RAGTUNE_VERBOSE: no printed dicts, and a progress bar on a terminal only."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from .logs import progress_bars, verbose

    if verbose():
        return

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress_bars():
        trainer.add_callback(BarOnly())
