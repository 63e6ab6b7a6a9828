"""Size rules shared by the planner and the torch modules (no torch here)."""

from __future__ import annotations


def bridge_source(kind: str, decoder_layer: int, encoder_depth: int,
                  inner_sync: bool = False) -> int | None:
    """Which encoder layer's final state starts decoder layer ``decoder_layer``.

    ``copy``: the same index (None — zeros — beyond the encoder's depth); ``linear`` and
    ``linear-tanh``: the same index, capped at the encoder's top layer; ``zero``: None.
    With ``inner_sync`` only layer 0 has a source, the encoder's top layer (whose state
    has seen the whole stack): layers above start every step from the state their lower
    neighbour has just computed, so an initial state of theirs would never be read."""
    if inner_sync:
        if decoder_layer > 0 or kind == "zero":
            return None
        return encoder_depth - 1
    if kind == "copy":
        return decoder_layer if decoder_layer < encoder_depth else None
    if kind in ("linear", "linear-tanh"):
        return min(decoder_layer, encoder_depth - 1)
    return None
