"""What every stage script shares: logging, params, seeding, timing, and the one-line error format."""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError

log = logging.getLogger("ragtune")

# OSErrors that are the environment's fault (no space, quota, read-only, permissions), not a bug.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _setup_env() -> None:
    # Keep Hugging Face caches inside the project, never in $HOME (must precede any HF import).
    root = Path.cwd()
    os.environ.setdefault("HF_HOME", str(root / ".cache" / "huggingface"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DVCLIVE_OPEN", "false")


def _sigterm(signum, frame):  # turn SIGTERM into an exception so atomic writes clean up
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def stage(name: str, params_path: str = "params.yaml") -> Iterator[dict]:
    """Run a stage body: yields validated params; user errors become one line and exit code 1."""
    _setup_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "dvclive", "sentence_transformers",
                  "FlagEmbedding", "transformers", "bm25s", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _sigterm)
    start = time.perf_counter()
    log.info("stage %s: started", name)
    try:
        from . import params as params_module
        params = params_module.load(params_path)
        params_module.trace_reads(name)
        from .models import seed_everything
        seed_everything(params["seed"])
        yield params
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        # The disk, not the code: full, read-only or forbidden. One line; atomic writes kept old outputs.
        if e.errno not in _DISK_ERRNOS:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}; outputs already written are unchanged", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as e:
        print(f"error: stage {name} interrupted ({e or 'Ctrl-C'}); no output was half-written",
              file=sys.stderr)
        sys.exit(130)
    log.info("stage %s: done in %.1f s", name, time.perf_counter() - start)

