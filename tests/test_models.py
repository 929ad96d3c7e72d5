import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragtune import models, params
from ragtune.pipeline import merge, mine, train_embedder, train_reranker
from ragtune.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

CUSTOM_CODE = '''
from pathlib import Path

from transformers import BertConfig, BertForSequenceClassification, BertModel

Path(MARKER).write_text("yes")  # proof that loading ran this file (transformers runs a cached copy)


class CustomConfig(BertConfig):
    model_type = "ragtune-custom"


class CustomModel(BertModel):
    config_class = CustomConfig


class CustomForSequenceClassification(BertForSequenceClassification):
    config_class = CustomConfig
'''


def _copy(tiny_model: str, dst: Path) -> Path:
    shutil.copytree(tiny_model, dst)
    return dst


def _with_remote_code(tiny_model: str, dst: Path) -> Path:
    """A working model folder whose config sends transformers to custom.py (a custom architecture)."""
    path = _copy(tiny_model, dst)
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="ragtune-custom", num_labels=1,
                  auto_map={"AutoConfig": "custom.CustomConfig", "AutoModel": "custom.CustomModel",
                            "AutoModelForSequenceClassification": "custom.CustomForSequenceClassification"})
    (path / "config.json").write_text(json.dumps(config))
    (path / "custom.py").write_text(f"MARKER = {str(path / 'CODE_RAN')!r}\n" + CUSTOM_CODE)
    return path


def _security(**kw) -> dict:
    return dict(params.defaults()["security"], **kw)


# ---------------------------------------------------------------- resolve_model


def test_resolve_model(tmp_path):
    assert models.resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    packaged = models.resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert Path(packaged, "model.safetensors").is_file()
    with pytest.raises(UserError, match="no such directory"):
        models.resolve_model(str(tmp_path / "missing"))
    with pytest.raises(UserError, match=r"^params.yaml: embedder.base: no such directory '/nonexistent'"):
        models.resolve_model("/nonexistent", "embedder.base")


def _resolve_in_subprocess(tmp_path: Path, name: str, **env: str) -> subprocess.CompletedProcess:
    """resolve_model in a fresh process: huggingface_hub reads HF_HUB_OFFLINE and HF_HOME at import."""
    code = ("import sys; from ragtune.models import resolve_model; from ragtune.errors import UserError\n"
            "try: print(resolve_model(sys.argv[1], 'reranker.base'))\n"
            "except UserError as e: sys.exit(f'error: {e}')")
    full_env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    full_env.update(PYTHONPATH=str(ROOT), HF_HOME=str(tmp_path / "hf"), **env)
    return subprocess.run([sys.executable, "-c", code, name], env=full_env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "no network"])
def test_uncached_hub_id_offline_fails_fast_in_one_line(tmp_path, how):
    # "no network" for real: a proxy on a closed local port refuses every connection, as a machine
    # without a route to the hub would (the libraries alone retry for over a minute).
    env = {"HF_HUB_OFFLINE": "1"} if how == "HF_HUB_OFFLINE" else {"HTTPS_PROXY": "http://127.0.0.1:9",
                                                                    "HTTP_PROXY": "http://127.0.0.1:9"}
    start = time.perf_counter()
    proc = _resolve_in_subprocess(tmp_path, "some-org/some-model", **env)
    took = time.perf_counter() - start
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr  # one line, no retry chatter
    line = proc.stderr.strip()
    assert line.startswith("error: params.yaml: reranker.base: no local folder 'some-org/some-model'"), line
    assert "local model folder or the packaged default sentence-transformers/all-MiniLM-L6-v2" in line
    assert took < 20, f"took {took:.1f} s"  # the import is most of it


def test_cached_hub_id_loads_offline_from_the_cache(tmp_path, tiny_model):
    # The Hugging Face cache layout: models--org--name/{refs/main, snapshots/<commit>/...}.
    repo = tmp_path / "hf" / "hub" / "models--some-org--some-model"
    commit = "0" * 40
    shutil.copytree(tiny_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    proc = _resolve_in_subprocess(tmp_path, "some-org/some-model", HF_HUB_OFFLINE="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(repo / "snapshots" / commit)


# ---------------------------------------------------------------- check_model_dir


def test_plain_safetensors_folders_pass(tiny_model):
    models.check_model_dir(tiny_model, _security())
    models.check_model_dir(models.resolve_model("sentence-transformers/all-MiniLM-L6-v2"), _security())
    models.check_model_dir("some-org/some-model", _security())  # a hub id: the libraries refuse remote code themselves


@pytest.mark.parametrize("plant", ["auto_map", "tokenizer_auto_map", "py_file", "nested_py_file"])
def test_custom_code_is_refused_with_how_to_allow_it(tiny_model, tmp_path, plant):
    path = _copy(tiny_model, tmp_path / "m")
    if plant == "auto_map":
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps(dict(config, auto_map={"AutoModel": "x.Model"})))
    elif plant == "tokenizer_auto_map":
        config = json.loads((path / "tokenizer_config.json").read_text())
        (path / "tokenizer_config.json").write_text(json.dumps(dict(config, auto_map={"AutoTokenizer": ["x.T", None]})))
    elif plant == "py_file":
        (path / "modeling_x.py").write_text("print('hi')\n")
    else:  # a sentence-transformers custom module in a subfolder
        (path / "1_Pooling" / "custom_pooling.py").write_text("print('hi')\n")
    with pytest.raises(UserError) as e:
        models.check_model_dir(str(path), _security())
    assert "custom code" in str(e.value) or "Python code" in str(e.value)
    assert "set security.trust_remote_code: true in params.yaml" in str(e.value)
    models.check_model_dir(str(path), _security(trust_remote_code=True))  # allowed when the user says so


def test_pickle_only_weights_are_refused_unless_allowed(tiny_model, tmp_path):
    path = _copy(tiny_model, tmp_path / "m")
    (path / "model.safetensors").rename(path / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"only pickle weights \(pytorch_model.bin\).*security.allow_pickle: true"):
        models.check_model_dir(str(path), _security())
    models.check_model_dir(str(path), _security(allow_pickle=True))
    (path / "model.safetensors").write_bytes(b"")  # safetensors present: the libraries load those first
    models.check_model_dir(str(path), _security())
    # Trainer leftovers are not weights.
    other = _copy(tiny_model, tmp_path / "m2")
    (other / "training_args.bin").write_bytes(b"x")
    models.check_model_dir(str(other), _security())


# ---------------------------------------------------------------- every user-named model is checked


def _params(**over) -> dict:
    p = params.defaults()
    for key, value in over.items():
        section, leaf = key.split(".")
        p[section][leaf] = value
    return p


@pytest.mark.parametrize("where", ["embedder.base", "reranker.base", "mine.rescore_with"])
def test_stages_refuse_a_custom_code_model_before_anything_else(tiny_model, tmp_path, where):
    bad = str(_with_remote_code(tiny_model, tmp_path / "custom"))
    p = _params(**{where: bad})
    p["mine"]["first_stage"] = "hybrid"  # bm25 mining loads no embedder, so it does not check embedder.base
    missing = str(tmp_path / "missing")  # inputs do not exist: the model check must come first
    calls = [lambda: mine.run(p, corpus_path=missing, prepared_dir=missing, out_dir=missing,
                              stats_path=missing)]
    if where != "mine.rescore_with":
        kind = where.split(".")[0]
        train = {"embedder": train_embedder, "reranker": train_reranker}[kind]
        calls.append(lambda: train.run(
            p, negatives_dir=missing, out_dir=missing, stats_path=missing, live_dir=missing,
            checkpoint_dir=missing, resume=False))
        calls.append(lambda: merge.run(p, embedder_dir=missing, reranker_dir=missing, negatives_dir=missing,
                                       embedder_out=missing, reranker_out=missing, stats_path=missing))
        from ragtune.evaluate import _model_paths

        calls.append(lambda: _model_paths(p, tmp_path / "models"))
    if where == "reranker.base":
        # mine does not use the reranker; merge checks each base just before merging it (the embedder,
        # whose missing input fails first here, comes first: the embedder.base case covers merge).
        calls = [calls[1], calls[3]]
    for call in calls:
        with pytest.raises(UserError, match="security.trust_remote_code"):
            call()
    assert not (tmp_path / "custom" / "CODE_RAN").exists()
    p["security"]["trust_remote_code"] = True
    models.checked_model(bad, p["security"])  # allowed


def test_loads_pass_trust_remote_code_from_params(tiny_model, tmp_path, monkeypatch):
    """The libraries run a model folder's code only when params allow it (the value is passed explicitly)."""
    import sys

    import transformers.dynamic_module_utils as dynamic

    from ragtune import embeddings, rerank

    # transformers copies trusted code into a modules cache under $HF_HOME: keep it in tmp_path.
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = _with_remote_code(tiny_model, tmp_path / "custom")
    with pytest.raises(Exception, match="trust_remote_code"):
        embeddings.load_model(str(path), device="cpu", security=_security(trust_remote_code=False))
    assert not (path / "CODE_RAN").exists()

    model = embeddings.load_model(str(path), device="cpu", security=_security(trust_remote_code=True))
    assert (path / "CODE_RAN").read_text() == "yes"
    assert type(model[0].auto_model).__name__ == "CustomModel"
    (path / "CODE_RAN").unlink()
    rerank._load.cache_clear()
    _, cross = rerank._load(str(path), "cpu", True)
    assert type(cross).__name__ == "CustomForSequenceClassification"
    rerank._load.cache_clear()


def test_pick_device_and_seed():
    assert models.pick_device("cpu") == "cpu"
    assert models.pick_device("auto") in ("cpu", "cuda")
    import torch

    models.seed_everything(7)
    a = torch.rand(3)
    models.seed_everything(7)
    assert torch.equal(a, torch.rand(3))


def test_torch_is_seeded_when_imported_after_seeding():
    """A stage seeds first and imports torch later, or never (ingest, prepare and package skip its ~1.5 s
    import): torch comes out seeded and deterministic all the same."""
    code = ("import sys; from ragtune import models; models.seed_everything(7); print('torch' in sys.modules); "
            "import torch; a = torch.rand(3); torch.manual_seed(7); "
            "print(torch.equal(a, torch.rand(3)), torch.are_deterministic_algorithms_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"], out


def test_linear_schedule_trains_from_the_first_step():
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = models.linear_schedule(opt, warmup_steps=3, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])  # the lr the next optimizer step uses
        opt.step()
        sched.step()
    assert lrs[0] > 0  # transformers' "linear" warmup gives step 1 a learning rate of 0
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4:] == pytest.approx([6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7, 1 / 7])  # then transformers' decay


def test_inference_dtype_auto_follows_the_hardware_and_autocast_is_scoped():
    assert models.pick_inference_dtype("float32", "cpu") == "float32"
    assert models.pick_inference_dtype("bfloat16", "cpu") == "bfloat16"
    assert models.pick_inference_dtype("auto", "cpu") == ("bfloat16" if models.native_bfloat16("cpu") else "float32")
    assert models.pick_inference_dtype("auto", "mps") == "float32"
    assert models.autocast_dtype("cpu") == "float32"
    with models.inference_precision("bfloat16", "cpu") as dtype:
        assert dtype == "bfloat16" and models.autocast_dtype("cpu") == "bfloat16"
    with models.inference_precision("float32", "cpu") as dtype:
        assert dtype == "float32" and models.autocast_dtype("cpu") == "float32"
    assert models.autocast_dtype("cpu") == "float32"  # off again after the block


def test_train_dtype_auto_follows_the_hardware_and_float16_needs_cuda(monkeypatch):
    assert models.pick_train_dtype("float32", "cpu") == "float32"
    assert models.pick_train_dtype("auto", "cpu") == ("bfloat16" if models.native_bfloat16("cpu") else "float32")
    assert models.pick_train_dtype("auto", "mps") == "float32"
    monkeypatch.setattr(models, "native_bfloat16", lambda device: False)  # a pre-Ampere GPU
    assert models.pick_train_dtype("auto", "cuda") == "float16"
    with pytest.raises(UserError, match="train_dtype: float16 trains only on CUDA"):
        models.pick_train_dtype("float16", "cpu")
    assert models.mixed_precision_args("bfloat16") == {"bf16": True, "fp16": False}
    assert models.mixed_precision_args("float32") == {"bf16": False, "fp16": False}
    with pytest.raises(UserError, match="train_dtype"):
        params.validate({"train_dtype": "int8"})


def test_inference_dtype_is_a_checked_param():
    with pytest.raises(UserError, match="inference_dtype"):
        params.validate({"inference_dtype": "int8"})


def test_float32_head_keeps_logits_out_of_bfloat16_and_restores_the_head(tiny_model, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ragtune.train_reranker import convert_to_cross_encoder

    path = convert_to_cross_encoder(tiny_model, tmp_path / "ce", seed=0, security=params.defaults()["security"])
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    enc = AutoTokenizer.from_pretrained(path)(["a query"] * 2, ["one passage", "another"], return_tensors="pt",
                                              padding=True)
    with torch.inference_mode(), models.inference_precision("bfloat16", "cpu"):
        assert model(**enc).logits.dtype == torch.bfloat16  # what a plain autocast gives: rounded logits
        with models.float32_head(model):
            assert model(**enc).logits.dtype == torch.float32
    assert "forward" not in vars(model.classifier)  # the head's own forward again
    with models.float32_head(model):  # no autocast: nothing to change
        assert "forward" not in vars(model.classifier)
