"""Greedy decoding with hidden-state averaging (sampler ``hidden-average``).

At step t the cell receives ŝ = (1 − α)·s_{t−1} + α·mean(s_0 … s_{t−1}) instead of
s_{t−1} (α = ``average_hidden_state_influence``; s_0 is the bridge's initial state). The
cell's returned state s_t is stored as it is, so the running mean is over the true states,
never over mixed ones. Every state tensor of every decoder layer is mixed (an LSTM's h and
c alike); the input-feeding vector is an input, not a cell state, and is fed unchanged.
α = 0 never touches the state: the result is exactly greedy decoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import Tensor

from assembly_samplers._rows import RowSampler

if TYPE_CHECKING:
    from assembly.plugin import DecodeStart


def mix_states(state: Any, total: Any, count: int, alpha: float) -> Any:
    """(1 − α)·state + α·total/count for every layer state tensor (B, ·); the feed is
    kept. ``state`` and ``total`` are decoder states with the same rows."""
    layers = [tuple(torch.lerp(s, t / count, alpha) for s, t in zip(mine, summed, strict=True))
              for mine, summed in zip(state.layers, total.layers, strict=True)]
    return attrs.evolve(state, layers=layers)


def add_states(total: Any, state: Any) -> Any:
    """Element-wise sum of the layer state tensors of two decoder states (feed: ``state``'s)."""
    layers = [tuple(a + b for a, b in zip(summed, mine, strict=True))
              for summed, mine in zip(total.layers, state.layers, strict=True)]
    return attrs.evolve(state, layers=layers)


class HiddenAverageSampler(RowSampler):
    """``hidden-average``: see the module docstring and
    :class:`~assembly_samplers.specs.HiddenAverageSpec`. Works in token mode (argmax) and
    continuous mode (the predicted vector is fed back), like ``greedy``."""

    total: Any  # Σ of the true states s_0 … s_{t−1} of the running rows
    count: int

    def begin(self, model: Any, start: DecodeStart, rows: int, device: torch.device) -> None:
        self.total, self.count = None, 0

    def feed(self, state: Any) -> Any:
        alpha = float(self.spec.average_hidden_state_influence)
        if alpha == 0.0:
            return state
        # ``state`` is the true s_{t−1}: add it to the running sum first
        self.total = state if self.total is None else add_states(self.total, state)
        self.count += 1
        if self.count == 1:  # mean(s_0) = s_0
            return state
        return mix_states(state, self.total, self.count, alpha)

    def drop(self, keep: Tensor) -> None:
        if self.total is not None:
            self.total = self.total.select(keep)
