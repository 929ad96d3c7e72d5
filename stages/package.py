"""Stage 8 (package): ship-ready model folders, each with its model card (README.md)."""
import click

from ragtune.cli import stage, verbose_option


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--models", "models_dir", default="models", show_default=True, help="folder with embedder/, reranker/ and their -merged copies")
@click.option("--metrics", "metrics_dir", default="metrics", show_default=True, help="the earlier stages' metrics files, which the cards quote")
@click.option("--out", "out_dir", default="release", show_default=True, help="where <model>/ folders with README.md go")
def main(params_path, models_dir, metrics_dir, out_dir):
    """Ship-ready model folders (hard links to models/) with a Hugging Face model card each."""
    with stage("package", params_path) as params:
        from ragtune.pipeline import package

        package.run(params, models_dir=models_dir, metrics_dir=metrics_dir, out_dir=out_dir)


if __name__ == "__main__":
    main()
