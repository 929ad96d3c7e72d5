"""Stage 5 (train_reranker): fine-tune the cross-encoder with FlagEmbedding."""
import sys

import click

from ragtune.cli import stage, verbose_option


@click.command()
@verbose_option
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--negatives", "negatives_dir", default="data/negatives", show_default=True, help="mine's output folder")
@click.option("--out", "out_dir", default="models/reranker", show_default=True, help="HF sequence-classification folder")
@click.option("--stats", "stats_path", default="metrics/train_reranker.json", show_default=True, help="training statistics (DVC metrics)")
@click.option("--live", "live_dir", default="metrics/train_reranker", show_default=True, help="DVCLive training curves")
@click.option("--checkpoints", "checkpoint_dir", default="checkpoints/reranker", show_default=True, help="trainer checkpoints (not a DVC output)")
@click.option("--resume", is_flag=True, help="continue from the last checkpoint of an interrupted run")
def main(params_path, negatives_dir, out_dir, stats_path, live_dir, checkpoint_dir, resume):
    """Fine-tune the cross-encoder with FlagEmbedding."""
    from ragtune import distributed

    distributed.setup_logging()  # under torchrun: rank-prefixed lines, warnings only from ranks > 0
    with stage("train_reranker", params_path) as params:
        # reranker.nproc > 1: run this same command on that many torchrun workers instead.
        nproc = params["reranker"]["nproc"]
        if distributed.relaunch("train_reranker", nproc, params["device"], "reranker.nproc", sys.argv):
            return
        from ragtune.pipeline import train_reranker

        train_reranker.run(params, negatives_dir=negatives_dir, out_dir=out_dir, stats_path=stats_path, live_dir=live_dir, checkpoint_dir=checkpoint_dir, resume=resume)


if __name__ == "__main__":
    main()
