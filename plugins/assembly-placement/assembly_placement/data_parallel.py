"""``data-parallel``: each process holds a whole replica on its local device.

The trainer wraps the model in ``DistributedDataParallel`` when the process belongs to a
process group (``assemble train --nproc N`` or ``torchrun``; see
:mod:`assembly.distributed`); this placement only decides the process's device.
"""

from __future__ import annotations

import os

import torch
from assembly.plugin import Placement, UserError
from torch import nn

from assembly_placement.specs import DataParallelSpec


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``; 0 alone)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_device(choice: str) -> torch.device:
    """``auto``: ``cuda:LOCAL_RANK`` where CUDA is available, else the CPU; ``cuda``: that
    GPU or a clear error; ``cpu``: the CPU."""
    rank = local_rank()
    available = torch.cuda.is_available()
    if choice == "cpu" or (choice == "auto" and not available):
        return torch.device("cpu")
    count = torch.cuda.device_count() if available else 0
    if rank >= count:
        raise UserError(f"data-parallel process with LOCAL_RANK {rank} needs cuda:{rank}, but "
                        f"this machine has {count} CUDA devices; start at most {count} "
                        f"processes per machine or set placement.device = \"cpu\"")
    return torch.device("cuda", rank)


def _check_backend(device: torch.device) -> None:
    """Refuse a process group that cannot reduce tensors of ``device``."""
    distributed = torch.distributed
    if not (distributed.is_available() and distributed.is_initialized()):
        return
    backend = str(distributed.get_backend()).lower()
    if device.type == "cpu" and backend == "nccl":
        raise UserError("the process group uses NCCL, which cannot reduce CPU tensors; use "
                        "placement.device = \"auto\" or set ASSEMBLY_DIST_BACKEND=gloo")
    if device.type == "cuda" and backend == "gloo":
        raise UserError("the process group uses gloo while the model is on CUDA; set "
                        "ASSEMBLY_DIST_BACKEND=nccl (or leave it unset)")


class DataParallel(Placement):
    """See :class:`~assembly_placement.specs.DataParallelSpec`."""

    spec: DataParallelSpec

    def apply(self, model: nn.Module) -> nn.Module:
        device = local_device(self.spec.device)
        _check_backend(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return model.to(device)
