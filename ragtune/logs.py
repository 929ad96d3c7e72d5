"""Log lines every stage shares. A leaf module: stage functions import it, it imports nothing of ours."""
from __future__ import annotations

import logging

log = logging.getLogger("ragtune")


def summary(message: str) -> None:
    """The one-line result a stage ends with."""
    log.info("result: %s", message)
