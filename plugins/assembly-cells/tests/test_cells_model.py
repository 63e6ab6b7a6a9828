"""Every cell through the whole framework: spec → plan → build → forward/backward → decode.

The cell runs in a bidirectional depth-2 encoder (per-layer sizes, so the second layer's
input differs from its hidden size) and a depth-2 decoder with peek and attention, once
with the parallel teacher-forced decoder and once with input feeding (the per-step path).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from assembly.build import build_model, count_parameters, module_table
from assembly.plan import plan_model
from assembly.spec import (
    AttentionSpec,
    BridgeSpec,
    DecoderSpec,
    EncoderSpec,
    PeekSpec,
    Spec,
    TokenSideSpec,
)
from cells_support import CELLS, make_spec

VOCAB = 11


def model_spec(cell: str, *, feeding: bool, **options: Any) -> Spec:
    cell_spec = make_spec(cell, **options)
    return Spec(
        depth=2,
        source=TokenSideSpec(vocab_size=VOCAB, embedding=6),
        target=TokenSideSpec(vocab_size=VOCAB, embedding=6),
        encoder=EncoderSpec(cell=cell_spec, hidden=(5, 4), bidirectional=True),
        bridge=BridgeSpec(type="linear"),
        decoder=DecoderSpec(cell=cell_spec, hidden=(6, 5), peek=PeekSpec(mode="concat"),
                            attention=AttentionSpec(input_feeding=feeding)),
    )


def batch(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)  # PAD = 0
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(4, VOCAB, (length,), generator=generator)
    return ids, torch.tensor(lengths)


@pytest.mark.parametrize("feeding", [False, True], ids=["parallel", "input-feeding"])
@pytest.mark.parametrize("cell", CELLS)
def test_cell_in_full_model(cell: str, feeding: bool, registry: Any) -> None:
    for options in ({}, {"bias": False}):
        spec = model_spec(cell, feeding=feeding, **options)
        plan = plan_model(spec, registry)
        model = build_model(plan, registry, seed=0)
        assert plan.total == count_parameters(model)
        recounted = module_table(model, plan)
        for planned, built in zip(plan.rows, recounted.rows, strict=True):
            assert planned.parameters == built.parameters, planned.path
        assert model.decoder.parallel == (not feeding)

        source, source_lengths = batch([5, 2, 4], seed=1)
        target, target_lengths = batch([3, 4, 1], seed=2)
        outputs = model(source, source_lengths, target, target_lengths)
        assert outputs.predictions.shape == (3, 4, VOCAB)
        loss, tokens = model.loss(outputs, target)
        (loss / tokens).backward()
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None, name
            assert torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"

    # decoding runs the per-step path of every layer
    greedy = registry.get("sampler", "greedy")
    sampler = greedy.build(greedy.spec(max_length=6))
    model.eval()
    with torch.no_grad():
        hypotheses = sampler.decode(model, source, source_lengths)
    assert hypotheses is not None


def test_plan_table_shows_projection_in_the_count(registry: Any) -> None:
    """JZS1's input projection (I ≠ H) is part of the planned layer's parameters."""
    spec = model_spec("jzs1", feeding=False)
    plan = plan_model(spec, registry)
    layer = plan.encoder[0]  # input 6 → hidden 5: projection 5·6 per direction
    assert layer.input_size != layer.hidden
    row = next(r for r in plan.rows if r.path == "encoder.layers.0")
    expected = 2 * (2 * 5 * 6 + 2 * 5 * 5 + 5 * 6 + 3 * 5)
    assert row.parameters == expected
    assert "jzs1" in plan.table()


def test_urnn_sizes_in_plan(registry: Any) -> None:
    """uRNN layers output 2N ([Re h; Im h]); the plan's sizes say so."""
    plan = plan_model(model_spec("urnn", feeding=False), registry)
    assert [layer.output_size for layer in plan.encoder] == [20, 16]  # 2 directions × 2N
    assert [layer.state_sizes for layer in plan.decoder] == [(12,), (10,)]
