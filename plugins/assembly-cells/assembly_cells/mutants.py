"""The three GRU mutants of Jozefowicz, Zaremba & Sutskever (2015): JZS1, JZS2, JZS3.

All three share the update ``h' = tanh(u) ⊙ z + h ⊙ (1 − z)``, computed as
``lerp(h, tanh(u), z)`` (one op; :func:`~assembly_cells._base.gated_update`). Everything
that depends only on x is hoisted out of the time loop by ``project_input`` (one matmul
over all steps; in JZS1 even σ(z) and tanh(x̃), which need no state). The recurrent
matmuls whose inputs are known together are fused: JZS2 computes ``[W_hz; W_hr] h`` as
one matmul; ``W_hh (r ⊙ h)`` must wait for r.

Weight layout (rows are gate blocks of H):

========  ======================  ================  ==============  ==========
cell      weight_x (·, I)          weight_h (·, H)    weight_hh       bias
========  ======================  ================  ==============  ==========
jzs1      [z; r]                  [r]  (weight_hr)   (H, H)          [z; r; h]
jzs2      [z; h]                  [z; r]             (H, H)          [z; r; h]
jzs3      [z; r; h]               [z; r]             (H, H)          [z; r; h]
========  ======================  ================  ==============  ==========

``projection`` (H, I), bias-free, exists only where an equation adds raw x (JZS1's
tanh(x), JZS2's r) and ``input_size ≠ hidden``. It has no bias of its own: in JZS2 it
would duplicate b_r, and JZS1's equation has none inside tanh(x).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from assembly_cells._base import Prepared, SequenceCell, State, gated_update, init_blocks


class _Mutant(SequenceCell):
    """Shared construction: uniform ±1/√H weights (torch's GRU default), then ``spec.init``;
    gate biases b_z, b_r = ``gate_bias`` (default 1.0), b_h = 0."""

    input_weights: int  # blocks in weight_x
    recurrent_weights: int  # blocks in weight_h
    uses_raw_input: bool  # an equation adds x itself (needs a projection when I ≠ H)

    def __init__(self, spec: Any, input_size: int, hidden: int) -> None:
        super().__init__()
        self.spec = spec
        self.input_size = input_size
        self.hidden_size = hidden
        self.output_size = hidden
        self.state_sizes = (hidden,)
        self.weight_x = nn.Parameter(torch.empty(self.input_weights * hidden, input_size))
        self.weight_h = nn.Parameter(torch.empty(self.recurrent_weights * hidden, hidden))
        self.weight_hh = nn.Parameter(torch.empty(hidden, hidden))
        if self.uses_raw_input and input_size != hidden:
            self.projection: nn.Parameter | None = nn.Parameter(torch.empty(hidden, input_size))
        else:
            self.register_parameter("projection", None)
        if spec.bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.empty(3 * hidden))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def _blocks(self) -> list[tuple[Tensor | None, Tensor | None]]:
        """(input block, recurrent block) per gate, for ``init_blocks``."""
        raise NotImplementedError  # pragma: no cover

    def reset_parameters(self) -> None:
        hidden = self.hidden_size
        bound = 1.0 / math.sqrt(hidden)
        with torch.no_grad():
            for weight in (self.weight_x, self.weight_h, self.weight_hh, self.projection):
                if weight is not None:
                    weight.uniform_(-bound, bound)
            init_blocks(self.spec, hidden, self._blocks())
            if self.bias is not None:
                gate = 1.0 if self.spec.gate_bias is None else self.spec.gate_bias
                self.bias[:2 * hidden].fill_(gate)  # b_z, b_r
                self.bias[2 * hidden:].zero_()  # b_h

    def _input_proj(self) -> Tensor | None:
        return None if self.projection is None else self.projection.detach()


class Jzs1Layer(_Mutant):
    """JZS1 (MUT1)::

        z  = σ(W_xz x + b_z)
        r  = σ(W_xr x + W_hr h + b_r)
        h' = tanh(W_hh (r ⊙ h) + tanh(x̃) + b_h) ⊙ z + h ⊙ (1 − z)

    ``x̃ = x`` (I = H) or ``P x``. ``project_input`` returns ``[z; a_r; tanh(x̃) + b_h]``
    (z needs no state, so σ is hoisted too); per step: two matmuls (r needs W_hr h before
    W_hh (r ⊙ h) can start).
    """

    input_weights = 2
    recurrent_weights = 1
    uses_raw_input = True

    def _blocks(self) -> list[tuple[Tensor | None, Tensor | None]]:
        h = self.hidden_size
        wx, wh, whh = self.weight_x.detach(), self.weight_h.detach(), self.weight_hh.detach()
        return [(wx[:h], None), (wx[h:], wh), (self._input_proj(), whh)]

    def project_input(self, x: Tensor) -> Tensor:
        h = self.hidden_size
        if self.projection is not None:
            y = F.linear(x, torch.cat([self.weight_x, self.projection]))  # (..., 3H)
            gates, raw = y[..., :2 * h], y[..., 2 * h:]
        else:
            gates, raw = F.linear(x, self.weight_x), x  # (..., 2H), (..., H)
        candidate = torch.tanh(raw)
        if self.bias is not None:
            gates = gates + self.bias[:2 * h]
            candidate = candidate + self.bias[2 * h:]
        return torch.cat([torch.sigmoid(gates[..., :h]), gates[..., h:], candidate], dim=-1)

    def prepare(self) -> Prepared:
        return (self.weight_h.t(), self.weight_hh.t())

    def recur(self, projected: Tensor, state: State,
              prepared: Prepared) -> tuple[Tensor, State]:
        w_hr_t, w_hh_t = prepared
        h = state[0]  # (B, H)
        n = self.hidden_size
        z = projected[:, :n]  # (B, H), already σ
        r = torch.addmm(projected[:, n:2 * n], h, w_hr_t).sigmoid_()
        u = torch.addmm(projected[:, 2 * n:], r * h, w_hh_t).tanh_()
        new = gated_update(h, h, u, z)  # u ⊙ z + h ⊙ (1 − z)
        return new, (new,)


class Jzs2Layer(_Mutant):
    """JZS2 (MUT2)::

        z  = σ(W_xz x + W_hz h + b_z)
        r  = σ(x̃ + W_hr h + b_r)
        h' = tanh(W_hh (r ⊙ h) + W_xh x + b_h) ⊙ z + h ⊙ (1 − z)

    ``project_input`` returns ``[W_xz x + b_z; x̃ + b_r; W_xh x + b_h]``; per step one
    fused matmul ``[W_hz; W_hr] h`` and one ``W_hh (r ⊙ h)``.
    """

    input_weights = 2
    recurrent_weights = 2
    uses_raw_input = True

    def _blocks(self) -> list[tuple[Tensor | None, Tensor | None]]:
        h = self.hidden_size
        wx, wh, whh = self.weight_x.detach(), self.weight_h.detach(), self.weight_hh.detach()
        return [(wx[:h], wh[:h]), (self._input_proj(), wh[h:]), (wx[h:], whh)]

    def project_input(self, x: Tensor) -> Tensor:
        h = self.hidden_size
        if self.projection is not None:
            weight = torch.cat([self.weight_x[:h], self.projection, self.weight_x[h:]])
            projected = F.linear(x, weight, self.bias)  # (..., 3H) [z; r; h]
        else:
            y = F.linear(x, self.weight_x)  # (..., 2H) [z; h]
            projected = torch.cat([y[..., :h], x, y[..., h:]], dim=-1)
            if self.bias is not None:
                projected = projected + self.bias
        return projected

    def prepare(self) -> Prepared:
        return (self.weight_h.t(), self.weight_hh.t())

    def recur(self, projected: Tensor, state: State,
              prepared: Prepared) -> tuple[Tensor, State]:
        w_h_t, w_hh_t = prepared
        h = state[0]  # (B, H)
        n = self.hidden_size
        gates = torch.addmm(projected[:, :2 * n], h, w_h_t).sigmoid_()  # (B, 2H) [z; r]
        z, r = gates[:, :n], gates[:, n:]
        u = torch.addmm(projected[:, 2 * n:], r * h, w_hh_t).tanh_()
        new = gated_update(h, h, u, z)
        return new, (new,)


class Jzs3Layer(_Mutant):
    """JZS3 (MUT3)::

        z  = σ(W_xz x + W_hz tanh(h) + b_z)
        r  = σ(W_xr x + W_hr h + b_r)
        h' = tanh(W_hh (r ⊙ h) + W_xh x + b_h) ⊙ z + h ⊙ (1 − z)

    ``project_input`` is one linear map ``[W_xz; W_xr; W_xh] x + b``; per step the z and r
    matmuls (different left operands, tanh(h) and h) and ``W_hh (r ⊙ h)``.
    """

    input_weights = 3
    recurrent_weights = 2
    uses_raw_input = False

    def _blocks(self) -> list[tuple[Tensor | None, Tensor | None]]:
        h = self.hidden_size
        wx, wh, whh = self.weight_x.detach(), self.weight_h.detach(), self.weight_hh.detach()
        return [(wx[:h], wh[:h]), (wx[h:2 * h], wh[h:]), (wx[2 * h:], whh)]

    def project_input(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_x, self.bias)  # (..., 3H) [z; r; h]

    def prepare(self) -> Prepared:
        h = self.hidden_size
        return (self.weight_h[:h].t(), self.weight_h[h:].t(), self.weight_hh.t())

    def recur(self, projected: Tensor, state: State,
              prepared: Prepared) -> tuple[Tensor, State]:
        w_hz_t, w_hr_t, w_hh_t = prepared
        h = state[0]  # (B, H)
        n = self.hidden_size
        z = torch.addmm(projected[:, :n], torch.tanh(h), w_hz_t).sigmoid_()
        r = torch.addmm(projected[:, n:2 * n], h, w_hr_t).sigmoid_()
        u = torch.addmm(projected[:, 2 * n:], r * h, w_hh_t).tanh_()
        new = gated_update(h, h, u, z)
        return new, (new,)
