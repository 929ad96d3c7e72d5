"""The package stage: ship-ready model folders, each with its model card.

`release/<model>/` holds the files of `models/<model>/` as hard links (no second copy on disk: DVC's
cache, also hard-linked, stores each file once) plus a README.md model card, so the folder is what
`hf upload` / `push_to_hub` want. The cards quote every earlier stage's metrics, so they are written by
this last stage rather than into `models/`, which belongs to the trainers and merge (a DVC stage cannot
write into another stage's output, and evaluate cannot be both after and before the models it scores).
"""
from __future__ import annotations

from pathlib import Path

from ..cards import MODELS, model_card, read_facts
from ..errors import UserError
from ..io import atomic_output, link_tree, write_text
from ..logs import summary


def run(params: dict, *, models_dir: str, metrics_dir: str, out_dir: str) -> None:
    """Write `out_dir/<model>/` for each model: its files hard-linked, plus README.md (its model card)."""
    sources = {model: Path(models_dir) / model for model in MODELS}
    for src in sources.values():
        if not src.is_dir():
            raise UserError(f"{src}: no such model folder (run the stages before package)")
    facts = read_facts(metrics_dir)
    # Cards are built before anything is written: a bad metrics file leaves the previous release alone.
    cards = {model: model_card(model, params, facts, src, f"{Path(out_dir).name}/{model}")
             for model, src in sources.items()}
    with atomic_output(out_dir, is_dir=True) as tmp:
        for model, src in sources.items():
            # README.md is skipped: a card already in the model folder would be a hard link, never to edit.
            link_tree(src, tmp / model, skip=("README.md",))
            write_text(tmp / model / "README.md", cards[model])
    summary(f"{len(MODELS)} model folders with model cards -> {out_dir}")
