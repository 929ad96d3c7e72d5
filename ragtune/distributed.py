"""Data-parallel training on N processes (torch DDP), for the two train stages.

`embedder.nproc` / `reranker.nproc` > 1 makes the stage script start itself again under torchrun
(`python -m ragtune.distributed --standalone --nproc_per_node N <script> <its options>`, torchrun with a
quieter failure report) and wait for it. Each worker, like each process of a torchrun you start yourself,
runs the stage unchanged: the HF trainers see LOCAL_RANK / WORLD_SIZE and wrap the model in
DistributedDataParallel. Only rank 0 writes outputs (model folder, stats, DVCLive curves, our own
best-model checkpoints); the other ranks log warnings only.

Batch size is per process (the Hugging Face convention): one optimizer step takes N x batch_size
examples, so an epoch has about 1/N of the steps.
"""
from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import warnings

from .errors import UserError

log = logging.getLogger(__name__)

_PARENT = "RAGTUNE_LAUNCHER_PID"  # set by launch() for the torchrun it starts


def in_worker() -> bool:
    """True inside a process started by torchrun (or any launcher that sets the torch.distributed env)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", 0)) if in_worker() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0)) if in_worker() else 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1)) if in_worker() else 1


def is_main() -> bool:
    """The process that writes outputs: rank 0, or the only process."""
    return rank() == 0


def setup_logging() -> None:
    """Before `ragtune.cli.stage`: workers prefix their rank; ranks other than 0 log warnings only.

    stage() then calls logging.basicConfig again, which is a no-op once the root logger has a handler.
    """
    if not in_worker():
        return
    # Whole lines per write (stderr is write-through: print() makes two writes), so that two workers'
    # lines never splice into one. sys.__stderr__ keeps the old wrapper, and so the stream, open.
    sys.stderr = io.TextIOWrapper(sys.stderr.buffer, encoding=sys.stderr.encoding, errors=sys.stderr.errors,
                                  line_buffering=True)
    # Deprecations inside sentence-transformers / accelerate's DDP code, once per worker: not ours to fix.
    warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated")
    warnings.filterwarnings("ignore", message=r"`broadcast_buffers` is deprecated")
    logging.basicConfig(level=logging.INFO if is_main() else logging.WARNING,
                        format=f"%(asctime)s [rank {rank()}] %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)


def check(nproc: int, device: str, key: str) -> None:
    """One-line UserError when `nproc` processes cannot run on `device` (a resolved device: cpu, cuda, mps)."""
    if nproc <= 1:
        return
    if device == "mps":
        raise UserError(f"params.yaml: {key}: {nproc} processes need device cpu or cuda; "
                        f"torch DDP does not run on mps (set {key}: 1)")
    if device.startswith("cuda"):
        import torch

        gpus = torch.cuda.device_count()
        if gpus < nproc:
            raise UserError(f"params.yaml: {key}: {nproc} processes need {nproc} GPUs with device cuda, "
                            f"but {gpus} {'is' if gpus == 1 else 'are'} visible; set {key}: {gpus} or device: cpu")


def launch(nproc: int, argv: list[str]) -> int:
    """Run the command `argv` (script and its options) on `nproc` torchrun workers; return the exit code.

    torchrun is `python -m ragtune.distributed`: torch.distributed.run's own argument parsing and elastic
    agent, minus the traceback and failure table it prints when a worker fails (the worker has printed
    its one-line error already). Call it only outside a worker. Ctrl-C / SIGTERM (which
    ragtune.cli.stage turns into KeyboardInterrupt) is passed on to torchrun, which stops its workers.
    """
    cmd = [sys.executable, "-m", "ragtune.distributed", "--standalone", f"--nproc_per_node={nproc}", *argv]
    env = dict(os.environ)
    # torchrun would set 1 thread per worker and print a banner about it; share the cores instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env[_PARENT] = str(os.getpid())
    log.info("starting %d worker processes (torchrun): %s", nproc, " ".join(argv))
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()  # torchrun forwards SIGTERM to its workers and waits for them
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def _die_with_parent() -> None:
    """Linux: SIGTERM this torchrun when the stage process that started it dies, even of SIGKILL, which
    it cannot pass on; else the workers would train on and write outputs after the stage was killed."""
    parent = int(os.environ.pop(_PARENT, "0"))
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if parent and os.getppid() != parent:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _torchrun(args: list[str]) -> int:
    """`torchrun args...`; a failed worker gives its own exit code, without torchrun's report."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    _die_with_parent()
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(parse_args(args))
    except ChildFailedError as e:
        _rank, failure = e.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    except SignalException as e:  # SIGTERM / Ctrl-C: torchrun has stopped the workers, which said so
        return 128 + int(e.sigval)
    return 0


def relaunch(name: str, nproc: int, device: str, key: str, argv: list[str]) -> bool:
    """In stage `name`'s script: with nproc > 1 outside a worker, run `argv` (the script's own command line)
    on nproc workers and return True: the caller then stops. Exits with a one-line error when a worker
    failed. False: nothing to launch, train in this process."""
    if nproc <= 1 or in_worker():
        return False
    from .models import pick_device

    check(nproc, pick_device(device), key)
    code = launch(nproc, argv)
    if code != 0:
        print(f"error: stage {name}: a worker of {nproc} failed (exit code {code}); its error is above",
              file=sys.stderr)
        sys.exit(code)
    return True


def init(device: str) -> str:
    """In a worker: join the process group (gloo on CPU, nccl on CUDA); return this process's device.

    Done here rather than left to the trainer so that rank 0 can prepare shared files (checkpoint folder,
    converted start model) behind a barrier before the trainer exists. Outside a worker: `device` as is.
    """
    if not in_worker():
        return device
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        if local_rank() >= torch.cuda.device_count():
            raise UserError(f"worker {local_rank()} of {world_size()} has no GPU: "
                            f"{torch.cuda.device_count()} visible; start fewer processes or use device: cpu")
        device = f"cuda:{local_rank()}"
        torch.cuda.set_device(local_rank())
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    log.info("distributed: rank %d of world size %d, backend %s, device %s", rank(), world_size(),
             dist.get_backend(), device)
    return device


def barrier() -> None:
    """Wait until every worker gets here (no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def finish() -> None:
    """Leave the process group (NCCL warns at exit otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(_torchrun(sys.argv[1:]))
