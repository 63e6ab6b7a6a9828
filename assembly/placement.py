"""The placement contract: where a built model's parts live.

A :class:`Placement` moves a model's submodules to devices (``apply``) and says where
batches enter (``input_device``). The model moves activations between layers itself: each
encoder/decoder layer receives its input on its own device, and attention, the output
layer and the loss run where the encoder's top layer lives.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first CUDA device if present, else the CPU; other names as given.
    An unavailable device is a clear error, not a crash later."""
    from assembly.errors import UserError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"invalid device name {name!r}: {error}") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or
                                  (device.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"device {name!r} is not available on this machine "
                        f"({torch.cuda.device_count()} CUDA devices)")
    return device


def place_model(model: nn.Module, spec: Any, registry: Any,
                device: str | None = None) -> tuple[nn.Module, Placement]:
    """Put a built model where ``spec.placement`` says, or all of it on ``device`` when
    one is given (``--device``). Returns the placed model and the placement, whose
    ``input_device(model)`` is where batches go. The trainer and
    :func:`assembly.run.load_run` both place models through here."""
    placement = registry.record_of(spec.placement).build(spec.placement)
    if device is not None:
        return model.to(resolve_device(device)), placement
    return placement.apply(model), placement


def set_threads(count: int | None) -> None:
    """Use ``count`` torch intra-op threads (``training.threads``, ``--threads``); 0 or
    ``None`` leaves torch's current setting. On cores that other processes use, one
    thread is safest: torch's waiting threads spin (docs/spec.md, threads)."""
    if count:
        torch.set_num_threads(count)


class Placement:
    """Base of placement strategies."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    def apply(self, model: nn.Module) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def input_device(self, model: nn.Module) -> torch.device:
        """Where source batches go: the device of the source embedding (or first layer)."""
        for parameter in model.parameters():
            return parameter.device
        return torch.device("cpu")


class SingleDevice(Placement):
    """The whole model on one device."""

    def apply(self, model: nn.Module) -> nn.Module:
        return model.to(resolve_device(self.spec.device))
