"""On PYTHONPATH during bench/gpu.sh only: each stage process appends what it used to $RAGTUNE_GPU_STATS.

One JSON line per process at exit: the stage ($RAGTUNE_GPU_STAGE), the torchrun rank if any, the peak CUDA
memory torch allocated and reserved (MiB), and, with RAGTUNE_IMPORT_TRACE=1, the top-level modules it imported
(the CPU rehearsal uses that to check that bench/gpu_pack.py's SKIPPED packages are never imported).
"""
import atexit
import json
import os
import sys


def _report() -> None:
    path = os.environ.get("RAGTUNE_GPU_STATS")
    if not path:
        return
    row = {"stage": os.environ.get("RAGTUNE_GPU_STAGE"), "pid": os.getpid(), "rank": os.environ.get("RANK"),
           "argv": sys.argv[:2]}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        row["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row["cuda_max_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    if os.environ.get("RAGTUNE_IMPORT_TRACE") == "1":
        row["modules"] = sorted({name.split(".")[0] for name in list(sys.modules)})
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def _run_shadowed() -> None:
    """Run the sitecustomize this one hides (an image's own, later on sys.path), as Python would have."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        path = os.path.join(entry or ".", "sitecustomize.py")
        if os.path.abspath(entry or ".") != here and os.path.isfile(path):
            import importlib.util

            spec = importlib.util.spec_from_file_location("_shadowed_sitecustomize", path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


atexit.register(_report)
_run_shadowed()
