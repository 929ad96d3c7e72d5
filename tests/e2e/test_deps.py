"""`dvc repro` reruns exactly what changed, for code too: an edited module makes exactly the stages that
import it (directly or not, lazily or not) out of date."""
from __future__ import annotations

import json

import pytest
import yaml

from import_graph import closure

from .conftest import run

pytestmark = pytest.mark.e2e

# A module only the reranker side uses, one of the retrieval side, and the trainers' shared helpers.
EDITED = ["ragtune/rerank.py", "ragtune/retrieval.py", "ragtune/training.py"]


def test_editing_a_module_makes_exactly_its_stages_out_of_date(reproduced_copy):
    project = reproduced_copy
    assert json.loads(run(["dvc", "status", "--json"], project).stdout) == {}
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    users = {name: {str(p) for p in closure(project / st["cmd"].split()[1], project)} for name, st in stages.items()}
    for module in EDITED:
        expected = {name for name, files in users.items() if module in files}
        assert expected and expected != set(stages)  # the check can tell a right answer from a wrong one
        with open(project / module, "a", encoding="utf-8") as f:
            f.write("\n# an edit\n")
        status = json.loads(run(["dvc", "status", "--json"], project).stdout)
        assert set(status) == expected, (module, status)
        for name in expected:
            assert {"changed deps": {module: "modified"}} in status[name], status[name]
        run(["git", "checkout", "--", module], project)
    assert json.loads(run(["dvc", "status", "--json"], project).stdout) == {}
