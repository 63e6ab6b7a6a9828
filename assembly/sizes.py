"""Size rules shared by the planner and the torch modules (no torch here)."""

from __future__ import annotations


def bridge_source(kind: str, decoder_layer: int, encoder_depth: int) -> int | None:
    """Which encoder layer's final state starts decoder layer ``decoder_layer``.

    ``copy``: the same index (None — zeros — beyond the encoder's depth); ``linear`` and
    ``linear-tanh``: the same index, capped at the encoder's top layer; ``zero``: None."""
    if kind == "copy":
        return decoder_layer if decoder_layer < encoder_depth else None
    if kind in ("linear", "linear-tanh"):
        return min(decoder_layer, encoder_depth - 1)
    return None
