"""The built-in ``gru`` and ``lstm`` against torch.nn.GRU / torch.nn.LSTM with copied
weights, whole sequences (packed, padded batches) and single steps, and the GRU's
``update = "cho"`` convention."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from assembly.builtin.cells import GruSpec, LstmSpec
from assembly.registry import make_registry

LENGTHS = [7, 3, 5, 1]
INPUT, HIDDEN = 6, 5


@pytest.fixture(scope="module")
def registry() -> Any:
    return make_registry(entrypoints=False)


def build(registry: Any, name: str, spec: Any) -> Any:
    torch.manual_seed(0)
    return registry.get("cell", name).build(spec, INPUT, HIDDEN)


def reference(kind: str, bias: bool) -> nn.Module:
    torch.manual_seed(1)
    return (nn.GRU if kind == "gru" else nn.LSTM)(INPUT, HIDDEN, batch_first=True, bias=bias)


def copy_weights(source: nn.Module, layer: Any) -> None:
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            target = getattr(layer, name)
            if target is not None:
                target.copy_(getattr(source, f"{name}_l0"))


def inputs(seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(LENGTHS), max(LENGTHS), INPUT, generator=generator)
    return x, torch.tensor(LENGTHS)


def as_tuple(state: Any) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_matches_torch_on_padded_batches(registry: Any, kind: str, bias: bool) -> None:
    spec = GruSpec(bias=bias) if kind == "gru" else LstmSpec(bias=bias)
    layer = build(registry, kind, spec)
    torch_rnn = reference(kind, bias)
    copy_weights(torch_rnn, layer)
    assert sum(p.numel() for p in layer.parameters()) == \
        sum(p.numel() for p in torch_rnn.parameters())
    x, lengths = inputs()
    with torch.no_grad():
        outputs, final = layer(x, lengths)
        for row, length in enumerate(LENGTHS):
            expected, expected_final = torch_rnn(x[row:row + 1, :length])
            torch.testing.assert_close(outputs[row, :length], expected[0], rtol=0, atol=1e-6)
            assert torch.all(outputs[row, length:] == 0)
            for got, want in zip(final, as_tuple(expected_final), strict=True):
                torch.testing.assert_close(got[row], want[0, 0], rtol=0, atol=1e-6)
        # an unpadded batch, from a given state
        full = torch.full((len(LENGTHS),), max(LENGTHS))
        start = tuple(torch.randn(len(LENGTHS), HIDDEN) for _ in layer.state_sizes)
        outputs, final = layer(x, full, start)
        hx = start[0][None] if kind == "gru" else (start[0][None], start[1][None])
        expected, expected_final = torch_rnn(x, hx)
        torch.testing.assert_close(outputs, expected, rtol=0, atol=1e-6)
        for got, want in zip(final, as_tuple(expected_final), strict=True):
            torch.testing.assert_close(got, want[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_step_matches_torch_cell(registry: Any, kind: str) -> None:
    layer = build(registry, kind, GruSpec() if kind == "gru" else LstmSpec())
    torch.manual_seed(3)
    cell = nn.GRUCell(INPUT, HIDDEN) if kind == "gru" else nn.LSTMCell(INPUT, HIDDEN)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(layer, name).copy_(getattr(cell, name))
        x = torch.randn(4, INPUT)
        state = tuple(torch.randn(4, HIDDEN) for _ in layer.state_sizes)
        output, new_state = layer.step(x, state)
        expected = cell(x, state[0] if kind == "gru" else state)
    for got, want in zip(new_state, as_tuple(expected), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(output, as_tuple(expected)[0], rtol=0, atol=1e-6)


def cho_reference(layer: Any, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Cho et al. 2014: h' = z ⊙ n + (1 − z) ⊙ h, with the paper's update gate
    z = σ(W_z x + U_z h + b_z) whose parameters are the negated stored ones."""
    n = HIDDEN
    gx = x @ layer.weight_ih.T + layer.bias_ih
    gh = h @ layer.weight_hh.T + layer.bias_hh
    r = torch.sigmoid(gx[:, :n] + gh[:, :n])
    z = torch.sigmoid(-(gx[:, n:2 * n] + gh[:, n:2 * n]))
    candidate = torch.tanh(gx[:, 2 * n:] + r * gh[:, 2 * n:])
    return z * candidate + (1 - z) * h


def test_gru_cho_update_convention(registry: Any) -> None:
    """``update = "cho"``: a large ``gate_bias`` opens the paper's update gate, so the
    state is overwritten by the candidate; with the torch convention it is kept."""
    x = torch.randn(3, INPUT)
    h = torch.randn(3, HIDDEN)
    results = {}
    for update in ("torch", "cho"):
        layer = build(registry, "gru", GruSpec(update=update, gate_bias=30.0))
        with torch.no_grad():
            layer.weight_ih[HIDDEN:2 * HIDDEN].zero_()
            layer.weight_hh[HIDDEN:2 * HIDDEN].zero_()
            results[update] = layer.step(x, (h,))[0]
            if update == "cho":
                torch.testing.assert_close(results[update], cho_reference(layer, x, h))
                n = HIDDEN  # the candidate n, computed directly
                gx = x @ layer.weight_ih.T + layer.bias_ih
                gh = h @ layer.weight_hh.T + layer.bias_hh
                r = torch.sigmoid(gx[:, :n] + gh[:, :n])
                candidate = torch.tanh(gx[:, 2 * n:] + r * gh[:, 2 * n:])
                torch.testing.assert_close(results[update], candidate, rtol=0, atol=1e-6)
    torch.testing.assert_close(results["torch"], h, rtol=0, atol=1e-6)
    assert not torch.allclose(results["cho"], h, atol=1e-2)


def test_gru_cho_sequences_follow_the_paper(registry: Any) -> None:
    """A whole (padded) sequence under ``cho`` equals the paper's recurrence step by step."""
    layer = build(registry, "gru", GruSpec(update="cho", gate_bias=0.7))
    x, lengths = inputs(seed=4)
    with torch.no_grad():
        outputs, (final,) = layer(x, lengths)
        for row, length in enumerate(LENGTHS):
            h = torch.zeros(1, HIDDEN)
            for t in range(length):
                h = cho_reference(layer, x[row:row + 1, t], h)
                torch.testing.assert_close(outputs[row, t], h[0], rtol=0, atol=1e-6)
            torch.testing.assert_close(final[row], h[0], rtol=0, atol=1e-6)
    # the gate bias is the paper's +0.7 (stored negated for the kernel)
    assert torch.allclose(layer.bias_ih[HIDDEN:2 * HIDDEN], torch.full((HIDDEN,), -0.7))
    assert torch.all(layer.bias_hh[HIDDEN:2 * HIDDEN] == 0)
