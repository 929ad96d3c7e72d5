"""Rooms with one job: no function in ragtune/ runs over ~80 lines (docstring and comments included)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80


def long_functions(root: Path, limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name}: {lines} lines")
    return found


def test_no_function_over_80_lines():
    assert long_functions(ROOT / "ragtune") == []


def test_the_check_sees_nested_functions(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"        x{i} = {i}" for i in range(81))
    (pkg / "m.py").write_text(f"class A:\n    def f(self):\n{body}\n")
    assert long_functions(pkg) == ["pkg/m.py:2 f: 82 lines"]
