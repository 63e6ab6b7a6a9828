"""Helpers shared by the regularisers: resolving layer names to activations and masks."""

from __future__ import annotations

from typing import Any

from assembly.plugin import RegularizerContext
from torch import Tensor


def parse_layer(name: str) -> tuple[str, int | None]:
    """``"decoder:1"`` → ``("decoder", 1)``; ``"encoder"`` → ``("encoder", None)``."""
    side, _, index = name.partition(":")
    return side, (int(index) if index else None)


def check_layers(names: tuple[str, ...], context: RegularizerContext, what: str) -> None:
    """Refuse a layer index the model does not have (ValueError naming the depth)."""
    for name in names:
        side, index = parse_layer(name)
        if index is None:
            continue
        sizes = context.encoder_sizes if side == "encoder" else context.decoder_sizes
        if index >= len(sizes):
            raise ValueError(f"{what}: {name!r} names layer {index}, but the {side} has "
                             f"{len(sizes)} layer(s) (0 … {len(sizes) - 1})")


def layer_size(name: str, context: RegularizerContext) -> int:
    """The feature size of a single layer name (``encoder``/``decoder``: the top layer)."""
    side, index = parse_layer(name)
    if side == "logits":
        return context.output_size
    sizes = context.encoder_sizes if side == "encoder" else context.decoder_sizes
    return sizes[-1 if index is None else index]


def activations(outputs: Any, name: str, *, every_layer: bool) -> list[tuple[Tensor, Tensor]]:
    """(activations (B, T, H), mask (B, T) bool) pairs a layer name selects.

    ``every_layer``: ``encoder`` / ``decoder`` select each layer of the stack; otherwise
    they select the top layer only."""
    side, index = parse_layer(name)
    if side == "logits":
        return [(outputs.predictions, outputs.mask)]
    if side == "encoder":
        layers, mask = outputs.encoder.layer_outputs, outputs.encoder.mask
        top = outputs.encoder.outputs
    else:
        layers, mask = outputs.decoder_layer_outputs, outputs.mask
        top = outputs.decoder_outputs
    if index is not None:
        return [(layers[index], mask)]
    if every_layer:
        return [(layer, mask) for layer in layers]
    return [(top, mask)]
