"""Train / val / test splits of the queries, with leakage checks that hold after every split.

Splits the source already has are honoured (SciFact's test stays test); what is missing is carved,
seeded, from train (val) or from "all" (val and test). With `group_by`, whole groups (a conversation,
a domain) move together so no group is in two splits. When `group_by` is null and every query's
metadata has a "conversation_id" (ingest.source: conversations does this), queries are grouped by
conversation: the turns of one conversation share context, so splitting them would leak. Set
`group_by` to another metadata key to override.

`test_split` names the source split to evaluate on (say "dev", to keep a dataset's real test set
untouched while you tune): it becomes the test split, a source split called test is then left out,
and val is carved from train as usual. Null means the source's "test" when it has one, else carved.
Naming a split the source does not have is an error. After splitting, these always hold:
- no query id is in two splits, and no group is;
- no train query text equals (case/whitespace-insensitive) a val or test query text: such train
  queries are dropped and counted, so the model never trains on an evaluation question;
- no train query is a test positive (same id as a test positive document, or the same text):
  dropped and counted;
- every kept query has at least one positive judgment (score > 0); others are dropped and counted.
"""
from __future__ import annotations

import logging
import random
from typing import Any

from .errors import UserError
from .io import Qrels
from .querygen import normalize

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Names sources use for their splits, mapped onto ours ("dev" is BEIR's usual name for validation).
ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
           "test": "test", "all": "all"}
DEFAULT_GROUP = "conversation_id"


def source_splits(names: list[str], where: str = "qrels") -> dict[str, str]:
    """{file name: our split name} for a source's qrels/<name>.tsv files (dev -> val). An unknown name,
    a split given twice or all.tsv beside other splits is a UserError naming the file (`where`/name.tsv)."""
    out: dict[str, str] = {}
    for name in sorted(names):
        ours = ALIASES.get(name.lower())
        if ours is None:
            allowed = ", ".join(f"{a} (= {o})" if a != o else a for a, o in ALIASES.items())
            raise UserError(f"{where}/{name}.tsv: unknown split name '{name}'; allowed: {allowed}")
        if ours in out.values():
            raise UserError(f"{where}/{name}.tsv: split '{ours}' given twice")
        out[name] = ours
    if "all" in out.values() and len(out) > 1:
        raise UserError(f"{where}: give either {where}/all.tsv or train/val/test files, not both")
    return out


def default_group_by(queries: dict[str, dict[str, Any]], group_by: str | None) -> str | None:
    """`group_by` when set; else "conversation_id" when every query's metadata has one; else None."""
    if group_by:
        return group_by
    if queries and all(q.get("metadata", {}).get(DEFAULT_GROUP) is not None for q in queries.values()):
        return DEFAULT_GROUP
    return None


def _choose_test(qrels_by_split: dict[str, Qrels], test_split: str | None) -> tuple[dict[str, Qrels], list[str]]:
    """Rename the split `test_split` to "test" and leave out any other test split: (splits, left out)."""
    if not test_split:
        return qrels_by_split, []
    if test_split not in qrels_by_split:
        have = ", ".join(sorted(qrels_by_split)) or "none"
        raise UserError(f"params.yaml: prepare.test_split: the data has no split '{test_split}' "
                        f"(qrels/{test_split}.tsv); its splits are: {have}")
    if ALIASES.get(test_split.lower()) == "all":
        raise UserError(f"params.yaml: prepare.test_split: '{test_split}' holds every query; name a split "
                        f"such as test or dev, or leave test_split null to carve one")
    out, left_out = {}, []
    for name, qrels in qrels_by_split.items():
        if name == test_split:
            out["test"] = qrels
        elif ALIASES.get(name.lower()) == "test":
            left_out.append(name)
        else:
            out[name] = qrels
    return out, sorted(left_out)


def _positive(qrels: Qrels) -> tuple[Qrels, int]:
    """Keep only queries with a judgment > 0; return them and how many were dropped."""
    kept = {q: dict(d) for q, d in qrels.items() if any(s > 0 for s in d.values())}
    return kept, len(qrels) - len(kept)


def _group(qid: str, queries: dict, group_by: str | None) -> str:
    if not group_by:
        return qid
    value = queries.get(qid, {}).get("metadata", {}).get(group_by)
    # A query without the key is its own group: nothing to keep together.
    return f"group:{value}" if value is not None else f"query:{qid}"


def _carve(qrels: Qrels, fraction: float, queries: dict, group_by: str | None,
           rng: random.Random) -> tuple[Qrels, Qrels]:
    """Move about `fraction` of the queries (whole groups, shuffled) out of `qrels`: (rest, carved)."""
    if fraction <= 0 or not qrels:
        return qrels, {}
    groups: dict[str, list[str]] = {}
    for qid in sorted(qrels):
        groups.setdefault(_group(qid, queries, group_by), []).append(qid)
    order = sorted(groups)
    rng.shuffle(order)
    target = round(fraction * len(qrels))
    carved: set[str] = set()
    for g in order:
        if len(carved) >= target:
            break
        carved.update(groups[g])
    return ({q: d for q, d in qrels.items() if q not in carved},
            {q: d for q, d in qrels.items() if q in carved})


def split_queries(queries: dict[str, dict[str, Any]], qrels_by_split: dict[str, Qrels], cfg: dict,
                  seed: int, corpus: dict[str, dict[str, str]] | None = None
                  ) -> tuple[dict[str, Qrels], dict[str, Any]]:
    """Split judged queries into {"train","val","test"} qrels; `cfg` is params["prepare"].

    `qrels_by_split` maps the source's split names (train/dev/val/test/all) to qrels. `corpus`, when
    given, lets the test-positive check compare texts too. Returns (split qrels, stats for
    metrics/splits.json).
    """
    rng = random.Random(seed)
    group_by = default_group_by(queries, cfg["group_by"])
    val_fraction, test_fraction = cfg["val_fraction"], cfg["test_fraction"]
    stats: dict[str, Any] = {"source_splits": sorted(qrels_by_split), "group_by": group_by,
                             "dropped": {"no_positive": 0, "unknown_query": 0, "duplicate_of_eval_text": 0,
                                         "test_positive_as_query": 0}}
    qrels_by_split, left_out = _choose_test(qrels_by_split, cfg["test_split"])
    if left_out:
        stats["left_out_splits"] = left_out
        log.info("splits: prepare.test_split is '%s'; left out: %s", cfg["test_split"], ", ".join(left_out))

    given: dict[str, Qrels] = {}
    for name, ours in source_splits(list(qrels_by_split)).items():
        qrels, dropped = _positive(qrels_by_split[name])
        stats["dropped"]["no_positive"] += dropped
        unknown = sorted(q for q in qrels if q not in queries)
        if unknown:  # ingest validates this; count rather than crash on hand-made prepared inputs
            stats["dropped"]["unknown_query"] += len(unknown)
            qrels = {q: d for q, d in qrels.items() if q in queries}
        given[ours] = qrels
    _check_given(given, queries, group_by)

    carved = []
    if "all" in given:
        rest, test = _carve(given["all"], test_fraction, queries, group_by, rng)
        # val_fraction is a share of all queries: rescale it to what is left after test.
        rest, val = _carve(rest, val_fraction / (1 - test_fraction), queries, group_by, rng)
        splits, carved = {"train": rest, "val": val, "test": test}, ["val", "test"]
    else:
        splits = {s: given.get(s, {}) for s in SPLITS}
        n_train = len(splits["train"])
        for s, fraction in (("test", test_fraction), ("val", val_fraction)):
            if s not in given:  # carved from train; fractions are shares of the train queries given
                splits["train"], splits[s] = _carve(splits["train"], fraction * n_train / max(
                    len(splits["train"]), 1), queries, group_by, rng)
                carved.append(s)
    stats["carved"] = carved
    if not any(splits.values()):
        raise UserError("no judged queries with a positive score: nothing to split")

    _drop_leaks(splits, queries, corpus, stats)
    limit = cfg["train_queries"]
    if limit is not None and limit < len(splits["train"]):
        # A seeded subsample of what train would be, after val and test are fixed: the same val and
        # test whatever the limit, so settings with fewer labels are compared on the same questions.
        keep = set(random.Random(f"{seed}:train_queries").sample(sorted(splits["train"]), limit))
        stats["train_queries_before_limit"] = len(splits["train"])
        splits["train"] = {q: d for q, d in splits["train"].items() if q in keep}

    for s in SPLITS:
        qs = splits[s]
        stats[s] = {"queries": len(qs), "judgments": sum(len(d) for d in qs.values()),
                    "positives": sum(sum(v > 0 for v in d.values()) for d in qs.values()),
                    "groups": len({_group(q, queries, group_by) for q in qs})}
    log.info("splits: train %d, val %d, test %d queries (carved: %s); dropped %s", stats["train"]["queries"],
             stats["val"]["queries"], stats["test"]["queries"], ", ".join(carved) or "none", stats["dropped"])
    _assert_guarantees(splits, queries, group_by)
    return splits, stats


def _check_given(given: dict[str, Qrels], queries: dict, group_by: str | None) -> None:
    """The splits the user gave must already be disjoint in query ids and (with group_by) groups:
    otherwise it is their data, so say which files and which id."""
    names = sorted(given)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(set(given[a]) & set(given[b]))
            if both:
                raise UserError(f"qrels/{a}.tsv and qrels/{b}.tsv: {len(both)} query id(s) in both "
                                f"splits, e.g. '{both[0]}'; a query must be in one split only")
            if group_by:
                ga = {_group(q, queries, group_by) for q in given[a]}
                shared = sorted(ga & {_group(q, queries, group_by) for q in given[b]})
                if shared:
                    raise UserError(f"qrels/{a}.tsv and qrels/{b}.tsv: {len(shared)} group(s) of "
                                    f"metadata '{group_by}' in both splits, e.g. "
                                    f"{shared[0].split(':', 1)[1]!r}; with prepare.group_by set, "
                                    f"no group may be in two splits")


def _drop_leaks(splits: dict[str, Qrels], queries: dict, corpus: dict | None, stats: dict) -> None:
    eval_texts = {normalize(queries[q]["text"]) for s in ("val", "test") for q in splits[s]}
    test_pos = {d for q in splits["test"] for d, v in splits["test"][q].items() if v > 0}
    if corpus is not None and hasattr(corpus, "subset"):  # an io.CorpusFile: read just these texts
        corpus = corpus.subset(test_pos)
    test_pos_texts = {normalize(corpus[d]["text"]) for d in test_pos if corpus and d in corpus}
    for q in sorted(splits["train"]):
        text = normalize(queries[q]["text"])
        if text in eval_texts:
            stats["dropped"]["duplicate_of_eval_text"] += 1
        elif q in test_pos or text in test_pos_texts:
            stats["dropped"]["test_positive_as_query"] += 1
        else:
            continue
        del splits["train"][q]


def _assert_guarantees(splits: dict[str, Qrels], queries: dict, group_by: str | None) -> None:
    """What every split must satisfy; a failure here is a bug in this module, not in the input."""
    seen: dict[str, str] = {}
    groups: dict[str, str] = {}
    for s in SPLITS:
        for q, docs in splits[s].items():
            assert q not in seen, f"query {q} in {seen[q]} and {s}"
            seen[q] = s
            assert any(v > 0 for v in docs.values()), f"query {q} in {s} has no positive"
            g = _group(q, queries, group_by)
            assert groups.setdefault(g, s) == s, f"group {g} in {groups[g]} and {s}"
    eval_texts = {normalize(queries[q]["text"]) for s in ("val", "test") for q in splits[s]}
    test_pos = {d for docs in splits["test"].values() for d, v in docs.items() if v > 0}
    for q in splits["train"]:
        assert normalize(queries[q]["text"]) not in eval_texts, f"train query {q} repeats an eval query"
        assert q not in test_pos, f"train query {q} is a test positive"
