"""Reference recipe 1: fine-tune an embedder the plain sentence-transformers way.

    python -m bench.recipes.st_recipe --project DIR --out DIR --model PATH [options]

What a user of sentence-transformers 6.2 would write, following its training overview
(https://sbert.net/docs/sentence_transformer/training_overview.html: model, dataset, loss, arguments,
trainer), its training examples (examples/sentence_transformer/training/ in the sentence-transformers
repository, e.g. ms_marco/train_bi_encoder_mnrl.py: MultipleNegativesRankingLoss on (query, positive,
negatives)) and the `mine_hard_negatives` reference
(https://sbert.net/docs/package_reference/util.html#sentence_transformers.util.mine_hard_negatives):
NV-Retriever's TopK-PercPos settings (relative margin 0.05, sampling "top") and, as in its example,
the top 10 ranks skipped (likely unjudged positives), candidates up to rank 100:

1. Load the base model.
2. One (query, positive) row per judged pair of the train split.
3. Mine hard negatives with the base model over the whole corpus; rows without enough negatives are
   dropped by mine_hard_negatives (counted as dropped_pairs).
4. Loss: MultipleNegativesRankingLoss (in-batch + hard negatives).
5. Training arguments: no duplicate texts in a batch, warmup 10 %, no evaluation, no checkpoints.
6. Train, save the final model to <out>/model.
7. Score val and test with exact cosine search (top 100) and ragtune's metric code; write result.json.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import click

from bench.recipes import common
from ragtune.io import atomic_output

SYSTEM = "sentence-transformers recipe"
RANGE_MIN, RANGE_MAX, RELATIVE_MARGIN = 10, 100, 0.05
WARMUP = 0.1


@click.command()
@common.options
def main(**args):
    """Mine hard negatives and fine-tune with sentence-transformers; write <out>/result.json."""
    common.setup()
    common.run_main(lambda: run(**args))


def run(project: Path, out: Path, model: str, max_seq_length: int, batch_size: int, lr: float,
        epochs: int, num_negatives: int, seed: int, encode_batch_size: int, limit_queries: int | None,
        limit_docs: int | None) -> None:
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}
    config["recipe"] = {"range_min": RANGE_MIN, "range_max": RANGE_MAX, "relative_margin": RELATIVE_MARGIN,
                        "sampling_strategy": "top", "loss": "MultipleNegativesRankingLoss",
                        "batch_sampler": "no_duplicates", "warmup_ratio": WARMUP}
    data = common.load_project(project, limit_queries, limit_docs)
    timer = common.Timer()
    out.mkdir(parents=True, exist_ok=True)

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from sentence_transformers.util import mine_hard_negatives

    # 1. Load the base model (a str path: SentenceTransformer(Path) raises in 6.2).
    device = common.device()
    embedder = SentenceTransformer(str(model), device=device)
    embedder.max_seq_length = max_seq_length

    # 2. The (anchor, positive) pairs of the train split.
    pairs = data.train_pairs()
    pair_dataset = Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]})

    # 3. Mine hard negatives with the base model over the whole corpus.
    with timer.step("mine"):
        train_dataset = mine_hard_negatives(
            pair_dataset,
            embedder,
            corpus=list(data.corpus.values()),
            range_min=RANGE_MIN,
            range_max=RANGE_MAX,
            relative_margin=RELATIVE_MARGIN,
            num_negatives=num_negatives,
            sampling_strategy="top",
            batch_size=encode_batch_size,
            output_format="n-tuple",
            use_faiss=False,
        )
    # mine_hard_negatives silently drops a row when too few candidates pass its range and margin filters.
    dropped = len(pairs) - len(train_dataset)
    common.log.info("mined %d rows from %d pairs (%d dropped: too few negatives)", len(train_dataset),
                    len(pairs), dropped)

    # 4. Loss: the positive against the hard negatives and every other text in the batch.
    loss = MultipleNegativesRankingLoss(embedder)

    with tempfile.TemporaryDirectory(prefix=".st-trainer-", dir=out) as trainer_dir:
        # 5. Training arguments.
        training_args = SentenceTransformerTrainingArguments(
            output_dir=trainer_dir,  # nothing is written there: no checkpoints, no evaluation
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=lr,
            warmup_steps=WARMUP,  # transformers 5 has no warmup_ratio: a float below 1 is read as a ratio
            batch_sampler=BatchSamplers.NO_DUPLICATES,  # a duplicate text in a batch would be a false negative
            eval_strategy="no",
            save_strategy="no",
            logging_steps=10,
            seed=seed,
            data_seed=seed,
            use_cpu=device == "cpu",
            report_to="none",
        )

        # 6. Train and save the final model.
        trainer = SentenceTransformerTrainer(model=embedder, args=training_args, train_dataset=train_dataset,
                                             loss=loss)
        with timer.step("train"):
            trainer.train()
    with atomic_output(out / "model", is_dir=True) as tmp:
        embedder.save_pretrained(str(tmp))

    # 7. Score the fine-tuned model.
    with timer.step("evaluate"):
        scores = common.evaluate(embedder, data, encode_batch_size)

    common.write_result(out, {
        "system": SYSTEM,
        "config": config,
        "test": scores["test"],
        "val": scores["val"],
        "steps": timer.steps,
        "cpu_seconds": timer.cpu,
        "train_queries": len(data.train_groups()),
        "train_rows": len(train_dataset),
        "dropped_pairs": dropped,
        "train_steps": trainer.state.global_step,
    })


if __name__ == "__main__":
    main()
