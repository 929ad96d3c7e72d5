"""The one exception type for user mistakes: stage scripts print it as one line, never a traceback."""
from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem the user can fix (bad input file, bad param, missing model)."""


def located(path: str | Path, line: int | None, message: str, field: str | None = None) -> UserError:
    """Build an error that names the file, the line and the field: `corpus.jsonl:12: field '_id': missing`."""
    where = f"{path}:{line}" if line is not None else str(path)
    what = f"field '{field}': {message}" if field else message
    return UserError(f"{where}: {what}")
