"""Print the results table of metrics/eval.json: `python -m ragtune.show [metrics/eval.json]`."""
from __future__ import annotations

import sys

from .errors import UserError
from .io import read_json
from .report import console_table


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "metrics/eval.json"
    try:
        results = read_json(path)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(console_table({s: {k: v for k, v in m.items() if k != "by_group"} for s, m in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
