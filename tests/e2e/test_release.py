"""`dvc repro` on the tiny model writes release/<model>/: loadable folders whose cards quote this run."""
import json

import yaml

from .conftest import run

MODELS = ("embedder", "reranker", "embedder-merged", "reranker-merged")


def test_dvc_repro_writes_model_cards(reproduced_copy, tiny_model):
    project = reproduced_copy
    results = json.loads((project / "metrics" / "eval.json").read_text())
    queries = [json.loads(line) for line in (project / "data/prepared/queries.jsonl").read_text().splitlines()]
    test_ids = {line.split("\t")[0] for line in (project / "data/prepared/qrels/test.tsv").read_text().splitlines()[1:]}
    test_texts = [q["text"] for q in queries if q["_id"] in test_ids]
    assert test_texts
    for model in MODELS:
        folder = project / "release" / model
        card = (folder / "README.md").read_text()
        fm = yaml.safe_load(card.split("---\n", 2)[1])
        assert fm["library_name"] == "sentence-transformers" and "license" in fm
        for entry in fm["model-index"][0]["results"]:
            for metric in entry["metrics"]:
                name, system = metric["name"].split(" (", 1)
                assert metric["value"] == results[system.rstrip(")")][name]  # exactly eval.json's number
        assert fm["model-index"][0]["results"], model
        for absolute in (str(project), tiny_model, "/tmp/", "/home/", "/work/"):
            assert absolute not in card, (model, absolute)
        assert not [t for t in test_texts if t in card]  # no test query leaks into a shipped card
        # Shared bytes, not a copy: the release file is the model's file (both hard links into DVC's cache).
        assert (folder / "model.safetensors").stat().st_ino == \
            (project / "models" / model / "model.safetensors").stat().st_ino

    from sentence_transformers import CrossEncoder, SentenceTransformer

    assert SentenceTransformer(str(project / "release/embedder"), device="cpu").encode(["q"]).shape[1] == 32
    assert CrossEncoder(str(project / "release/reranker"), device="cpu").predict([("q", "p")]).shape == (1,)
    status = run(["dvc", "status"], project)
    assert "up to date" in status.stdout, status.stdout

    # README: to fill in `license:`, unprotect the card first (it is a read-only link into DVC's cache).
    card = project / "release" / "embedder" / "README.md"
    assert not card.stat().st_mode & 0o222
    run(["dvc", "unprotect", "release/embedder/README.md"], project)
    card.write_text(card.read_text().replace("license: null", "license: apache-2.0", 1))
    assert yaml.safe_load(card.read_text().split("---\n", 2)[1])["license"] == "apache-2.0"
    assert "modified" in run(["dvc", "status"], project).stdout
    run(["dvc", "checkout", "--force", "release"], project)  # DVC's cache still holds the card as written
    assert "license: null" in card.read_text()
