"""Stage 2 (prepare): seeded, leakage-free train / val / test splits of the judged queries."""
import click

from ragtune.cli import stage, verbose_option


@click.command()
@verbose_option
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--raw", "raw_dir", default="data/raw", show_default=True, help="ingest's output folder")
@click.option("--out", "out_dir", default="data/prepared", show_default=True, help="queries.jsonl and qrels/{train,val,test}.tsv")
@click.option("--stats", "stats_path", default="metrics/splits.json", show_default=True, help="split statistics (DVC metrics)")
def main(params_path, raw_dir, out_dir, stats_path):
    """Seeded, leakage-free train / val / test splits of the judged queries."""
    with stage("prepare", params_path) as params:
        from ragtune.pipeline import prepare

        prepare.run(params, raw_dir=raw_dir, out_dir=out_dir, stats_path=stats_path)


if __name__ == "__main__":
    main()
