"""Log lines every stage shares. A leaf module: stage functions import it, it imports nothing of ours."""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("ragtune")

VERBOSE_ENV = "RAGTUNE_VERBOSE"  # =1: detail from ragtune (DEBUG) and the libraries (INFO); works through dvc


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def progress_bars() -> bool:
    """Progress bars only where someone watches them (a terminal), or when asked for detail."""
    return verbose() or sys.stderr.isatty()


def summary(message: str) -> None:
    """The one-line result a stage ends with."""
    log.info("result: %s", message)
