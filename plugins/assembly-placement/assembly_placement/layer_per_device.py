"""``layer-per-device``: move each part of a built model to its own device.

Every parameter and buffer is moved once, straight to its device (no part of the model
passes through another device's memory on the way). The model itself moves activations
and recurrent states between devices while it runs.
"""

from __future__ import annotations

from typing import Any

import torch
from assembly.plugin import Placement, resolve_device
from torch import nn

from assembly_placement.specs import Assignment, LayerPerDeviceSpec, assign


def model_assignment(spec: LayerPerDeviceSpec, model: nn.Module) -> Assignment:
    """The assignment for a built model: depths (and tying) from its plan when it has one
    (``build_model`` attaches it), else from its modules."""
    plan = getattr(model, "plan", None)
    if plan is not None:
        from assembly_placement.specs import assign_for

        return assign_for(spec, plan.spec)
    encoder_depth = len(model.encoder.layers)  # type: ignore[arg-type, union-attr]
    decoder_depth = len(model.decoder.layers)  # type: ignore[arg-type, union-attr]
    tied = bool(getattr(model.output, "tied", False) or  # type: ignore[union-attr]
                getattr(getattr(model.output, "out", None), "tied", False))
    return assign(spec, encoder_depth, decoder_depth, tied=tied)


class LayerPerDevice(Placement):
    """See :class:`~assembly_placement.specs.LayerPerDeviceSpec`."""

    spec: LayerPerDeviceSpec

    def assignment(self, model: nn.Module) -> Assignment:
        return model_assignment(self.spec, model)

    def apply(self, model: nn.Module) -> nn.Module:
        """Move every submodule's own parameters and buffers to its assigned device."""
        assignment = self.assignment(model)
        devices = {name: resolve_device(name) for name in assignment.devices()}
        for path, module in model.named_modules():
            device = devices[assignment.device_of_path(path)]
            module._apply(_mover(device), recurse=False)
        return model

    def input_device(self, model: nn.Module) -> torch.device:
        """Where batches go: the source embedding's device (continuous mode: the first
        encoder layer's)."""
        first: Any = getattr(model, "source_embedding", None)
        if first is None:
            first = model.encoder.layers[0]  # type: ignore[index, union-attr]
        for parameter in first.parameters():
            return parameter.device
        return super().input_device(model)


def _mover(device: torch.device) -> Any:
    def move(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(device)

    return move
