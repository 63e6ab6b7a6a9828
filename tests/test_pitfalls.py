"""The older libraries' known bugs (FEATURES.md, "Known pitfalls"), each with a test that
would have caught it:

- teacher forcing fed the current target instead of the previous one (a label leak);
- a depth-1 decoder built two layers;
- an attention score that ignored the decoder state, so the weights never changed;
- the LSTM stored a squashed cell state;
- decoder outputs forced through tanh;
- padding not masked, so outputs changed with batch composition (see also
  test_padding.py for every configuration).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from assembly.build import build_model
from assembly.builtin.cells import GruSpec, LstmSpec
from assembly.plan import plan_model
from assembly.registry import make_registry
from assembly.spec import AttentionSpec, ContinuousSpec, PeekSpec, Spec
from assembly.testing import Batch, make_spec, random_batch

REGISTRY = make_registry(entrypoints=False, strict=True)

TEACHER_CONFIGS: dict[str, dict[str, Any]] = {
    "plain (fused pass)": {},
    "attention after (fused pass)": {"decoder__attention": AttentionSpec()},
    "input feeding (step loop)": {"decoder__attention": AttentionSpec(input_feeding=True)},
    "attention before (step loop)": {"decoder__attention": AttentionSpec(position="before")},
    "inner sync, deep": {"depth": 3, "decoder__inner_sync": True},
    "peek add, maxout": {"decoder__peek": PeekSpec(mode="add"), "output__type": "maxout"},
    "gru, tied": {"decoder__cell": GruSpec(), "output__tied": True},
    "continuous": {"mode": "continuous",
                   "continuous": ContinuousSpec(input_dim=3, output_dim=2)},
}


def _model(spec: Spec, seed: int = 0) -> Any:
    return build_model(plan_model(spec, REGISTRY), REGISTRY, seed=seed).eval()


def _forward(model: Any, batch: Batch) -> Any:
    with torch.no_grad():
        return model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)


@pytest.mark.parametrize("name", sorted(TEACHER_CONFIGS))
@pytest.mark.parametrize("t", [0, 2])
def test_teacher_forcing_feeds_the_previous_target_never_the_current(name: str, t: int) -> None:
    spec = make_spec(registry=REGISTRY, **TEACHER_CONFIGS[name])
    model = _model(spec)
    batch = random_batch(spec, batch=3, target_steps=5, target_lengths=[5, 5, 5],
                         registry=REGISTRY)
    before = _forward(model, batch).predictions
    target = batch.target.clone()
    if spec.token_mode:
        target[:, t] = 4 + (target[:, t] - 4 + 1) % (spec.target.vocab_size - 4)  # another token
    else:
        target[:, t] = target[:, t] + 3.0
    after = _forward(model, Batch(batch.source, batch.source_lengths, target,
                                  batch.target_lengths)).predictions
    # the prediction at t (and before) does not see target[t] ...
    torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], atol=1e-6, rtol=0)
    # ... the prediction at t + 1 does
    assert not torch.allclose(after[:, t + 1], before[:, t + 1], atol=1e-4)


def test_the_first_input_is_bos_or_zeros() -> None:
    from assembly.data.vocab import BOS_ID

    spec = make_spec(registry=REGISTRY)
    model = _model(spec)
    batch = random_batch(spec, batch=2, target_lengths=[4, 4], registry=REGISTRY)
    forced = _forward(model, batch).predictions[:, 0]
    with torch.no_grad():
        memory, encoded = model.encode(batch.source, batch.source_lengths)
        first = model.first_input(2, memory.values)
        assert first.tolist() == [BOS_ID, BOS_ID]
        step = model.step(first, model.start(memory, encoded), memory)
    torch.testing.assert_close(step.scores, torch.log_softmax(forced, -1), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("depth", "encoder_layers", "decoder_layers"),
                         [(1, 1, 1), ((1, 1), 1, 1), ((2, 1), 2, 1), ((1, 3), 1, 3), (4, 4, 4)])
def test_depth_builds_exactly_that_many_layers(depth: Any, encoder_layers: int,
                                               decoder_layers: int) -> None:
    spec = make_spec(registry=REGISTRY, depth=depth)
    plan = plan_model(spec, REGISTRY)
    model = build_model(plan, REGISTRY)
    assert len(model.encoder.layers) == len(plan.encoder) == encoder_layers
    assert len(model.decoder.layers) == len(plan.decoder) == decoder_layers
    recurrent = [name for name, module in model.named_modules()
                 if type(module).__name__ in ("FusedLSTM", "FusedGRU")]
    assert len(recurrent) == encoder_layers + decoder_layers
    assert [row.path for row in plan.rows if row.path.startswith("decoder.layers.")] == [
        f"decoder.layers.{i}" for i in range(decoder_layers)]


@pytest.mark.parametrize("score", ["additive", "dot", "general", "concat"])
@pytest.mark.parametrize("position", ["after", "before"])
def test_attention_weights_change_over_steps_and_follow_the_decoder_state(
        score: str, position: str) -> None:
    spec = make_spec(registry=REGISTRY,
                     decoder__attention=AttentionSpec(score=score, position=position))
    model = _model(spec, seed=3)
    batch = random_batch(spec, batch=2, source_steps=6, target_steps=5,
                         source_lengths=[6, 6], target_lengths=[5, 5], registry=REGISTRY)
    out = _forward(model, batch)
    weights = out.attention  # (B, T, S)
    assert weights is not None
    # they change over time ...
    spread = (weights - weights[:, :1]).abs().amax(dim=(1, 2))
    assert bool((spread > 1e-4).all()), spread
    # ... because they depend on the decoder state: same source, other fed targets
    other = batch.target.flip(1)
    changed = _forward(model, Batch(batch.source, batch.source_lengths, other,
                                    batch.target_lengths)).attention
    assert changed is not None
    # both are fed BOS at step 0, so the states first differ after step 1; "before"
    # attends with the previous state, one step later than "after"
    differs = 1 if position == "after" else 2
    torch.testing.assert_close(changed[:, :differs], weights[:, :differs])
    assert not torch.allclose(changed[:, differs], weights[:, differs], atol=1e-4)
    # and directly: another query over the same memory gives other weights
    with torch.no_grad():
        memory, _ = model.encode(batch.source, batch.source_lengths)
        attention = model.decoder.attention
        size = model.plan.query_size
        query = torch.randn(2, size, generator=torch.Generator().manual_seed(0))
        w1 = attention(query, memory.keys, memory.values, memory.mask)[1]
        w2 = attention(-query, memory.keys, memory.values, memory.mask)[1]
    assert not torch.allclose(w1, w2, atol=1e-4)


def _fused_lstm(input_size: int, hidden: int) -> Any:
    from assembly.nn.fused import FusedLSTM

    torch.manual_seed(0)
    return FusedLSTM(LstmSpec(), input_size, hidden)


def test_the_lstm_matches_torch_and_keeps_its_cell_state_unsquashed() -> None:
    layer = _fused_lstm(3, 4).eval()
    reference = nn.LSTM(3, 4, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(reference, f"{name}_l0").copy_(getattr(layer, name))
        # every gate wide open: i, f, o → 1, g → 1, so c_t = c_{t-1} + 1 grows past 1
        for module, suffix in ((layer, ""), (reference, "_l0")):
            getattr(module, f"weight_ih{suffix}").zero_()
            getattr(module, f"weight_hh{suffix}").zero_()
            getattr(module, f"bias_ih{suffix}").fill_(10.0)
            getattr(module, f"bias_hh{suffix}").zero_()
    x = torch.randn(2, 6, 3)
    lengths = torch.tensor([6, 6])
    with torch.no_grad():
        outputs, (h, c) = layer(x, lengths)
        expected, (_h_ref, c_ref) = reference(x)
        torch.testing.assert_close(outputs, expected)
        torch.testing.assert_close(c, c_ref[0])
        assert bool((c > 5.5).all()), c  # stored as is: tanh would keep it below 1
        torch.testing.assert_close(h, torch.tanh(c) * torch.sigmoid(torch.tensor(10.0)))
        # one step at a time too
        state = layer.initial_state(2, x)
        for t in range(6):
            _out, state = layer.step(x[:, t], state)
        torch.testing.assert_close(state[1], c)


def test_the_decoder_carries_the_lstm_cell_state_unsquashed() -> None:
    spec = make_spec(registry=REGISTRY, decoder__cell=LstmSpec(forget_bias=10.0))
    model = _model(spec)
    with torch.no_grad():
        layer = model.decoder.layers[0]
        layer.weight_hh.zero_()
        layer.weight_ih.zero_()
        layer.bias_ih.fill_(10.0)
    batch = random_batch(spec, batch=1, target_steps=5, target_lengths=[5], registry=REGISTRY)
    with torch.no_grad():
        memory, encoded = model.encode(batch.source, batch.source_lengths)
        state = model.start(memory, encoded)
        previous = model.first_input(1, memory.values)
        start = state.layers[0][1].clone()
        for t in range(5):
            state = model.step(previous, state, memory).state
            previous = batch.target[:, t]
    torch.testing.assert_close(state.layers[0][1], start + 5.0, atol=1e-3, rtol=0)


def test_continuous_outputs_are_not_forced_through_tanh() -> None:
    spec = make_spec(registry=REGISTRY, mode="continuous",
                     continuous=ContinuousSpec(input_dim=2, output_dim=2, output_length=4))
    model = _model(spec)
    with torch.no_grad():
        model.output.proj.bias.fill_(5.0)
    batch = random_batch(spec, batch=2, registry=REGISTRY)
    predictions = _forward(model, batch).predictions
    assert bool((predictions > 1.5).all())


def test_batch_composition_does_not_change_a_row() -> None:
    spec = make_spec(registry=REGISTRY, encoder__bidirectional=True,
                     decoder__attention=AttentionSpec(input_feeding=True))
    model = _model(spec)
    batch = random_batch(spec, batch=4, source_lengths=[7, 2, 5, 3], target_lengths=[2, 6, 4, 1],
                         registry=REGISTRY)
    together = _forward(model, batch).predictions
    for row in range(4):
        alone = _forward(model, batch.row(row)).predictions[0]
        torch.testing.assert_close(alone, together[row, : len(alone)], atol=1e-5, rtol=0)
