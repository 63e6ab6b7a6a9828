"""Layer-normalised LSTM and GRU (Ba, Kiros & Hinton 2016).

Layer normalisation ``LN(a; α, β) = α ⊙ (a − mean(a)) / sqrt(var(a) + ε) + β`` (ε = 1e-5,
biased variance, statistics over the feature dimension) is applied separately to the
input contribution ``W_x x`` and the recurrent contribution ``W_h h``, each over the whole
stacked gate vector, as in the paper. The input side is normalised for all steps at once
in ``project_input``; per step: one fused recurrent matmul and one ``layer_norm`` (plus
the LSTM's LN of the cell state).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from assembly.plugin import init_recurrent
from torch import Tensor, nn

from assembly_cells._base import Prepared, SequenceCell, State, gated_update

LN_EPS = 1e-5


class _LayerNormCell(SequenceCell):
    """Shared parameters: ``weight_ih`` (G·H, I), ``weight_hh`` (G·H, H) in torch's gate
    order, gains ``gain_ih`` α_x and ``gain_hh`` α_h (G·H, start at 1), and uniform
    ±1/√H weights (torch's default) followed by ``spec.init``."""

    gates: int

    def __init__(self, spec: Any, input_size: int, hidden: int) -> None:
        super().__init__()
        self.spec = spec
        self.input_size = input_size
        self.hidden_size = hidden
        self.output_size = hidden
        g = self.gates * hidden
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden))
        self.gain_ih = nn.Parameter(torch.empty(g))
        self.gain_hh = nn.Parameter(torch.empty(g))

    def _reset_shared(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            self.weight_ih.uniform_(-bound, bound)
            self.weight_hh.uniform_(-bound, bound)
            init_recurrent(self.weight_ih, self.weight_hh, self.spec, self.gates)
            self.gain_ih.fill_(1.0)
            self.gain_hh.fill_(1.0)

    def prepare(self) -> Prepared:
        return (self.weight_hh.t(),)

    def _recurrent(self, h: Tensor, w_hh_t: Tensor) -> Tensor:
        """LN(W_h h; α_h): (B, H) → (B, G·H)."""
        a = torch.mm(h, w_hh_t)
        return F.layer_norm(a, a.shape[-1:], self.gain_hh, None, LN_EPS)


class LayerNormLstmLayer(_LayerNormCell):
    """Layer-normalised LSTM (Ba et al. 2016, eq. 20–22), gates in torch's order i, f, g, o::

        (i f g o) = LN(W_h h; α_h) + LN(W_x x; α_x) + b
        c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)
        h' = σ(o) ⊙ tanh(LN(c'; α_c, β_c))

    Parameters beyond the shared ones: ``bias`` b (4H), ``gain_cell`` α_c (H, starts at 1),
    ``bias_cell`` β_c (H, starts at 0); ``bias = false`` removes b and β_c. The paper's
    LN shifts β_h, β_x and b add up to one vector, so only b is kept (same function class,
    no redundant parameters). b_f starts at ``forget_bias``, b_i and b_o at ``gate_bias``
    (default 0), b_g at 0. State (h, c); c is stored unnormalised.
    """

    gates = 4

    def __init__(self, spec: Any, input_size: int, hidden: int) -> None:
        super().__init__(spec, input_size, hidden)
        self.state_sizes = (hidden, hidden)
        self.gain_cell = nn.Parameter(torch.empty(hidden))
        if spec.bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.empty(4 * hidden))
            self.bias_cell: nn.Parameter | None = nn.Parameter(torch.empty(hidden))
        else:
            self.register_parameter("bias", None)
            self.register_parameter("bias_cell", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset_shared()
        h = self.hidden_size
        with torch.no_grad():
            self.gain_cell.fill_(1.0)
            if self.bias is not None and self.bias_cell is not None:
                self.bias.zero_()
                self.bias_cell.zero_()
                self.bias[h:2 * h].fill_(self.spec.forget_bias)
                if self.spec.gate_bias is not None:
                    self.bias[:h].fill_(self.spec.gate_bias)
                    self.bias[3 * h:].fill_(self.spec.gate_bias)

    def project_input(self, x: Tensor) -> Tensor:
        a = F.linear(x, self.weight_ih)  # (..., 4H)
        return F.layer_norm(a, a.shape[-1:], self.gain_ih, self.bias, LN_EPS)

    def recur(self, projected: Tensor, state: State,
              prepared: Prepared) -> tuple[Tensor, State]:
        h, c = state  # (B, H) each
        n = self.hidden_size
        gates = self._recurrent(h, prepared[0]) + projected  # (B, 4H)
        ifo = torch.sigmoid(gates)  # g's slice is unused
        candidate = torch.tanh(gates[:, 2 * n:3 * n])
        c = torch.addcmul(ifo[:, n:2 * n] * c, ifo[:, :n], candidate)  # σ(f)c + σ(i)tanh(g)
        normed = F.layer_norm(c, (n,), self.gain_cell, self.bias_cell, LN_EPS)
        h = ifo[:, 3 * n:] * torch.tanh(normed)
        return h, (h, c)


class LayerNormGruLayer(_LayerNormCell):
    """Layer-normalised GRU, gates in torch's order r, z, n::

        a_x = LN(W_x x; α_x) + b_x,   a_h = LN(W_h h; α_h)          (each over all 3H)
        r = σ(a_x^r + a_h^r),   z = σ(a_x^z + a_h^z)
        n = tanh(a_x^n + r ⊙ (a_h^n + b_hn))
        h' = (1 − z) ⊙ n + z ⊙ h      (update = "torch")
        h' = z ⊙ n + (1 − z) ⊙ h      (update = "cho")

    Parameters beyond the shared ones: ``bias_ih`` b_x (3H) and ``bias_hn`` b_hn (H), both
    starting at 0 except b_x^r, b_x^z = ``gate_bias`` when given; ``bias = false`` removes
    both. (b_hn sits inside r ⊙ ·, so it is not redundant with b_x^n.)
    """

    gates = 3

    def __init__(self, spec: Any, input_size: int, hidden: int) -> None:
        super().__init__(spec, input_size, hidden)
        self.state_sizes = (hidden,)
        if spec.bias:
            self.bias_ih: nn.Parameter | None = nn.Parameter(torch.empty(3 * hidden))
            self.bias_hn: nn.Parameter | None = nn.Parameter(torch.empty(hidden))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hn", None)
        self.cho = spec.update == "cho"
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset_shared()
        h = self.hidden_size
        with torch.no_grad():
            if self.bias_ih is not None and self.bias_hn is not None:
                self.bias_ih.zero_()
                self.bias_hn.zero_()
                if self.spec.gate_bias is not None:
                    self.bias_ih[:2 * h].fill_(self.spec.gate_bias)

    def project_input(self, x: Tensor) -> Tensor:
        a = F.linear(x, self.weight_ih)  # (..., 3H)
        return F.layer_norm(a, a.shape[-1:], self.gain_ih, self.bias_ih, LN_EPS)

    def recur(self, projected: Tensor, state: State,
              prepared: Prepared) -> tuple[Tensor, State]:
        h = state[0]  # (B, H)
        n = self.hidden_size
        a = self._recurrent(h, prepared[0])  # (B, 3H)
        rz = torch.sigmoid(projected[:, :2 * n] + a[:, :2 * n])
        r, z = rz[:, :n], rz[:, n:]
        a_n = a[:, 2 * n:] if self.bias_hn is None else a[:, 2 * n:] + self.bias_hn
        candidate = torch.tanh(torch.addcmul(projected[:, 2 * n:], r, a_n))
        # cho: z ⊙ n + (1 − z) ⊙ h;  torch: (1 − z) ⊙ n + z ⊙ h
        new = gated_update(h, h, candidate, z) if self.cho else gated_update(h, candidate, h, z)
        return new, (new,)
