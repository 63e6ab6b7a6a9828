"""IRNN (Le, Jaitly & Hinton 2015): a ReLU RNN whose recurrent matrix starts as the identity."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from assembly.plugin import init_recurrent
from torch import Tensor, nn

from assembly_cells._base import Prepared, SequenceCell, State


class IrnnLayer(SequenceCell):
    """``h' = relu(W_x x + W_h h + b)``.

    Parameters: ``weight_ih`` W_x (H, I), ``weight_hh`` W_h (H, H), ``bias`` b (H) (absent
    with ``bias = false``). ``init = "default"`` is the paper's: ``W_h = scale · I``,
    ``W_x ~ N(0, 0.001²)``, ``b = 0``; other ``init`` values apply the core's
    :func:`~assembly.plugin.init_recurrent` (b = 0 always). ``project_input`` is
    ``W_x x + b`` for all steps at once; per step one ``addmm`` and an in-place ReLU.
    """

    def __init__(self, spec: Any, input_size: int, hidden: int) -> None:
        super().__init__()
        self.spec = spec
        self.input_size = input_size
        self.hidden_size = hidden
        self.output_size = hidden
        self.state_sizes = (hidden,)
        self.weight_ih = nn.Parameter(torch.empty(hidden, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden, hidden))
        if spec.bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.empty(hidden))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.spec.init == "default":
                self.weight_hh.copy_(torch.eye(self.hidden_size) * self.spec.scale)
                self.weight_ih.normal_(0.0, 0.001)
            else:
                bound = 1.0 / math.sqrt(self.hidden_size)
                self.weight_ih.uniform_(-bound, bound)
                self.weight_hh.uniform_(-bound, bound)
                init_recurrent(self.weight_ih, self.weight_hh, self.spec, 1)
            if self.bias is not None:
                self.bias.zero_()

    def project_input(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias)  # (..., H)

    def prepare(self) -> Prepared:
        return (self.weight_hh.t(),)

    def recur(self, projected: Tensor, state: State,
              prepared: Prepared) -> tuple[Tensor, State]:
        new = torch.addmm(projected, state[0], prepared[0]).relu_()  # (B, H)
        return new, (new,)
