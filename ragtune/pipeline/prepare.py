"""Stage prepare: seeded, leakage-free train / val / test splits of the judged queries."""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import UserError
from ..io import CorpusFile, atomic_output, read_qrels, read_queries, write_json, write_qrels, write_queries
from ..logs import summary
from ..report import few_val_queries
from ..splits import SPLITS, split_queries

log = logging.getLogger(__name__)


def run(params: dict, *, raw_dir: str, out_dir: str, stats_path: str) -> None:
    raw = Path(raw_dir)
    queries = read_queries(raw / "queries.jsonl")
    qrels_files = sorted((raw / "qrels").glob("*.tsv"))
    if not qrels_files:
        raise UserError(f"{raw / 'qrels'}: no qrels/<split>.tsv files")
    qrels_by_split = {f.stem: read_qrels(f)[0] for f in qrels_files}
    corpus = CorpusFile(raw / "corpus.jsonl")  # streamed: lets the split refuse test positives as train queries
    split_qrels, stats = split_queries(queries, qrels_by_split, params["prepare"], seed=params["seed"],
                                       corpus=corpus)
    used = {qid for split in SPLITS for qid in split_qrels[split]}
    with atomic_output(out_dir, is_dir=True) as tmp:
        write_queries(tmp / "queries.jsonl", {qid: q for qid, q in queries.items() if qid in used})
        for split in SPLITS:
            write_qrels(tmp / "qrels" / f"{split}.tsv", split_qrels[split])
    write_json(stats_path, stats)
    if warning := few_val_queries(len(split_qrels["val"])):
        log.warning("%s", warning)
    summary(", ".join(f"{s}: {len(split_qrels[s])} queries" for s in SPLITS))
