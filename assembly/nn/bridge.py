"""Encoder final states → decoder initial states (zero, copy, linear, linear-tanh)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from assembly.nn.attention import resizer
from assembly.nn.layers import State
from assembly.sizes import bridge_source


class Bridge(nn.Module):
    """Builds each decoder layer's initial state from the encoder's final states.

    Decoder layer i reads encoder layer ``bridge_source(kind, i, depth)``; state component c
    (h, c for an LSTM) maps from the source's component c: ``copy`` as is (a resizer where
    sizes differ), ``linear`` / ``linear-tanh`` through a learned linear map (then tanh).
    Components or layers without a source start at zero.
    """

    def __init__(self, kind: str, encoder_states: list[tuple[int, ...]],
                 decoder_states: list[tuple[int, ...]], inner_sync: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self.decoder_states = decoder_states
        self.sources = [bridge_source(kind, i, len(encoder_states), inner_sync)
                        for i in range(len(decoder_states))]
        maps = []
        for sizes, source in zip(decoder_states, self.sources, strict=True):
            pairs = zip(encoder_states[source], sizes, strict=False) if source is not None else ()
            maps.append(nn.ModuleList(resizer(e, d) if kind == "copy" else nn.Linear(e, d)
                                      for e, d in pairs))
        self.maps = nn.ModuleList(maps)

    def forward(self, encoder_states: list[State], like: Tensor) -> list[State]:
        batch = like.shape[0]
        result = []
        for sizes, source, layer_maps in zip(self.decoder_states, self.sources, self.maps,
                                             strict=True):
            mapped = []
            if source is not None:
                mapped = [m(s.to(like.device))  # encoder layers may sit on other devices
                          for m, s in zip(layer_maps, encoder_states[source], strict=False)]
                if self.kind == "linear-tanh":
                    mapped = [torch.tanh(t) for t in mapped]
            zeros = [like.new_zeros(batch, size) for size in sizes[len(mapped):]]
            result.append(tuple(mapped + zeros))
        return result
