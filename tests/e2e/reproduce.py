"""The session's one e2e repro, run in the background: `python -m e2e.reproduce MODEL FOLDER` (from tests/).

Writes FOLDER/record.json last (atomically), which the `reproduced` fixture (conftest.py) waits for.
"""
import json
import sys
import traceback
from pathlib import Path

from .conftest import reproduce

if __name__ == "__main__":
    model, folder = sys.argv[1], Path(sys.argv[2])
    try:
        record = reproduce(folder, model)
    except Exception:  # the tests that wait for it show this instead of waiting out their deadline
        record = {"returncode": -1, "stdout": "", "stderr": traceback.format_exc()}
    tmp = folder / "record.json.tmp"
    tmp.write_text(json.dumps(record))
    tmp.rename(folder / "record.json")
