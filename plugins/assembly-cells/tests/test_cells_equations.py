"""Each cell's equations, checked against an independent step-by-step computation.

The references below are written directly from the formulas (FEATURES.md, "Cells"), one
sequence at a time, column-vector style, with the module's weights read by name; they
share no code with the layers (no hoisting, no fused matmuls, no lerp, no masking). The
layers run a padded batch, so each comparison also checks that padding changes nothing.
Then ``torch.autograd.gradcheck`` in float64 for every cell, inputs and parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from cells_support import VARIANTS, build, cell_of, randomise
from torch import Tensor

LENGTHS = [6, 3, 1, 5]


def sigmoid(v: Tensor) -> Tensor:
    return 1.0 / (1.0 + torch.exp(-v))


def layer_norm(v: Tensor, gain: Tensor, shift: Tensor | None) -> Tensor:
    mean = v.mean()
    variance = ((v - mean) ** 2).mean()
    out = gain * (v - mean) / math.sqrt(variance.item() + 1e-5)
    return out if shift is None else out + shift


def blocks(w: Tensor, n: int) -> list[Tensor]:
    return [w[k * n:(k + 1) * n] for k in range(w.shape[0] // n)]


def bias_blocks(m: Any, name: str, count: int, n: int) -> list[Tensor]:
    b = getattr(m, name)
    return blocks(b, n) if b is not None else [torch.zeros(n, dtype=torch.float64)] * count


# -- references: one step, vectors h (H,), x (I,) -----------------------------------------

def jzs1_step(m: Any, x: Tensor, h: Tensor) -> Tensor:
    n = m.hidden_size
    w_xz, w_xr = blocks(m.weight_x, n)
    w_hr, w_hh = m.weight_h, m.weight_hh
    b_z, b_r, b_h = bias_blocks(m, "bias", 3, n)
    x_tilde = x if m.projection is None else m.projection @ x
    z = sigmoid(w_xz @ x + b_z)
    r = sigmoid(w_xr @ x + w_hr @ h + b_r)
    return torch.tanh(w_hh @ (r * h) + torch.tanh(x_tilde) + b_h) * z + h * (1 - z)


def jzs2_step(m: Any, x: Tensor, h: Tensor) -> Tensor:
    n = m.hidden_size
    w_xz, w_xh = blocks(m.weight_x, n)
    w_hz, w_hr = blocks(m.weight_h, n)
    b_z, b_r, b_h = bias_blocks(m, "bias", 3, n)
    x_tilde = x if m.projection is None else m.projection @ x
    z = sigmoid(w_xz @ x + w_hz @ h + b_z)
    r = sigmoid(x_tilde + w_hr @ h + b_r)
    return torch.tanh(m.weight_hh @ (r * h) + w_xh @ x + b_h) * z + h * (1 - z)


def jzs3_step(m: Any, x: Tensor, h: Tensor) -> Tensor:
    n = m.hidden_size
    w_xz, w_xr, w_xh = blocks(m.weight_x, n)
    w_hz, w_hr = blocks(m.weight_h, n)
    b_z, b_r, b_h = bias_blocks(m, "bias", 3, n)
    z = sigmoid(w_xz @ x + w_hz @ torch.tanh(h) + b_z)
    r = sigmoid(w_xr @ x + w_hr @ h + b_r)
    return torch.tanh(m.weight_hh @ (r * h) + w_xh @ x + b_h) * z + h * (1 - z)


def irnn_step(m: Any, x: Tensor, h: Tensor) -> Tensor:
    b = m.bias if m.bias is not None else 0.0
    return torch.clamp(m.weight_ih @ x + m.weight_hh @ h + b, min=0.0)


def urnn_matrix(m: Any) -> Tensor:
    """W = D₃ R₂ F⁻¹ D₂ Π R₁ F D₁ as an explicit complex N × N matrix."""
    n = m.hidden_size
    c = torch.complex128
    j = torch.arange(n, dtype=torch.float64)
    dft = torch.exp(-2j * math.pi * torch.outer(j, j) / n).to(c) / math.sqrt(n)
    inverse = dft.conj().T

    def diagonal(k: int) -> Tensor:
        return torch.diag(torch.exp(1j * m.phases[k].to(c)))

    def reflection(k: int) -> Tensor:
        v = (m.reflections[k, 0] + 1j * m.reflections[k, 1]).to(c)[:, None]  # (N, 1)
        return torch.eye(n, dtype=c) - 2 * (v @ v.conj().T) / (v.conj().T @ v)

    permutation = torch.zeros(n, n, dtype=c)
    permutation[torch.arange(n), m.permutation] = 1  # (Π h)_i = h_perm[i]
    return (diagonal(2) @ reflection(1) @ inverse @ diagonal(1) @ permutation
            @ reflection(0) @ dft @ diagonal(0))


def urnn_step(m: Any, x: Tensor, h_real: Tensor) -> Tensor:
    n = m.hidden_size
    h = h_real[:n] + 1j * h_real[n:]
    v = m.weight_ih @ x + (m.bias_ih if m.bias_ih is not None else 0.0)
    z = urnn_matrix(m) @ h + (v[:n] + 1j * v[n:])
    if m.modrelu_bias is not None:  # modReLU(z) = relu(|z| + b) · z/|z|
        z = torch.clamp(z.abs() + m.modrelu_bias, min=0.0) * z / z.abs()
    return torch.cat([z.real, z.imag])


def lnlstm_step(m: Any, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    n = m.hidden_size
    h, c = state
    gates = (layer_norm(m.weight_hh @ h, m.gain_hh, None)
             + layer_norm(m.weight_ih @ x, m.gain_ih, None)
             + (m.bias if m.bias is not None else 0.0))
    i, f, g, o = blocks(gates, n)
    c = sigmoid(f) * c + sigmoid(i) * torch.tanh(g)
    h = sigmoid(o) * torch.tanh(layer_norm(c, m.gain_cell, m.bias_cell))
    return h, c


def lngru_step(m: Any, x: Tensor, h: Tensor) -> Tensor:
    n = m.hidden_size
    a_x = layer_norm(m.weight_ih @ x, m.gain_ih, m.bias_ih)
    a_h = layer_norm(m.weight_hh @ h, m.gain_hh, None)
    b_hn = m.bias_hn if m.bias_hn is not None else 0.0
    x_r, x_z, x_n = blocks(a_x, n)
    h_r, h_z, h_n = blocks(a_h, n)
    r = sigmoid(x_r + h_r)
    z = sigmoid(x_z + h_z)
    candidate = torch.tanh(x_n + r * (h_n + b_hn))
    if m.cho:
        return z * candidate + (1 - z) * h
    return (1 - z) * candidate + z * h


STEPS: dict[str, Callable[..., Any]] = {
    "jzs1": jzs1_step, "jzs2": jzs2_step, "jzs3": jzs3_step, "irnn": irnn_step,
    "urnn": urnn_step, "layernorm-lstm": lnlstm_step, "layernorm-gru": lngru_step,
}


def reference(m: Any, cell: str, x: Tensor, state: tuple[Tensor, ...]
              ) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One sequence x (T, I) from state → outputs (T, O), final state."""
    step = STEPS[cell]
    outputs = []
    for x_t in x:
        state = step(m, x_t, state) if cell == "layernorm-lstm" else (step(m, x_t, state[0]),)
        outputs.append(state[0])
    return torch.stack(outputs), state


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("sizes", [(5, 4), (4, 4)], ids=["I!=H", "I=H"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_equations_match_reference(variant: str, sizes: tuple[int, int], bias: bool) -> None:
    cell = cell_of(variant)
    input_size, hidden = sizes
    m = build(cell, input_size, hidden, bias=bias, **VARIANTS[variant])
    randomise(m)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(len(LENGTHS), max(LENGTHS), input_size, generator=generator,
                    dtype=torch.float64)
    start = tuple(torch.randn(len(LENGTHS), s, generator=generator, dtype=torch.float64) * 0.5
                  for s in m.state_sizes)
    with torch.no_grad():
        outputs, final = m(x, torch.tensor(LENGTHS), start)
        for row, length in enumerate(LENGTHS):
            expected, expected_final = reference(
                m, cell, x[row, :length], tuple(s[row] for s in start))
            torch.testing.assert_close(outputs[row, :length], expected, rtol=1e-9, atol=1e-9)
            assert torch.all(outputs[row, length:] == 0)
            for got, want in zip(final, expected_final, strict=True):
                torch.testing.assert_close(got[row], want, rtol=1e-9, atol=1e-9)
            # the single-step API gives the same first step
            first, _ = m.step(x[row:row + 1, 0], tuple(s[row:row + 1] for s in start))
            torch.testing.assert_close(first[0], expected[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradcheck(variant: str, bias: bool) -> None:
    """Analytic gradients of outputs and final state w.r.t. input, initial state and every
    parameter equal finite differences (float64, small sizes, a padded batch)."""
    cell = cell_of(variant)
    m = build(cell, 3, 4, bias=bias, **VARIANTS[variant])
    randomise(m, scale=0.4)
    names = [name for name, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    lengths = torch.tensor([3, 2])
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    start = [torch.randn(2, s, generator=generator, dtype=torch.float64).mul_(0.5)
             .requires_grad_() for s in m.state_sizes]
    count = len(start)

    def run(x: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        state, values = tuple(tensors[:count]), tensors[count:]
        outputs, final = torch.func.functional_call(m, dict(zip(names, values, strict=True)),
                                                    (x, lengths, state))
        return (outputs, *final)

    assert torch.autograd.gradcheck(run, (x, *start, *params), eps=1e-6, atol=1e-5)
