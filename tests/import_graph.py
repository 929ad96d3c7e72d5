"""The ragtune import graph, read from the source (no imports run): what each stage's code depends on.

Every `import` / `from ... import` anywhere in a file counts, inside functions too: the code imports
heavy libraries lazily, and a lazy import runs as surely as a top-level one when its function is called.
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ragtune"


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of module `name` (`ragtune.x.y`) under root, or None when it is no module of ours."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.resolve().relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _with_parents(name: str) -> list[str]:
    """`ragtune.a.b` -> [ragtune, ragtune.a, ragtune.a.b]: importing a module runs its packages' __init__."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@cache
def direct_imports(path: Path, root: Path = ROOT) -> frozenset[str]:
    """The ragtune modules `path` imports anywhere in its body (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, root) if path.is_relative_to(root / PACKAGE) else ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from x import y`: y is a submodule or a name in x; both import x.
            targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != PACKAGE:
                continue
            for mod in _with_parents(target):
                if module_file(mod, root) is not None:
                    found.add(mod)
    found.discard(name)
    return frozenset(found)


def closure(path: Path, root: Path = ROOT) -> set[Path]:
    """`path` plus every ragtune file it imports, directly or not, relative to root."""
    seen = {path.resolve()}
    todo = [path.resolve()]
    while todo:
        for mod in direct_imports(todo.pop(), root):
            f = module_file(mod, root).resolve()
            if f not in seen:
                seen.add(f)
                todo.append(f)
    return {p.relative_to(root) for p in seen}


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """{module: the ragtune modules it imports}, for every module of the package."""
    return {module_name(p, root): set(direct_imports(p, root))
            for p in sorted((root / PACKAGE).rglob("*.py"))}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None. A package's own __init__ is left out: importing
    `ragtune.x` runs `ragtune/__init__.py` by definition, which is no dependency of x on its package."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def rewrite_dvc_deps(root: Path = ROOT) -> None:
    """Set each stage's code deps in dvc.yaml to its import closure, keeping data deps and comments."""
    import re

    import yaml

    text = (root / "dvc.yaml").read_text(encoding="utf-8")
    stages = yaml.safe_load(text)["stages"]
    lines, out, stage, i = text.splitlines(keepends=True), [], None, 0
    while i < len(lines):
        line = lines[i]
        if (m := re.match(r"^  (\w+):\s*$", line)) and m.group(1) in stages:
            stage = m.group(1)
        if stage and line.strip() == "deps:":
            out.append(line)
            i += 1
            data, indent = [], "      "
            while i < len(lines) and re.match(r"^\s+- ", lines[i]):
                indent = lines[i][: lines[i].index("-")]
                item = lines[i].split("- ", 1)[1].strip()
                if not item.endswith(".py"):
                    data.append(item)
                i += 1
            script = root / stages[stage]["cmd"].split()[1]
            code = sorted(str(p) for p in closure(script, root) if p != script.relative_to(root))
            out += [f"{indent}- {item}\n" for item in [str(script.relative_to(root)), *code, *data]]
            stage = None
            continue
        out.append(line)
        i += 1
    (root / "dvc.yaml").write_text("".join(out), encoding="utf-8")


if __name__ == "__main__":  # python tests/import_graph.py [project]: make dvc.yaml's code deps true again
    import sys

    rewrite_dvc_deps(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT)
