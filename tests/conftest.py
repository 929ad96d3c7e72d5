import os

# No test may touch the network or $HOME caches.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns xdist_group marks into groups
def pytest_collection_modifyitems(config, items):
    # `make test` runs on every core (pytest-xdist, --dist loadgroup). The tests that read the session's
    # one complete e2e repro (tests/e2e/conftest.py `reproduced`) share a worker, so it is built once.
    for item in items:
        if "reproduced" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("reproduced"))


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # Tiny models run far faster on one thread than with two threads contending (CI has 2 cores).
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path to a tiny random BERT saved as a sentence-transformers folder (built once per session)."""
    from tiny_model import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_xlmr(tmp_path_factory) -> str:
    """A tiny random XLM-RoBERTa with a Unigram (SentencePiece-style) tokenizer, as a sentence-transformers folder."""
    from tiny_model import build_tiny_xlmr

    return build_tiny_xlmr(tmp_path_factory.mktemp("tiny-xlmr"))


@pytest.fixture
def scifact() -> Path:
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"{SCIFACT} not present")
    return SCIFACT
