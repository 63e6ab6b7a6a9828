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
