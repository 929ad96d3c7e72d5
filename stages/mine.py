"""Stage 3 (mine): hard negatives for the train queries and a reranking-style val set."""
import click

from ragtune.cli import stage, verbose_option


@click.command()
@verbose_option
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--corpus", "corpus_path", default="data/raw/corpus.jsonl", show_default=True, help="the corpus")
@click.option("--prepared", "prepared_dir", default="data/prepared", show_default=True, help="prepare's output folder")
@click.option("--out", "out_dir", default="data/negatives", show_default=True, help="train.jsonl / val.jsonl in FlagEmbedding's format")
@click.option("--stats", "stats_path", default="metrics/mining.json", show_default=True, help="mining statistics (DVC metrics)")
def main(params_path, corpus_path, prepared_dir, out_dir, stats_path):
    """Hard negatives for the train queries and a reranking-style val set."""
    with stage("mine", params_path) as params:
        from ragtune.pipeline import mine

        mine.run(params, corpus_path=corpus_path, prepared_dir=prepared_dir, out_dir=out_dir, stats_path=stats_path)


if __name__ == "__main__":
    main()
