"""The unitary RNN (Arjovsky, Shah & Bengio 2015), with a real ``[Re h; Im h]`` interface."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from assembly_cells._base import Prepared, SequenceCell, State

MODULUS_EPS = 1e-6
"""modReLU divides by ``|z|``; it uses ``sqrt(|z|² + ε²)`` so that the map and its
gradient stay finite at ``z = 0`` (where the direction ``z/|z|`` is undefined and the
output is 0). For ``|z| ≫ ε`` the relative deviation is about ``ε² / 2|z|²``."""


class UrnnLayer(SequenceCell):
    """``h' = modReLU(W h + V x + c)`` with ``W = D₃ R₂ F⁻¹ D₂ Π R₁ F D₁`` (N complex units).

    - ``phases`` θ (3, N): ``D_k = diag(exp(i θ_k))``;
    - ``reflections`` (2, 2, N): the complex vectors v₁, v₂ as (re, im) rows;
      ``R_k = I − 2 v_k v_kᴴ / ‖v_k‖²``;
    - F: ``torch.fft.fft(·, norm="ortho")`` (unitary), F⁻¹ its inverse;
    - ``permutation`` Π: a fixed random permutation (a buffer, saved with the weights);
    - ``weight_ih`` V (2N, I) and ``bias_ih`` c (2N): the input read as [Re; Im];
    - ``modrelu_bias`` b (N): ``modReLU(z) = relu(|z| + b) · z / |z|``.

    θ and the reflections are the 7N recurrent parameters; W is unitary for any values of
    them. With ``bias = false`` neither c nor b exists and modReLU is the identity (the
    linear unitary RNN ``h' = W h + V x``).

    State and output are the real (B, 2N) vector ``[Re h; Im h]``. Per forward pass W is
    materialised once (``prepare``: the structured map applied to the N basis vectors,
    O(N² log N)) as the real (2N, 2N) matrix M with ``[Re h'; Im h'] = [Re h; Im h] M``,
    so each step is one ``addmm`` plus modReLU; gradients reach θ and the reflections
    through the materialisation. A single ``step`` (decoding) applies the structured
    O(N log N) form, :meth:`unitary`, to the B state rows instead.
    """

    def __init__(self, spec: Any, input_size: int, hidden: int) -> None:
        super().__init__()
        self.spec = spec
        self.input_size = input_size
        self.hidden_size = hidden
        self.output_size = 2 * hidden
        self.state_sizes = (2 * hidden,)
        self.phases = nn.Parameter(torch.empty(3, hidden))
        self.reflections = nn.Parameter(torch.empty(2, 2, hidden))
        self.weight_ih = nn.Parameter(torch.empty(2 * hidden, input_size))
        if spec.bias:
            self.bias_ih: nn.Parameter | None = nn.Parameter(torch.empty(2 * hidden))
            self.modrelu_bias: nn.Parameter | None = nn.Parameter(torch.empty(hidden))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("modrelu_bias", None)
        self.register_buffer("permutation", torch.randperm(hidden))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """θ ~ U(−π, π), reflections ~ U(−1, 1), c = 0, b ~ U(±0.01) (the paper's code);
        V by ``spec.init``: ``default`` Glorot-uniform, ``uniform`` U(±init_scale/√N),
        ``orthogonal`` (semi-)orthogonal × init_scale."""
        with torch.no_grad():
            self.phases.uniform_(-math.pi, math.pi)
            self.reflections.uniform_(-1.0, 1.0)
            if self.spec.init == "uniform":
                bound = self.spec.init_scale / math.sqrt(self.hidden_size)
                self.weight_ih.uniform_(-bound, bound)
            elif self.spec.init == "orthogonal":
                nn.init.orthogonal_(self.weight_ih, gain=self.spec.init_scale)
            else:
                nn.init.xavier_uniform_(self.weight_ih)
            if self.bias_ih is not None and self.modrelu_bias is not None:
                self.bias_ih.zero_()
                self.modrelu_bias.uniform_(-0.01, 0.01)

    # -- the recurrent map ---------------------------------------------------------------
    def _diagonals(self) -> Tensor:
        """exp(i θ): (3, N) complex."""
        return torch.complex(torch.cos(self.phases), torch.sin(self.phases))

    @staticmethod
    def _reflect(h: Tensor, v: Tensor) -> Tensor:
        """(I − 2 v vᴴ / ‖v‖²) applied to each row of h (B, N) complex; v (N,) complex."""
        coefficient = (h @ v.conj()) * (2.0 / (v.real.square() + v.imag.square()).sum())  # (B,)
        return h - coefficient[:, None] * v[None, :]

    def unitary(self, h: Tensor) -> Tensor:
        """``W h`` for each row of the complex (B, N) tensor h, in the structured form."""
        diagonals = self._diagonals()  # (3, N)
        v = torch.complex(self.reflections[:, 0], self.reflections[:, 1])  # (2, N)
        h = h * diagonals[0]
        h = torch.fft.fft(h, norm="ortho")
        h = self._reflect(h, v[0])
        h = h[:, self.permutation]
        h = h * diagonals[1]
        h = torch.fft.ifft(h, norm="ortho")
        h = self._reflect(h, v[1])
        return h * diagonals[2]

    def recurrent_matrix(self) -> Tensor:
        """The real (2N, 2N) matrix M with ``[Re Wh; Im Wh] = [Re h; Im h] M`` (rows)."""
        n = self.hidden_size
        dtype = torch.complex128 if self.phases.dtype == torch.float64 else torch.complex64
        eye = torch.eye(n, dtype=dtype, device=self.phases.device)
        transposed = self.unitary(eye)  # row k = (W e_k)ᵀ, i.e. Wᵀ
        p, q = transposed.real, transposed.imag  # (N, N)
        return torch.cat([torch.cat([p, q], dim=1), torch.cat([-q, p], dim=1)], dim=0)

    # -- the cell --------------------------------------------------------------------------
    def project_input(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih)  # (..., 2N) [Re; Im]

    def prepare(self) -> Prepared:
        return (self.recurrent_matrix(),)

    def cell(self, projected: Tensor, state: State) -> tuple[Tensor, State]:
        """A single step (decoding): the structured map on the B state rows, which is
        cheaper than materialising W for one step."""
        n = self.hidden_size
        h = state[0]  # (B, 2N)
        mapped = self.unitary(torch.complex(h[:, :n], h[:, n:]))  # (B, N) complex
        return self._modrelu(torch.cat([mapped.real, mapped.imag], dim=1) + projected)

    def recur(self, projected: Tensor, state: State,
              prepared: Prepared) -> tuple[Tensor, State]:
        z = torch.addmm(projected, state[0], prepared[0])  # (B, 2N) = W h + V x + c
        return self._modrelu(z)

    def _modrelu(self, z: Tensor) -> tuple[Tensor, State]:
        """modReLU on z (B, 2N) = [Re; Im]; the identity without a bias."""
        if self.modrelu_bias is None:
            return z, (z,)
        pairs = z.view(-1, 2, self.hidden_size)  # (B, 2, N): re, im
        modulus = pairs.square().sum(1).add_(MODULUS_EPS ** 2).sqrt_()  # (B, N)
        scale = torch.relu(modulus + self.modrelu_bias) / modulus
        new = (pairs * scale[:, None, :]).view_as(z)  # (B, 2N)
        return new, (new,)
