import os

# No test may touch the network or $HOME caches.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import contextlib  # noqa: E402
import fcntl  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"

# The longest tests that read the session's e2e repro, longest first (from `make test`'s --durations).
LONGEST_ON_REPRO = ("test_readme_experiment_commands", "test_killed_trainer_resumes_to_the_same_model",
                    "test_param_changes_rerun_only_downstream_and_branches_diff",
                    "test_forced_repro_gives_identical_data_and_metrics")


def needs_repro(item) -> bool:
    return "reproduced" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items):
    # `make test` runs on every core (pytest-xdist). The session's one complete e2e repro
    # (tests/e2e/conftest.py `reproduced`) is built in the background as the session starts; the tests
    # that read it go last, so it is ready when they start, and longest first, so the workers end together.
    def rank(item) -> int:
        name = getattr(item, "originalname", item.name)
        return LONGEST_ON_REPRO.index(name) if name in LONGEST_ON_REPRO else len(LONGEST_ON_REPRO)

    items[:] = [i for i in items if not needs_repro(i)] + sorted(filter(needs_repro, items), key=rank)


def shared_dir(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this session sees (their base temps share a parent)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock on `path` (a lock file) across the session's processes."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def built_once(folder: Path, build) -> str:
    """`build(folder)` -> a path, run by the first worker that asks; the others wait for it to return
    (not for what it may have started) and get its path."""
    with locked(folder.with_name(folder.name + ".lock")):
        done = folder.with_name(folder.name + ".path")
        if not done.is_file():
            done.write_text(build(folder))
        return done.read_text()


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # Tiny models run far faster on one thread than with two threads contending (CI has 2 cores).
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path to a tiny random BERT saved as a sentence-transformers folder (built once per session)."""
    from tiny_model import build_tiny_bert

    return built_once(shared_dir(tmp_path_factory) / "tiny", build_tiny_bert)


@pytest.fixture(scope="session")
def tiny_xlmr(tmp_path_factory) -> str:
    """A tiny random XLM-RoBERTa with a Unigram (SentencePiece-style) tokenizer, as a sentence-transformers folder."""
    from tiny_model import build_tiny_xlmr

    return built_once(shared_dir(tmp_path_factory) / "tiny-xlmr", build_tiny_xlmr)


@pytest.fixture
def scifact() -> Path:
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"{SCIFACT} not present")
    return SCIFACT
