"""Optional, before `dvc repro` on a large corpus: fill the corpus-embedding cache, sharded over processes.

Not a DVC stage: mine and evaluate read the cache it fills (.cache/embeddings/, keyed by model, texts and
max_seq_length), so they skip the encoding. `--processes N` runs N torchrun workers, each encoding every N-th
shard (one GPU each on CUDA); a killed run resumes at the shards it had not written.
"""
import sys

import click

from ragtune.cli import stage, verbose_option


@click.command()
@verbose_option
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--corpus", "corpus_path", default="data/raw/corpus.jsonl", show_default=True, help="the corpus")
@click.option("--model", default=None, help="model folder or hub id [default: embedder.base]")
@click.option("--processes", "nproc", default=1, show_default=True, type=click.IntRange(min=1), help="worker processes")
def main(params_path, corpus_path, model, nproc):
    """Encode the corpus into the embeddings cache that mine and evaluate read."""
    from ragtune import distributed

    distributed.setup_logging()
    with stage("encode_corpus", params_path) as params:
        if distributed.relaunch("encode_corpus", nproc, params["device"], "--processes", sys.argv):
            return
        from ragtune.pipeline import encode_corpus

        encode_corpus.run(params, corpus_path=corpus_path, model=model)


if __name__ == "__main__":
    main()
