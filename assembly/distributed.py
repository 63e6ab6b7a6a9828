"""Data-parallel training with torch.distributed: process-group set-up and launching.

``assemble train spec.toml --out RUN --nproc N`` relaunches itself under ``torchrun``
with N processes on this machine; for several machines run ``torchrun`` directly on
each (``torchrun --nnodes M --nproc-per-node N --rdzv-backend c10d --rdzv-endpoint
HOST:PORT -m assembly train spec.toml --out RUN``, RUN on a file system every machine
sees). Each process initialises the group from torchrun's environment: gloo on the CPU;
on GPU machines gloo for CPU tensors and NCCL for CUDA tensors, so a replica may live on
either. ``ASSEMBLY_DIST_BACKEND`` (e.g. ``gloo`` or ``nccl``) overrides the choice.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys

BACKEND_ENV = "ASSEMBLY_DIST_BACKEND"


def default_backend() -> str:
    """``ASSEMBLY_DIST_BACKEND`` if set; else ``cpu:gloo,cuda:nccl`` where CUDA is
    available (each tensor reduced by the backend of its device), else ``gloo``."""
    import torch

    chosen = os.environ.get(BACKEND_ENV)
    if chosen:
        return chosen
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def maybe_init_process_group() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); True if this
    process is part of one. The group is destroyed when the process exits."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch

    if torch.distributed.is_initialized():
        return True
    backend = default_backend()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)  # "cuda" now means this process's own GPU
    torch.distributed.init_process_group(backend=backend)
    atexit.register(_destroy)
    return True


def _destroy() -> None:
    import torch

    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def launch(arguments: list[str], processes: int) -> int:
    """Re-run ``assemble <arguments>`` (without ``--nproc``) under torchrun; its exit
    status. This process imports no torch: it only waits for torchrun."""
    cleaned = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
            continue
        if argument == "--nproc":
            skip = True
            continue
        if argument.startswith("--nproc="):
            continue
        cleaned.append(argument)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={processes}", "-m", "assembly", *cleaned]
    return subprocess.call(command)
