"""Property tests over random architectures: what the plan predicts is what gets built.

Each example draws a spec (depths 1–6 per side, per-layer sizes, LSTM/GRU with or without
biases, bidirectional encoders merged by concat or sum, every bridge, inner sync, every
peek mode, attention with every score / position / query and input feeding, linear,
maxout and tied outputs, token and continuous modes), builds it and checks:

- the parameter count equals the plan, in total and row by row (``module_table``), and
  the rows cover every parameter exactly once;
- exactly the planned number of layers is built on each side;
- a forward pass on a random padded batch gives the shapes the plan predicts;
- the step API gives what the teacher-forced pass gives;
- backward reaches every parameter except those the architecture leaves unused, and
  :func:`dead_parameters` says exactly which those are (so a change that orphans a
  parameter, or wires in one that should be unused, fails here).
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import given

from assembly.build import build_model, count_parameters, module_table
from assembly.plan import Plan, plan_model
from assembly.registry import make_registry
from assembly.sizes import bridge_source
from assembly.spec.model import Spec
from assembly.testing import random_batch, spec_strategy

REGISTRY = make_registry(entrypoints=False, strict=True)
SPECS = spec_strategy(REGISTRY)


def dead_parameters(spec: Spec, plan: Plan) -> set[str]:
    """Name prefixes of the parameters no output depends on, by the architecture's design.

    - Without attention or peek, the decoder reads the encoder only through the bridge:
      encoder layers above the highest one the bridge reads are unused (all of them, and
      the source embedding, with the zero bridge).
    - With inner sync only decoder layer 0 has a bridge source, the encoder's top layer
      (the layers above start every step from their lower neighbour's new state).
    """
    decoder = spec.decoder
    attention = decoder.attention
    top_encoder_used = len(plan.encoder) - 1 if (attention or decoder.peek) else -1
    broadcast = decoder.broadcast_state and spec.bridge.type != "zero"
    kind = spec.bridge.type if broadcast else "zero"
    dead: set[str] = set()
    for index in range(len(plan.decoder)):
        source = bridge_source(kind, index, len(plan.encoder), decoder.inner_sync)
        if source is not None:
            top_encoder_used = max(top_encoder_used, source)
    dead.update(f"encoder.layers.{k}." for k in range(top_encoder_used + 1, len(plan.encoder)))
    if top_encoder_used < 0:
        dead.add("source_embedding.")
    return dead


def _build(spec: Spec) -> tuple[Plan, Any]:
    plan = plan_model(spec, REGISTRY)
    model = build_model(plan, REGISTRY, seed=0)
    return plan, model


@given(SPECS)
def test_parameter_count_and_layers_match_the_plan(spec: Spec) -> None:
    plan, model = _build(spec)
    counted = count_parameters(model)
    assert counted == plan.total, plan.table()
    recounted = module_table(model, plan)
    for planned, built in zip(plan.rows, recounted.rows, strict=True):
        assert built.parameters == planned.parameters, (planned.path, plan.table())
    assert recounted.total == counted  # the rows cover every parameter exactly once
    assert len(model.encoder.layers) == spec.encoder_depth == len(plan.encoder)
    assert len(model.decoder.layers) == spec.decoder_depth == len(plan.decoder)


@given(SPECS)
def test_forward_shapes_match_the_plan(spec: Spec) -> None:
    plan, model = _build(spec)
    batch = random_batch(plan, batch=3, source_steps=5, target_steps=4, seed=1)
    rows, source_steps = batch.source.shape[:2]
    target_steps = batch.target.shape[1]
    model.eval()
    with torch.no_grad():
        out = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    assert out.predictions.shape == (rows, target_steps, plan.classes)
    assert out.encoder.outputs.shape == (rows, source_steps, plan.encoder_output)
    for layer, states, outputs in zip(plan.encoder, out.encoder.states,
                                      out.encoder.layer_outputs, strict=True):
        assert outputs.shape == (rows, source_steps, layer.output_size)
        assert [tuple(s.shape) for s in states] == [(rows, n) for n in layer.state_sizes]
    assert out.decoder_outputs.shape == (rows, target_steps, plan.decoder[-1].output_size)
    assert [tuple(o.shape) for o in out.decoder_layer_outputs] == [
        (rows, target_steps, layer.output_size) for layer in plan.decoder]
    if spec.decoder.attention is None:
        assert out.attention is None
    else:
        assert out.attention is not None
        assert out.attention.shape == (rows, target_steps, source_steps)
        padded = ~out.encoder.mask[:, None, :].expand_as(out.attention)
        assert bool((out.attention[padded] == 0).all())
        # a distribution at every target step the mask marks (only those are defined)
        sums = out.attention.sum(-1)[out.mask]
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    has_stop = not spec.token_mode and spec.continuous.output_length is None
    assert (out.stop_logits is not None) == has_stop
    if has_stop:
        assert out.stop_logits.shape == (rows, target_steps)
    total, count = model.loss(out, batch.target)
    assert total.shape == () and int(count) == int(batch.target_lengths.sum())


@given(SPECS)
def test_step_api_matches_teacher_forcing(spec: Spec) -> None:
    plan, model = _build(spec)
    batch = random_batch(plan, batch=3, source_steps=5, target_steps=4, seed=2)
    model.eval()
    with torch.no_grad():
        out = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
        memory, encoded = model.encode(batch.source, batch.source_lengths)
        state = model.start(memory, encoded)
        assert [tuple(t.shape) for layer in state.layers for t in layer] == [
            (3, n) for layer in plan.decoder for n in layer.state_sizes]
        previous = model.first_input(3, memory.values)
        steps = []
        for t in range(batch.target.shape[1]):
            result = model.step(previous, state, memory)
            assert result.scores.shape == (3, plan.classes)
            state = result.state
            steps.append(result.scores)
            previous = batch.target[:, t]
        stepped = torch.stack(steps, dim=1)
    expected = (torch.log_softmax(out.predictions, dim=-1) if spec.token_mode
                else out.predictions)
    mask = out.mask
    assert torch.allclose(stepped[mask], expected[mask], atol=1e-5, rtol=1e-4)


@given(SPECS)
def test_backward_reaches_every_parameter_that_is_used(spec: Spec) -> None:
    plan, model = _build(spec)
    batch = random_batch(plan, batch=4, source_steps=5, target_steps=5, seed=3)
    model.train()  # dropout on: the shapes hold, the loss is finite
    out = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    assert out.predictions.shape == (4, batch.target.shape[1], plan.classes)
    assert bool(torch.isfinite(model.loss(out, batch.target)[0]))
    model.eval()  # dropout off, so that no gradient is zeroed by chance
    out = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    total, _count = model.loss(out, batch.target)
    generator = torch.Generator().manual_seed(0)
    # a random projection of the predictions too, so that no gradient cancels by symmetry
    weights = torch.randn(out.predictions.shape, generator=generator)
    (total + (out.predictions * weights).sum()).backward()
    dead = dead_parameters(spec, plan)
    unreached = {name for name, p in model.named_parameters()
                 if p.grad is None or not bool((p.grad != 0).any())}
    expected = {name for name, _ in model.named_parameters()
                if any(name.startswith(prefix) for prefix in dead)}
    assert unreached == expected, f"unexpectedly unreached: {sorted(unreached - expected)}; " \
                                  f"unexpectedly reached: {sorted(expected - unreached)}"
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert bool(torch.isfinite(p.grad).all()), name
