"""Stage 1 (ingest): build the default corpus, or validate and normalise the user's data."""
import click

from ragtune.cli import stage, verbose_option


@click.command()
@verbose_option
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--out", "out_dir", default="data/raw", show_default=True, help="BEIR-format folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
@click.option("--stats", "stats_path", default="metrics/ingest.json", show_default=True, help="ingest statistics (DVC metrics)")
def main(params_path, out_dir, stats_path):
    """Build the default corpus, or validate and normalise the user's data."""
    with stage("ingest", params_path) as params:
        from ragtune.pipeline import ingest

        ingest.run(params, out_dir=out_dir, stats_path=stats_path)


if __name__ == "__main__":
    main()
