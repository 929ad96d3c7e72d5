"""Stage 6 (merge): average fine-tuned and base weights (LM-Cocktail) for both models."""
import click

from ragtune.cli import stage, verbose_option


@click.command()
@verbose_option
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--embedder", "embedder_dir", default="models/embedder", show_default=True, help="fine-tuned embedder")
@click.option("--reranker", "reranker_dir", default="models/reranker", show_default=True, help="fine-tuned reranker")
@click.option("--negatives", "negatives_dir", default="data/negatives", show_default=True, help="val groups, for merge.weight: auto")
@click.option("--embedder-out", "embedder_out", default="models/embedder-merged", show_default=True, help="merged embedder")
@click.option("--reranker-out", "reranker_out", default="models/reranker-merged", show_default=True, help="merged reranker")
@click.option("--stats", "stats_path", default="metrics/merge.json", show_default=True, help="merge weights and val scores (DVC metrics)")
def main(params_path, embedder_dir, reranker_dir, negatives_dir, embedder_out, reranker_out, stats_path):
    """Average fine-tuned and base weights (LM-Cocktail) for both models."""
    with stage("merge", params_path) as params:
        from ragtune.pipeline import merge

        merge.run(params, embedder_dir=embedder_dir, reranker_dir=reranker_dir, negatives_dir=negatives_dir, embedder_out=embedder_out, reranker_out=reranker_out, stats_path=stats_path)


if __name__ == "__main__":
    main()
