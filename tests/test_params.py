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
