"""The recurrent layer contract, the generic per-step layer, and shared initialisers.

Every recurrent layer (one direction of one stack level) is a :class:`RecurrentLayer`:

- ``input_size``, ``hidden_size``, ``output_size`` and ``state_sizes`` (sizes of the state
  tensors; the first is the "hidden" state the attention queries);
- ``forward(x, lengths, state=None) -> (outputs, final_state)``: ``x`` (B, T, I),
  ``lengths`` (B,) int64; ``outputs`` (B, T, O), zero at padded steps; ``final_state`` the
  state after each sequence's last *valid* step (padding never touches it);
- ``step(x, state) -> (output, state)``: one step, ``x`` (B, I) → ``output`` (B, O).

Custom cells derive from :class:`CellLayer` and implement ``project_input`` (hoisted over
all time steps: one matmul per sequence) and ``cell`` (the per-step recurrence).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]


class RecurrentLayer(nn.Module):
    """Base of one-direction recurrent layers (see the module docstring for the contract)."""

    input_size: int
    hidden_size: int
    output_size: int
    state_sizes: tuple[int, ...]

    def initial_state(self, batch: int, like: Tensor) -> State:
        """Zeros of the state sizes, on ``like``'s device and dtype."""
        return tuple(like.new_zeros(batch, size) for size in self.state_sizes)

    def forward(self, x: Tensor, lengths: Tensor,
                state: State | None = None) -> tuple[Tensor, State]:  # pragma: no cover
        raise NotImplementedError

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:  # pragma: no cover
        raise NotImplementedError


class CellLayer(RecurrentLayer):
    """A recurrent layer defined by a per-step cell; the time loop lives here.

    Subclasses implement:

    - ``project_input(x)``: (..., I) → (..., G), the input-to-hidden part of every gate,
      applied to the whole sequence at once before the loop;
    - ``cell(projected, state)``: (B, G), state → (output (B, O), new state).
    """

    def project_input(self, x: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def cell(self, projected: Tensor, state: State) -> tuple[Tensor, State]:  # pragma: no cover
        raise NotImplementedError

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return self.cell(self.project_input(x), state)

    def forward(self, x: Tensor, lengths: Tensor,
                state: State | None = None) -> tuple[Tensor, State]:
        batch, steps, _ = x.shape
        if state is None:
            state = self.initial_state(batch, x)
        projected = self.project_input(x)  # (B, T, G): one matmul for all steps
        valid = (torch.arange(steps, device=x.device)[None, :]
                 < lengths.to(x.device)[:, None])  # (B, T)
        outputs = []
        for t in range(steps):
            output, new_state = self.cell(projected[:, t], state)
            keep = valid[:, t, None]  # (B, 1): padded rows keep their state
            state = tuple(torch.where(keep, n, o) for n, o in zip(new_state, state, strict=True))
            outputs.append(output * keep)
        return torch.stack(outputs, dim=1), state  # (B, T, O)


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of ``x`` (B, T, ...) within its length; padding stays put."""
    steps = x.shape[1]
    positions = torch.arange(steps, device=x.device)[None, :]  # (1, T)
    lengths = lengths.to(x.device)[:, None]  # (B, 1)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)  # (B, T)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


def last_valid(outputs: Tensor, lengths: Tensor) -> Tensor:
    """The output at each sequence's last valid step: (B, T, O) → (B, O)."""
    index = (lengths.to(outputs.device) - 1).clamp(min=0)
    return outputs[torch.arange(outputs.shape[0], device=outputs.device), index]


def init_recurrent(weight_ih: Tensor, weight_hh: Tensor, spec: Any, gates: int) -> None:
    """Apply a cell spec's ``init`` to stacked gate matrices, in place.

    ``weight_ih`` (gates·H, I) and ``weight_hh`` (gates·H, H) hold ``gates`` blocks.
    ``uniform``: U(±scale/√H) for both. ``orthogonal``: each recurrent block orthogonal
    times scale, input blocks Xavier-uniform. ``identity``: each recurrent block
    scale·I (Le et al. 2015), input blocks N(0, 0.001²). ``default`` leaves them.
    """
    hidden = weight_hh.shape[1]
    with torch.no_grad():
        if spec.init == "uniform":
            bound = spec.init_scale / math.sqrt(hidden)
            weight_ih.uniform_(-bound, bound)
            weight_hh.uniform_(-bound, bound)
        elif spec.init == "orthogonal":
            for block in weight_hh.chunk(gates, 0):
                nn.init.orthogonal_(block, gain=spec.init_scale)
            for block in weight_ih.chunk(gates, 0):
                nn.init.xavier_uniform_(block)
        elif spec.init == "identity":
            for block in weight_hh.chunk(gates, 0):
                block.copy_(torch.eye(hidden, dtype=block.dtype) * spec.init_scale)
            weight_ih.normal_(0.0, 0.001)


class BidirectionalLayer(nn.Module):
    """Two one-direction layers over the unpadded steps; outputs merged by concat or sum.

    The backward layer reads each sequence reversed *within its length*, so padding never
    enters either direction. Final states are merged the same way as outputs. Layers whose
    class offers ``run_bidirectional(forward, backward, x, lengths)`` (the fused built-ins)
    run both directions in one kernel call.
    """

    def __init__(self, forward_layer: RecurrentLayer, backward_layer: RecurrentLayer,
                 merge: str) -> None:
        super().__init__()
        self.forward_layer = forward_layer
        self.backward_layer = backward_layer
        self.merge = merge
        factor = 2 if merge == "concat" else 1
        self.output_size = forward_layer.output_size * factor
        self.state_sizes = tuple(s * factor for s in forward_layer.state_sizes)

    def _combine(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([a, b], dim=-1) if self.merge == "concat" else a + b

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, State, Tensor]:
        """x (B, T, I) → outputs (B, T, O'), merged final states, summary (B, O').

        The summary joins the forward direction's last valid output with the backward
        direction's output at step 0 (its last step)."""
        fused = getattr(type(self.forward_layer), "run_bidirectional", None)
        if fused is not None and type(self.backward_layer) is type(self.forward_layer):
            out_f, out_b, state_f, state_b = fused(self.forward_layer, self.backward_layer,
                                                   x, lengths)
        else:
            out_f, state_f = self.forward_layer(x, lengths)
            out_b, state_b = self.backward_layer(reverse_padded(x, lengths), lengths)
            out_b = reverse_padded(out_b, lengths)
        outputs = self._combine(out_f, out_b)  # (B, T, O')
        state = tuple(self._combine(f, b) for f, b in zip(state_f, state_b, strict=True))
        summary = self._combine(last_valid(out_f, lengths), out_b[:, 0])
        return outputs, state, summary

    @property
    def runs_packed(self) -> bool:
        """Whether the layer can run on data packed once for a whole stack (fused
        built-ins whose output is their hidden state)."""
        return (hasattr(type(self.forward_layer), "run_bidirectional_packed")
                and type(self.backward_layer) is type(self.forward_layer))

    def forward_packed(self, data: Tensor, packed: Any) -> tuple[Tensor, State, Tensor]:
        """Like :meth:`forward` on packed data (N, I) (``packed`` a PackedSequence giving
        the order) → outputs (N, O'), merged final states, summary (B, O'). Each
        direction's final hidden state is its last output, so it is the summary."""
        out_f, out_b, state_f, state_b = type(self.forward_layer).run_bidirectional_packed(
            self.forward_layer, self.backward_layer, data, packed)
        state = tuple(self._combine(f, b) for f, b in zip(state_f, state_b, strict=True))
        return self._combine(out_f, out_b), state, self._combine(state_f[0], state_b[0])
