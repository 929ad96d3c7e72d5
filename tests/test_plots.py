"""The plots page: dvc.yaml's plots, their templates in .dvc/plots/ and the offline HTML page template."""
import json
import re
from pathlib import Path

import yaml
from configobj import ConfigObj

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / ".dvc" / "plots"
LEGEND_CHANNELS = ("color", "fill", "stroke", "strokeDash", "shape", "opacity", "size")


def plot_specs() -> dict[str, dict]:
    return {name: spec for entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
            for name, spec in entry.items()}


def channels(node, found=None) -> list[tuple[str, dict]]:
    """Every (channel, definition) of every `encoding` in a vega-lite spec."""
    found = [] if found is None else found
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "encoding":
                found += list(value.items())
            channels(value, found)
    elif isinstance(node, list):
        for value in node:
            channels(value, found)
    return found


def test_page_template_loads_vega_from_its_own_folder_only():
    config = ConfigObj(str(ROOT / ".dvc" / "config"))
    page = (ROOT / ".dvc" / config["plots"]["html_template"]).read_text()
    scripts = re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?([^\"' >]+)", page)
    makefile = (ROOT / "Makefile").read_text()
    fetched = re.search(r"^VEGA_JS\s*:=\s*(.+)$", makefile, re.M).group(1).split()
    assert scripts == fetched == ["vega.min.js", "vega-lite.min.js", "vega-embed.min.js"]
    assert "{plot_divs}" in page
    assert "{scripts}" not in page  # DVC would put its CDN <script> tags there
    assert "make plots" in page  # what the page says in place of each plot when vega is missing


def test_every_plot_has_a_template_without_a_revision_legend():
    names = sorted(p.stem for p in TEMPLATES.glob("*.json"))
    # DVC finds a template by `rglob(name + "*")`: no name may be the start of another.
    assert not [(a, b) for a in names for b in names if a != b and b.startswith(a)]
    used = set()
    for title, spec in plot_specs().items():
        used.add(spec["template"])
        template = json.loads((TEMPLATES / f"{spec['template']}.json").read_text())
        text = json.dumps(template)
        assert "<DVC_METRIC_DATA>" in text and "<DVC_METRIC_COLOR>" not in text, title
        for channel, definition in channels(template):
            # A legend of revisions: a single-revision view would say 'rev: workspace' for nothing.
            assert not (channel in LEGEND_CHANNELS and definition.get("field") == "rev"), (title, channel)
        # A colour for each series, named by the data (model, reranker, first stage), never a file path.
        colour = [d for c, d in channels(template) if c == "color"]
        assert colour and all(d["field"] not in ("filename", "field") for d in colour), title
    assert used == set(names)  # no template left over


def test_training_curves_are_the_trainers_dvclive_files():
    for title, spec in plot_specs().items():
        if spec["template"] == "training_curves":
            files = list(spec["y"])
            assert len(files) == 2 and [re.match(r"metrics/train_(\w+)/", f).group(1) for f in files] == \
                ["embedder", "reranker"], title
