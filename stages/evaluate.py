"""Stage 7 (evaluate): every first stage x reranker on the test split, with trec_eval metrics."""
import click

from ragtune.cli import stage, verbose_option


@click.command()
@verbose_option
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--corpus", "corpus_path", default="data/raw/corpus.jsonl", show_default=True, help="the corpus")
@click.option("--prepared", "prepared_dir", default="data/prepared", show_default=True, help="prepare's output folder")
@click.option("--models", "models_dir", default="models", show_default=True, help="folder with embedder/, reranker/ and their -merged copies")
@click.option("--metrics", "metrics_dir", default="metrics", show_default=True, help="where eval.json, report.md, per_query.csv, runs/ and plots/ go")
def main(params_path, corpus_path, prepared_dir, models_dir, metrics_dir):
    """Every first stage x reranker on the test split, with trec_eval metrics."""
    with stage("evaluate", params_path) as params:
        from ragtune.pipeline import evaluate

        evaluate.run(params, corpus_path=corpus_path, prepared_dir=prepared_dir, models_dir=models_dir, metrics_dir=metrics_dir)


if __name__ == "__main__":
    main()
