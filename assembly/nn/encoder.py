"""The encoder stack: recurrent layers (optionally bidirectional) with dropout between."""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from assembly.nn.layers import BidirectionalLayer, State, last_valid


def device_of(module: nn.Module) -> object:
    """The device of a module's first parameter (or None when it has none)."""
    for parameter in module.parameters():
        return parameter.device
    return None


@attrs.define
class EncoderOutput:
    """outputs (B, S, M) zero at padding; mask (B, S) true at valid steps; per-layer final
    states; summary (B, M): the top layer's final output (both directions when
    bidirectional); layer_outputs: every layer's outputs (B, S, O_k)."""

    outputs: Tensor
    mask: Tensor
    states: list[State]
    summary: Tensor
    layer_outputs: list[Tensor]


class Encoder(nn.Module):
    """Runs its layers over the whole (padded) source at once. Each layer sees the
    unpadded steps only (packed fused kernels or a masked loop)."""

    def __init__(self, layers: list[nn.Module], dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout)
        self.output_size = layers[-1].output_size

    def forward(self, x: Tensor, lengths: Tensor) -> EncoderOutput:
        """x (B, S, I) embedded source, lengths (B,) → :class:`EncoderOutput`."""
        states: list[State] = []
        layer_outputs: list[Tensor] = []
        summary = x
        for index, layer in enumerate(self.layers):
            x = x.to(device_of(layer) or x.device)
            if index > 0:
                x = self.dropout(x)  # on the layer's own device
            if isinstance(layer, BidirectionalLayer):
                x, state, summary = layer(x, lengths)
            else:
                x, state = layer(x, lengths)
                summary = last_valid(x, lengths)
            states.append(state)
            layer_outputs.append(x)
        steps = x.shape[1]
        mask = lengths.to(x.device)[:, None] > _arange(steps, x)[None, :]  # (B, S)
        return EncoderOutput(x, mask, states, summary, layer_outputs)


def _arange(steps: int, like: Tensor) -> Tensor:
    import torch

    return torch.arange(steps, device=like.device)
