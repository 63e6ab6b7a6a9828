"""Data-parallel training with torch.distributed: process-group set-up and launching.

``assemble train spec.toml --out RUN --nproc N`` relaunches itself under ``torchrun``
with N processes on this machine; for several machines run ``torchrun`` directly on
each (``torchrun --nnodes M --nproc-per-node N --rdzv-endpoint HOST:PORT -m assembly
train spec.toml --out RUN``). Each process initialises the group from torchrun's
environment: gloo on the CPU, NCCL on GPUs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch


def maybe_init_process_group() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if torch.distributed.is_initialized():
        return True
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend=backend)
    return True


def launch(arguments: list[str], processes: int) -> int:
    """Re-run ``assemble <arguments>`` (without ``--nproc``) under torchrun."""
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
