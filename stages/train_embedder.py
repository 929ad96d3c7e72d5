"""Stage 4 (train_embedder): fine-tune the bi-encoder with sentence-transformers."""
import sys

import click

from ragtune.cli import stage, verbose_option


@click.command()
@verbose_option
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--negatives", "negatives_dir", default="data/negatives", show_default=True, help="mine's output folder")
@click.option("--out", "out_dir", default="models/embedder", show_default=True, help="SentenceTransformer folder")
@click.option("--stats", "stats_path", default="metrics/train_embedder.json", show_default=True, help="training statistics (DVC metrics)")
@click.option("--live", "live_dir", default="metrics/train_embedder", show_default=True, help="DVCLive training curves")
@click.option("--checkpoints", "checkpoint_dir", default="checkpoints/embedder", show_default=True, help="trainer checkpoints (not a DVC output)")
@click.option("--resume", is_flag=True, help="continue from the last checkpoint of an interrupted run")
def main(params_path, negatives_dir, out_dir, stats_path, live_dir, checkpoint_dir, resume):
    """Fine-tune the bi-encoder with sentence-transformers."""
    from ragtune import distributed

    distributed.setup_logging()  # under torchrun: rank-prefixed lines, warnings only from ranks > 0
    with stage("train_embedder", params_path) as params:
        # embedder.nproc > 1: run this same command on that many torchrun workers instead.
        nproc = params["embedder"]["nproc"]
        if distributed.relaunch("train_embedder", nproc, params["device"], "embedder.nproc", sys.argv):
            return
        from ragtune.pipeline import train_embedder

        train_embedder.run(params, negatives_dir=negatives_dir, out_dir=out_dir, stats_path=stats_path, live_dir=live_dir, checkpoint_dir=checkpoint_dir, resume=resume)


if __name__ == "__main__":
    main()
