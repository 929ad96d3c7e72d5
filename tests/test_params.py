import pytest

from ragtune import params
from ragtune.errors import UserError


def test_repo_params_file_is_valid():
    p = params.load("params.yaml")
    assert p["epochs"] >= 1 and p["embedder"]["base"]


def test_defaults_fill_missing_keys():
    p = params.validate({"epochs": 3})
    assert p["epochs"] == 3 and p["mine"]["range_max"] == 50


@pytest.mark.parametrize("data, message", [
    ({"epochs": -1}, "epochs: must be >= 1, got -1"),
    ({"merge": {"weight": 1.5}}, "merge.weight: must be <= 1.0, got 1.5"),
    ({"merge": {"weight": "best"}}, "merge.weight: unknown value 'best'; allowed: auto"),
    ({"mine": {"range_min": 60, "range_max": 50}}, "mine.range_min: must be < mine.range_max (50), got 60"),
    ({"evaluate": {"first_stages": ["bm25", "colbert"]}}, "evaluate.first_stages: unknown value 'colbert'"),
    ({"embeder": {"lr": 1e-5}}, "embeder: unknown key (did you mean 'embedder'?)"),
    ({"embedder": {"lr": "fast"}}, "embedder.lr: expected a number"),
    ({"embedder": {"batch_sise": 8}}, "embedder.batch_sise: unknown key (did you mean 'embedder.batch_size'?)"),
    ({"seed": True}, "seed: expected an integer"),
    ({"device": "tpu"}, "device: unknown value 'tpu'"),
])
def test_bad_params_get_one_line_naming_the_key(data, message):
    with pytest.raises(UserError) as e:
        params.validate(data)
    assert str(e.value).startswith("params.yaml: ")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_scientific_notation_without_dot_is_a_number():
    # YAML 1.1 reads 5e-5 as a string; users write it that way with `dvc exp run -S embedder.lr=5e-5`.
    assert params.validate({"embedder": {"lr": "5e-5"}})["embedder"]["lr"] == 5e-5


def test_merge_weight_auto_is_allowed():
    assert params.validate({"merge": {"weight": "auto"}})["merge"]["weight"] == "auto"


def test_invalid_yaml_names_the_line(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("seed: 1\nepochs: [1\n")
    with pytest.raises(UserError, match=r"params.yaml:\d+: invalid YAML"):
        params.load(f)


def test_typo_in_a_nested_key_suggests_the_key_in_every_section():
    # The README promises this exact hint; an abbreviation counts as a near miss too.
    with pytest.raises(UserError, match=r"^params.yaml: reranker.learning_rate: unknown key "
                                        r"\(did you mean 'reranker.lr'\?\)"):
        params.validate({"reranker": {"learning_rate": 1e-4}})
    for section in ("ingest", "prepare", "mine", "embedder", "reranker", "merge", "evaluate", "security"):
        key = next(iter(params.defaults()[section]))
        with pytest.raises(UserError, match=rf"^params.yaml: {section}.{key}x: unknown key "
                                            rf"\(did you mean '{section}.{key}'\?\)"):
            params.validate({section: {key + "x": 1}})
    with pytest.raises(UserError, match=r"^params.yaml: ingest.llm.modle: unknown key \(did you mean 'ingest.llm.model'\?\)"):
        params.validate({"ingest": {"llm": {"modle": "x"}}})


def test_item_and_attribute_access_read_the_same_value():
    p = params.defaults()
    assert p["embedder"]["lr"] == p.embedder.lr and "lr" in p["embedder"] and "learning_rate" not in p["embedder"]
    with pytest.raises(KeyError):
        p["embedder"]["learning_rate"]
    p["mine"].update(range_min=60, range_max=100)  # validated together: the cross-key check sees both
    assert (p["mine"]["range_min"], p.mine.range_max) == (60, 100)
    with pytest.raises(UserError, match="^params.yaml: mine.range_min: must be < mine.range_max"):
        p["mine"]["range_min"] = 100


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _same(written, default) -> bool:
    if isinstance(default, float) and not isinstance(written, bool):
        return float(written) == default  # YAML reads 5e-5 (no dot) as a string
    return written == default


def test_params_yaml_lists_every_key_with_the_schema_default():
    import yaml

    written = _flat(yaml.safe_load(open("params.yaml", encoding="utf-8")))
    schema = params.leaf_keys()
    assert sorted(set(schema) - set(written)) == [], "keys missing from params.yaml"
    assert sorted(set(written) - set(schema)) == [], "params.yaml keys the schema does not know"
    assert {k: (written[k], d) for k, d in schema.items() if not _same(written[k], d)} == {}


def _readme_table() -> dict:
    """{key: default} from the `| key | default | meaning |` table under README's Parameters heading."""
    import re

    import yaml

    text = open("README.md", encoding="utf-8").read()
    section = text[text.index("## Parameters"):]
    section = section[:section.index("\n## ", 1)]
    rows = re.findall(r"^\| `([\w.]+)` \| `(.*?)` \| .* \|$", section, re.M)
    return {key: yaml.safe_load(default) for key, default in rows}


def test_readme_params_table_lists_every_key_with_the_schema_default():
    table = _readme_table()
    schema = params.leaf_keys()
    assert sorted(set(schema) - set(table)) == [], "keys missing from README's params table"
    assert sorted(set(table) - set(schema)) == [], "README's params table names keys the schema does not know"
    assert {k: (table[k], d) for k, d in schema.items() if not _same(table[k], d)} == {}


def test_a_deleted_line_gives_the_readme_default():
    import yaml

    full = yaml.safe_load(open("params.yaml", encoding="utf-8"))
    del full["reranker"]["max_length"]
    assert params.validate(full)["reranker"]["max_length"] == _readme_table()["reranker.max_length"] == 128
