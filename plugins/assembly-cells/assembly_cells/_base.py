"""The shared time loop of this package's cells, and initialisation helpers.

:class:`SequenceCell` is a :class:`assembly.plugin.CellLayer` whose per-step work is split
in two so that nothing that depends only on the weights is recomputed at every step:

- ``prepare()`` → weight-derived tensors, computed once per ``forward`` (e.g. a fused,
  transposed recurrent matrix, or the uRNN's materialised unitary matrix);
- ``recur(projected, state, prepared)`` → one step, given the hoisted input projection.

``cell(projected, state)`` (the core contract, used by ``step``) is ``recur`` with a fresh
``prepare()``. The loop unbinds the projected sequence once (one backward node, not one
per step), skips masking when no sequence is padded, and otherwise freezes padded rows'
state with one ``torch.where`` per state tensor and step.
"""

from __future__ import annotations

from typing import Any

import torch
from assembly.plugin import CellLayer, init_recurrent
from torch import Tensor

State = tuple[Tensor, ...]
Prepared = tuple[Tensor, ...]


class SequenceCell(CellLayer):
    """A :class:`CellLayer` with a ``prepare``/``recur`` split (see the module docstring).

    Subclasses set ``input_size``, ``hidden_size``, ``output_size``, ``state_sizes`` and
    implement ``project_input``, ``recur`` and (optionally) ``prepare``.
    """

    def prepare(self) -> Prepared:
        """Weight-derived tensors shared by every step of one forward pass."""
        return ()

    def recur(self, projected: Tensor, state: State,
              prepared: Prepared) -> tuple[Tensor, State]:  # pragma: no cover
        """One step: projected (B, G), state → (output (B, O), new state)."""
        raise NotImplementedError

    def cell(self, projected: Tensor, state: State) -> tuple[Tensor, State]:
        return self.recur(projected, state, self.prepare())

    def forward(self, x: Tensor, lengths: Tensor,
                state: State | None = None) -> tuple[Tensor, State]:
        """x (B, T, I), lengths (B,) → outputs (B, T, O) (zero at padded steps), the state
        after each sequence's last valid step."""
        batch, steps, _ = x.shape
        if state is None:
            state = self.initial_state(batch, x)
        if steps == 0:
            return x.new_zeros(batch, 0, self.output_size), state
        projected = self.project_input(x).unbind(1)  # T × (B, G): one matmul for all steps
        prepared = self.prepare()
        lengths = lengths.to(x.device)
        outputs = []
        if bool((lengths >= steps).all()):  # nothing padded: no masking at all
            for step_input in projected:
                output, state = self.recur(step_input, state, prepared)
                outputs.append(output)
            return torch.stack(outputs, dim=1), state  # (B, T, O)
        valid = torch.arange(steps, device=x.device)[None, :] < lengths[:, None]  # (B, T)
        for t, step_input in enumerate(projected):
            output, new_state = self.recur(step_input, state, prepared)
            keep = valid[:, t, None]  # (B, 1): padded rows keep their state
            state = tuple(torch.where(keep, n, o) for n, o in zip(new_state, state, strict=True))
            outputs.append(output)
        stacked = torch.stack(outputs, dim=1)  # (B, T, O)
        return stacked.masked_fill(~valid[:, :, None], 0.0), state


def gated_update(state: Tensor, start: Tensor, end: Tensor, weight: Tensor) -> Tensor:
    """``torch.lerp(start, end, weight) = start + weight ⊙ (end − start)`` in ``state``'s
    dtype. Under autocast a step's matmul outputs come in lower precision while the state
    stays float32; lerp needs one dtype, so the others are cast (a no-op otherwise)."""
    dtype = state.dtype
    if start.dtype != dtype or end.dtype != dtype or weight.dtype != dtype:
        start, end, weight = start.to(dtype), end.to(dtype), weight.to(dtype)
    return torch.lerp(start, end, weight)


def init_blocks(spec: Any, hidden: int,
                blocks: list[tuple[Tensor | None, Tensor | None]]) -> None:
    """Apply ``spec.init`` to (input block (H, ·), recurrent block (H, H)) pairs in place,
    with the core's :func:`~assembly.plugin.init_recurrent` rules; ``None`` stands for a
    gate without that term. ``default`` leaves the blocks as they are."""
    if spec.init == "default":
        return
    for input_block, recurrent_block in blocks:
        input_block = input_block if input_block is not None else torch.empty(hidden, 1)
        if recurrent_block is None:
            recurrent_block = torch.empty(hidden, hidden)
        init_recurrent(input_block, recurrent_block, spec, 1)
