"""What every stage script shares: logging, params, seeding, timing, and the one-line error format."""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import click

from .errors import UserError
from .logs import VERBOSE_ENV, progress_bars, verbose

log = logging.getLogger("ragtune")

# OSErrors that are the environment's fault (no space, quota, read-only, permissions), not a bug.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _set_verbose(ctx, param, value) -> None:
    if value:
        os.environ[VERBOSE_ENV] = "1"


# `@verbose_option` on a stage's click command: `-v` is the same as RAGTUNE_VERBOSE=1.
verbose_option = click.option("-v", "--verbose", is_flag=True, expose_value=False, is_eager=True,
                              callback=_set_verbose, help=f"detailed logs (or set {VERBOSE_ENV}=1)")


def _setup_env() -> None:
    # Keep Hugging Face caches inside the project, never in $HOME (must precede any HF import).
    root = Path.cwd()
    os.environ.setdefault("HF_HOME", str(root / ".cache" / "huggingface"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DVCLIVE_OPEN", "false")
    if not verbose():
        # transformers' warnings (load reports with ANSI bold, advice for library users) are not ours.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not progress_bars():  # read at import: tqdm's default, the Hugging Face libraries' switches
        for name in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
            os.environ.setdefault(name, "1")


def _setup_logging() -> None:
    """By default one line per step: ragtune at INFO, the libraries at WARNING (bm25s and others set
    their own loggers to INFO at import, so the handler filters, not the logger levels)."""
    level = logging.DEBUG if verbose() else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    floor = logging.INFO if verbose() else logging.WARNING
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda r: r.name.split(".")[0] == "ragtune" or r.levelno >= floor)
    if not verbose():
        # FlagEmbedding's collator pads features it already truncated, passing max_length along: harmless.
        warnings.filterwarnings("ignore", message=r"`max_length` is ignored when `padding`=`True`")


_signalled: list[int] = []  # the signals received, so a wrapped KeyboardInterrupt is still recognised


def _sigterm(signum, frame):  # turn SIGTERM into an exception so atomic writes clean up
    _signalled.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def _interrupted(name: str, reason: str) -> None:
    print(f"error: stage {name} interrupted ({reason}); no output was half-written", file=sys.stderr)
    sys.exit(130)


@contextlib.contextmanager
def stage(name: str, params_path: str = "params.yaml") -> Iterator[dict]:
    """Run a stage body: yields validated params; user errors become one line and exit code 1."""
    _setup_env()
    _setup_logging()
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
        _interrupted(name, str(e) or "Ctrl-C")
    except Exception:
        # A signal that lands inside a library's lazy import comes out wrapped (transformers re-raises it
        # as ModuleNotFoundError); it is still the interruption, not a bug to show a traceback for.
        if not _signalled:
            raise
        _interrupted(name, f"signal {_signalled[0]}")
    log.info("stage %s: done in %.1f s", name, time.perf_counter() - start)

