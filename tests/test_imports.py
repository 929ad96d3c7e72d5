"""The ragtune package imports one way: stage functions -> domain modules -> io/models/errors."""
from __future__ import annotations

from import_graph import find_cycle, graph

GRAPH = graph()
# The floor: every layer may use these; they use nothing above them.
BOTTOM = {"ragtune.errors", "ragtune.logs", "ragtune.io", "ragtune.models"}


def test_graph_reads_every_module():
    assert {"ragtune.pipeline.mine", "ragtune.evaluate", "ragtune.io"} <= set(GRAPH)
    assert "ragtune.io" in GRAPH["ragtune.pipeline.mine"]


def test_no_import_cycle():
    """Imports at module level and inside functions together form no cycle."""
    assert find_cycle(GRAPH) is None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_upward_import():
    upward = []
    for mod, deps in GRAPH.items():
        for dep in deps:
            if dep == "ragtune.cli":  # the stage scripts' shell: nothing in the library calls up to it
                upward.append((mod, dep))
            elif dep.startswith("ragtune.pipeline") and not mod.startswith("ragtune.pipeline"):
                upward.append((mod, dep))
            elif mod in BOTTOM and dep not in BOTTOM and dep != "ragtune":
                upward.append((mod, dep))
    assert not upward, upward


def test_pipeline_package_imports_no_stage():
    """ragtune/pipeline/__init__.py imports nothing, so a stage does not depend on the other stages."""
    assert GRAPH["ragtune.pipeline"] <= {"ragtune"}
