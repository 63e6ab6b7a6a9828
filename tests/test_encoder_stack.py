"""The encoder stack packed once equals the same stack run layer by layer.

With fused built-in layers and padded sources, :class:`~assembly.nn.encoder.Encoder` packs
the input once for all layers; the layer-by-layer path (each layer packing and unpacking
for itself) is the reference. Outputs, final states, summary, every layer's outputs and
all gradients must agree.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from assembly.build import build_model
from assembly.builtin.cells import GruSpec, LstmSpec
from assembly.nn.encoder import Encoder
from assembly.plan import plan_model
from assembly.registry import make_registry
from assembly.testing import make_spec

REGISTRY = make_registry(entrypoints=False, strict=True)

CONFIGS: dict[str, dict[str, Any]] = {
    "lstm-bi-concat-3": {"depth": 3, "encoder__bidirectional": True,
                         "encoder__cell": LstmSpec()},
    "gru-bi-sum-2": {"depth": 2, "encoder__bidirectional": True, "encoder__merge": "sum",
                     "encoder__cell": GruSpec()},
    "lstm-uni-3": {"depth": 3, "encoder__cell": LstmSpec()},
    "gru-uni-1": {"encoder__cell": GruSpec()},
}


def _encoder(name: str) -> Encoder:
    spec = make_spec(registry=REGISTRY, **CONFIGS[name])
    model = build_model(plan_model(spec, REGISTRY), REGISTRY, seed=0).double()
    return model.encoder


def _run(encoder: Encoder, x: torch.Tensor, lengths: torch.Tensor,
         packed: bool) -> tuple[Any, list[torch.Tensor]]:
    if packed:
        assert encoder.runs_packed
        result = encoder(x, lengths)
    else:  # the reference: every layer packs for itself
        result = _layer_by_layer(encoder, x, lengths)
    flat = [result.outputs, result.summary, *[t for s in result.states for t in s],
            *result.layer_outputs]
    return result, flat


def _layer_by_layer(encoder: Encoder, x: torch.Tensor, lengths: torch.Tensor) -> Any:
    original = type(encoder).runs_packed
    try:
        type(encoder).runs_packed = property(lambda self: False)  # type: ignore[assignment]
        return encoder(x, lengths)
    finally:
        type(encoder).runs_packed = original  # type: ignore[assignment]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_packed_once_equals_layer_by_layer(name: str) -> None:
    encoder = _encoder(name).eval()  # no dropout: both paths compute the same function
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([7, 3, 5, 1, 7, 2])
    first = encoder.layers[0]
    size = getattr(first, "forward_layer", first).input_size
    x = torch.randn(6, 7, size, generator=generator, dtype=torch.float64)
    probes = None
    grads = []
    flats = []
    for packed in (True, False):
        encoder.zero_grad(set_to_none=True)
        inputs = x.clone().requires_grad_(True)
        _, flat = _run(encoder, inputs, lengths, packed)
        if probes is None:
            probes = [torch.randn(t.shape, generator=generator, dtype=torch.float64)
                      for t in flat]
        loss = sum((t * p).sum() for t, p in zip(flat, probes, strict=True))
        loss.backward()
        grads.append([inputs.grad, *[p.grad for p in encoder.parameters()]])
        flats.append(flat)
    for ours, reference in zip(flats[0], flats[1], strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    for ours, reference in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    outputs = flats[0][0]
    assert bool((outputs[1, 3:] == 0).all())  # padding stays zero


def test_unpadded_and_placed_stacks_take_the_layer_path() -> None:
    encoder = _encoder("lstm-bi-concat-3").eval()
    x = torch.randn(2, 4, encoder.layers[0].forward_layer.input_size, dtype=torch.float64)
    full = encoder(x, torch.tensor([4, 4]))  # no padding: the dense kernel per layer
    assert full._unpack is None
    padded = encoder(x, torch.tensor([4, 2]))
    assert padded._unpack is not None  # the packed stack: layer outputs unpacked on demand
    assert len(padded.layer_outputs) == 3 and padded._unpack is None


@pytest.mark.parametrize("ordered", [True, False], ids=["longest-first", "any-order"])
@pytest.mark.parametrize("extra_steps", [0, 2])
def test_unpack_equals_pad_packed_sequence(ordered: bool, extra_steps: int) -> None:
    """fused.unpack (one index_copy_) gives pad_packed_sequence's padded tensor and, through
    it, the same gradient, for rows in any order and a total length past the longest."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from assembly.nn.fused import unpack

    generator = torch.Generator().manual_seed(3)
    lengths = torch.tensor([2, 7, 1, 7, 4, 3])
    if ordered:
        lengths = lengths.sort(descending=True).values
    x = torch.randn(6, 7, 5, generator=generator, dtype=torch.double, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=ordered)
    steps = 7 + extra_steps
    expected, _ = pad_packed_sequence(packed, batch_first=True, total_length=steps)
    got = unpack(packed.data, packed, steps)
    assert got.shape == (6, steps, 5)
    assert torch.equal(got, expected)
    weights = torch.randn(expected.shape, generator=generator, dtype=torch.double)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), x, retain_graph=True)
    (got_grad,) = torch.autograd.grad((got * weights).sum(), x)
    assert torch.equal(got_grad, expected_grad)
    for row, length in enumerate(lengths.tolist()):  # padding passes no gradient back
        assert torch.count_nonzero(got_grad[row, length:]) == 0
        assert torch.count_nonzero(got_grad[row, :length]) == length * 5
