"""dvc.yaml tells the truth about code: each stage depends on exactly the files its script runs."""
from __future__ import annotations

import yaml

from import_graph import ROOT, closure

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_closure(stage: dict) -> set[str]:
    """The stage script and every ragtune file it imports, as dvc.yaml paths."""
    script = ROOT / stage["cmd"].split()[1]
    return {str(p) for p in closure(script)}


def code_deps(stage: dict) -> set[str]:
    return {d for d in stage["deps"] if str(d).endswith(".py")}


def test_each_stage_depends_on_exactly_its_import_closure():
    wrong = {}
    for name, stage in STAGES.items():
        need, have = stage_closure(stage), code_deps(stage)
        if need != have:
            wrong[name] = {"missing": sorted(need - have), "not imported": sorted(have - need)}
    assert not wrong, f"{wrong}; `python tests/import_graph.py` rewrites dvc.yaml's code deps"


def test_every_stage_runs_a_script_of_its_own():
    scripts = [stage["cmd"].split() for stage in STAGES.values()]
    assert all(cmd[0] == "python" and cmd[1].startswith("stages/") for cmd in scripts)
    assert len({cmd[1] for cmd in scripts}) == len(scripts)


def test_closure_follows_lazy_and_relative_imports():
    """The walker sees imports inside functions and resolves `from ..x import y` (no false truth)."""
    evaluate = stage_closure(STAGES["evaluate"])
    # pipeline/evaluate.py -> ..evaluate (relative, two dots) -> .rerank (inside a function)
    assert {"ragtune/pipeline/evaluate.py", "ragtune/evaluate.py", "ragtune/rerank.py"} <= evaluate
    assert "ragtune/train_embedder.py" not in evaluate


def test_rewrite_restores_a_removed_dep_and_keeps_data_deps(tmp_path):
    import shutil
    import subprocess
    import sys

    for name in ("ragtune", "stages"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    text = (ROOT / "dvc.yaml").read_text()
    assert "      - ragtune/rerank.py\n" in text
    (tmp_path / "dvc.yaml").write_text(text.replace("      - ragtune/rerank.py\n", "", 1))
    # The command the README shows, on a copy of the project.
    subprocess.run([sys.executable, str(ROOT / "tests" / "import_graph.py"), str(tmp_path)], check=True)
    assert (tmp_path / "dvc.yaml").read_text() == text
