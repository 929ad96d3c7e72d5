"""Reference recipe 2: fine-tune an embedder the FlagEmbedding way.

    python -m bench.recipes.flag_recipe --project DIR --out DIR --model PATH [options]

What a user of FlagEmbedding 1.4.2 would do, following its repository (FlagOpen/FlagEmbedding):
scripts/hn_mine.py for hard negatives and examples/finetune/embedder/encoder_only/base.sh for
`python -m FlagEmbedding.finetune.embedder.encoder_only.base`:

1. FlagEmbedding's training data: one {"query", "pos": [...]} per train query.
2. Mine hard negatives as hn_mine.py does: encode the corpus (candidate pool) and the queries with the base
   model (FlagEmbedding's own embedder), exact inner-product search (faiss IndexFlatIP) to rank 210, keep
   ranks 10-210 minus the query's positives and the query text, sample 15 of them at random (seeded here;
   hn_mine is unseeded), pad a short list with random corpus texts. Writes {"query", "pos", "neg"} jsonl.
3. Fine-tune with FlagEmbedding's encoder-only trainer in a subprocess: groups of 1 positive + --num-negatives
   negatives sampled from the 15 each epoch, in-batch negatives, temperature 0.02, mean pooling (the
   base model's pooling), normalised embeddings; the arguments of base.sh minus the GPU-only ones.
4. FlagEmbedding saves a raw Hugging Face model: wrap it as a sentence-transformers model with the
   training's pooling (Transformer + mean Pooling + Normalize) and save that to <out>/model.
5. Score val and test with exact cosine search (top 100) and ragtune's metric code; write result.json.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from bench.recipes import common
from ragtune.io import atomic_output, write_jsonl

SYSTEM = "FlagEmbedding recipe"
RANGE_MIN, RANGE_MAX = 10, 210  # hn_mine.py's default --range_for_sampling 10-210
MINED_NEGATIVES = 15            # hn_mine.py's default --negative_number
QUERY_MAX_LEN = 64              # SciFact claims are short; FlagEmbedding's default is 32
TEMPERATURE = 0.02              # FlagEmbedding's default and the value its examples use
POOLING = "mean"                # all-MiniLM-L6-v2 was trained with mean pooling (FlagEmbedding's default is cls)
WARMUP = 0.1


@click.command()
@common.options
def main(**args):
    """Mine hard negatives as FlagEmbedding does and fine-tune with its trainer; write <out>/result.json."""
    common.setup()
    common.run_main(lambda: run(**args))


def run(project: Path, out: Path, model: str, max_seq_length: int, batch_size: int, lr: float,
        epochs: int, num_negatives: int, seed: int, encode_batch_size: int, limit_queries: int | None,
        limit_docs: int | None) -> None:
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}
    config["recipe"] = {"range_for_sampling": f"{RANGE_MIN}-{RANGE_MAX}", "negative_number": MINED_NEGATIVES,
                        "train_group_size": num_negatives + 1, "query_max_len": QUERY_MAX_LEN,
                        "passage_max_len": max_seq_length, "temperature": TEMPERATURE,
                        "sentence_pooling_method": POOLING, "warmup_ratio": WARMUP, "dataloader_drop_last": True}
    data = common.load_project(project, limit_queries, limit_docs)
    timer = common.Timer()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".flag-work-", dir=out))
    try:
        # 1. One group per train query with all its positives.
        groups = data.train_groups()

        # 2. Mine hard negatives as hn_mine.py does.
        with timer.step("mine"):
            padded = mine(groups, list(data.corpus.values()), model, max_seq_length, encode_batch_size, seed)
        train_file = work / "train.jsonl"
        write_jsonl(train_file, groups)

        # 3. Fine-tune with FlagEmbedding's trainer.
        with timer.step("train"):
            fe_dir, steps = train(train_file, work, model, max_seq_length, batch_size, lr, epochs,
                                  num_negatives, seed, out / "flag_train.log")

        # 4. Wrap the raw Hugging Face model as a sentence-transformers model (modules.json included).
        st_model = to_sentence_transformer(fe_dir, max_seq_length)
        with atomic_output(out / "model", is_dir=True) as tmp:
            st_model.save_pretrained(str(tmp))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # 5. Score the fine-tuned model.
    with timer.step("evaluate"):
        scores = common.evaluate(st_model, data, encode_batch_size)

    common.write_result(out, {
        "system": SYSTEM,
        "config": config,
        "test": scores["test"],
        "val": scores["val"],
        "steps": timer.steps,
        "cpu_seconds": timer.cpu,
        "train_queries": len(groups),
        "train_rows": len(groups),  # FlagEmbedding trains one group per query (a random positive each time)
        "dropped_pairs": 0,         # hn_mine.py pads short negative lists with random texts, drops nothing
        "train_steps": steps,
        "padded_queries": padded,   # queries whose 15 negatives needed random corpus texts
    })


def mine(groups: list[dict], corpus: list[str], model_path: str, max_seq_length: int, batch_size: int,
         seed: int) -> int:
    """hn_mine.py's find_knn_neg with the corpus as candidate pool; adds "neg" to each group in place.
    Returns how many groups were padded with random corpus texts."""
    import faiss
    import numpy as np
    from FlagEmbedding import FlagAutoModel

    rng = random.Random(seed)
    # hn_mine.py de-duplicates with list(set(...)), whose order changes per process; keep the first order.
    corpus = list(dict.fromkeys(corpus))
    embedder = FlagAutoModel.from_finetuned(
        model_name_or_path=str(model_path), model_class="encoder-only-base", normalize_embeddings=True,
        pooling_method=POOLING, use_fp16=False, devices=common.device(), trust_remote_code=False,
        batch_size=batch_size, query_max_length=QUERY_MAX_LEN, passage_max_length=max_seq_length)
    p_vecs = embedder.encode_corpus(corpus)
    q_vecs = embedder.encode_queries([g["query"] for g in groups])
    index = faiss.IndexFlatIP(p_vecs.shape[1])
    index.add(np.asarray(p_vecs, dtype=np.float32))
    _, all_inxs = index.search(np.asarray(q_vecs, dtype=np.float32), RANGE_MAX)
    padded = 0
    for group, inxs in zip(groups, all_inxs.tolist()):
        candidates = []
        for inx in inxs[RANGE_MIN:RANGE_MAX]:
            if inx == -1:  # fewer documents than RANGE_MAX
                break
            if corpus[inx] not in group["pos"] and corpus[inx] != group["query"]:
                candidates.append(inx)
        if len(candidates) > MINED_NEGATIVES:
            candidates = rng.sample(candidates, MINED_NEGATIVES)
        group["neg"] = [corpus[i] for i in candidates]
        if len(group["neg"]) < MINED_NEGATIVES:
            padded += 1
            samples = rng.sample(corpus, MINED_NEGATIVES - len(group["neg"]) + len(group["pos"]))
            samples = [s for s in samples if s not in group["pos"]]
            group["neg"].extend(samples[:MINED_NEGATIVES - len(group["neg"])])
    common.log.info("mined %d negatives for each of %d queries (%d padded with random texts)",
                    MINED_NEGATIVES, len(groups), padded)
    return padded


def train(train_file: Path, work: Path, model_path: str, max_seq_length: int, batch_size: int, lr: float,
          epochs: int, num_negatives: int, seed: int, log_path: Path) -> tuple[Path, int]:
    """Run FlagEmbedding's encoder-only embedder fine-tuning; returns (its output folder, optimizer steps)."""
    output_dir = work / "fe_model"  # must not exist or be empty: FlagEmbedding refuses otherwise
    cmd = [
        sys.executable, "-m", "FlagEmbedding.finetune.embedder.encoder_only.base",
        "--model_name_or_path", str(model_path),
        "--train_data", str(train_file),
        "--cache_path", str(work / "datasets_cache"),  # else the datasets cache lands in ~/.cache
        "--train_group_size", str(num_negatives + 1),  # same negatives budget as the other systems
        "--query_max_len", str(QUERY_MAX_LEN),
        "--passage_max_len", str(max_seq_length),
        "--pad_to_multiple_of", "8",
        "--knowledge_distillation", "False",
        "--output_dir", str(output_dir),  # no --overwrite_output_dir: transformers 5 rejects it
        "--learning_rate", str(lr),
        "--num_train_epochs", str(epochs),
        "--per_device_train_batch_size", str(batch_size),
        "--dataloader_drop_last", "True",
        "--warmup_steps", str(WARMUP),  # transformers 5 has no --warmup_ratio: a float below 1 is a ratio
        "--logging_steps", "10",
        "--log_level", "info",  # the trainer's "Total optimization steps" line, read back below
        "--save_strategy", "no",
        "--temperature", str(TEMPERATURE),
        "--sentence_pooling_method", POOLING,
        "--normalize_embeddings", "True",
        "--seed", str(seed),
        "--report_to", "none",
        # Left out from base.sh: --fp16 (fails on CPU), --gradient_checkpointing and --deepspeed (need
        # deepspeed), --negatives_cross_device (one process), --overwrite_output_dir (see above).
    ]
    if common.device() == "cpu":
        cmd.append("--use_cpu")
    env = dict(os.environ, WANDB_MODE="disabled")
    common.log.info("running: %s", " ".join(cmd))
    with open(log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.run(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        sys.stderr.write(text[-4000:])
        raise RuntimeError(f"FlagEmbedding fine-tuning failed (exit {proc.returncode}); log: {log_path}")
    # The trainer's own count; with --save_strategy no it writes no trainer_state.json to read it from.
    found = re.search(r"Total optimization steps = ([\d,]+)", text)
    if not found:
        raise RuntimeError(f"{log_path}: no 'Total optimization steps' line from the trainer")
    return output_dir, int(found.group(1).replace(",", ""))


def to_sentence_transformer(fe_dir: Path, max_seq_length: int):
    """FlagEmbedding's raw model as Transformer + mean Pooling + Normalize, the pooling it was trained with.
    (Loading the raw folder with SentenceTransformer(path) would silently skip the normalisation.)"""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(str(fe_dir), max_seq_length=max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), POOLING)
    return SentenceTransformer(modules=[transformer, pooling, Normalize()], device=common.device())


if __name__ == "__main__":
    main()
