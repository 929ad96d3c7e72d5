"""Print the results table of metrics/eval.json: `python -m ragtune.show [metrics/eval.json]`."""
from __future__ import annotations

import sys

from .errors import UserError
from .io import read_json

COLUMNS = ["nDCG@10", "MRR@10", "R@10", "R@100"]


def table(results: dict, columns: list[str] = COLUMNS) -> str:
    lines = ["| system | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for system, values in results.items():
        cells = [f"{values[c]:.4f}" if isinstance(values.get(c), (int, float)) else "-" for c in columns]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "metrics/eval.json"
    try:
        print(table(read_json(path)))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
