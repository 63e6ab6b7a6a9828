"""The native decoding step (assembly.nn.decoder_step_native) against the Python step:
step by step the features, attention, states and outputs agree to float rounding over
several steps of rows with different source lengths; greedy decoding gives the same
hypotheses; weights changed in place by an optimiser are picked up; what it does not
cover runs the Python step."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from helpers_native import ATOL, FEEDING, NATIVE_CONFIGS, RTOL, needs_native

from assembly.build import build_model
from assembly.builtin.cells import GruSpec
from assembly.builtin.samplers import GreedySpec
from assembly.nn import decoder_step_native, native
from assembly.plan import plan_model
from assembly.registry import make_registry
from assembly.spec import AttentionSpec
from assembly.testing import make_spec, random_batch

REGISTRY = make_registry(entrypoints=False, strict=True)
CONFIGS = {name: NATIVE_CONFIGS[name] for name in (
    "reference-like", "concat", "three-layers", "no-bias", "peek-concat", "nothing-fed")}


def _model(name: str) -> Any:
    spec = make_spec(registry=REGISTRY, **CONFIGS[name])
    return spec, build_model(plan_model(spec, REGISTRY), REGISTRY, seed=0).eval()


def _steps(model: Any, batch: Any, steps: int) -> list[Any]:
    """``steps`` decoding steps from the start, feeding each step's argmax."""
    memory, encoded = model.encode(batch.source, batch.source_lengths)
    state = model.start(memory, encoded)
    previous = model.first_input(batch.source.shape[0], memory.values)
    results = []
    for _ in range(steps):
        result = model.step(previous, state, memory)
        results.append(result)
        state = result.state
        previous = result.scores.argmax(-1)
    return results


def _python_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoder_step_native, "applies", lambda *args: False)


@needs_native
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_native_steps_equal_the_python_steps(name: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    spec, model = _model(name)
    batch = random_batch(spec, registry=REGISTRY, batch=9, source_steps=8,
                         source_lengths=[8, 3, 5, 8, 1, 6, 2, 7, 4], seed=2)
    calls = []
    real = decoder_step_native.step
    monkeypatch.setattr(decoder_step_native, "step",
                        lambda *args: (calls.append(1), real(*args))[1])
    with torch.no_grad():
        ours = _steps(model, batch, 4)
        assert len(calls) == 4
        _python_step(monkeypatch)
        reference = _steps(model, batch, 4)
    assert len(calls) == 4
    for mine, theirs in zip(ours, reference, strict=True):
        for field in ("scores", "attention", "top"):
            torch.testing.assert_close(getattr(mine, field), getattr(theirs, field),
                                       rtol=RTOL, atol=ATOL, msg=field)
        for a, b in zip(mine.state.layers, theirs.state.layers, strict=True):
            for x, y in zip(a, b, strict=True):
                torch.testing.assert_close(x, y, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(mine.state.feed, theirs.state.feed, rtol=RTOL, atol=ATOL)
        masked = ~torch.arange(8)[None, :].lt(batch.source_lengths[:, None])
        assert torch.all(mine.attention[masked] == 0)


@needs_native
def test_greedy_decoding_is_the_same_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """Also on a batch whose row loops run on two threads."""
    spec, model = _model("reference-like")
    batch = random_batch(spec, registry=REGISTRY, batch=300, source_steps=9, seed=5)
    sampler = REGISTRY.record_of(GreedySpec()).build(GreedySpec())
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ours = sampler.decode(model, batch.source, batch.source_lengths)
    finally:
        torch.set_num_threads(threads)
    _python_step(monkeypatch)
    reference = sampler.decode(model, batch.source, batch.source_lengths)
    assert ours.tokens == reference.tokens
    for mine, theirs in zip(ours.scores, reference.scores, strict=True):
        assert mine == pytest.approx(theirs, rel=1e-5, abs=1e-5)


@needs_native
def test_weights_updated_by_a_fused_optimiser_are_used_at_the_next_decode(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer decodes the dev set between updates of torch's fused Adam, which changes
    the weights in place without bumping their version counters: each decode must read
    the weights as they are then (a layout kept across decodes decoded with stale ones)."""
    spec, model = _model("reference-like")
    batch = random_batch(spec, registry=REGISTRY, batch=5, seed=3)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05, fused=True)
    with torch.no_grad():
        before = _steps(model, batch, 2)[-1].scores
    model.train()
    outputs = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    total, count = model.loss(outputs, batch.target)
    (total / count).backward()
    optimiser.step()
    model.eval()
    with torch.no_grad():
        after = _steps(model, batch, 2)[-1].scores
        _python_step(monkeypatch)
        reference = _steps(model, batch, 2)[-1].scores
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, reference, rtol=RTOL, atol=ATOL)


def test_what_the_native_step_does_not_cover_runs_the_python_step() -> None:
    for overrides in ({"decoder__cell": GruSpec(), "decoder__attention": FEEDING},
                      {"decoder__attention": AttentionSpec(score="dot", input_feeding=True)},
                      {"decoder__attention": AttentionSpec(input_feeding=False)}):
        spec = make_spec(registry=REGISTRY, **overrides)
        model = build_model(plan_model(spec, REGISTRY), REGISTRY, seed=0).eval()
        batch = random_batch(spec, registry=REGISTRY, seed=1)
        with torch.no_grad():
            memory, _ = model.encode(batch.source, batch.source_lengths)
            assert not decoder_step_native.applies(model.decoder, memory)
    spec, model = _model("reference-like")
    batch = random_batch(spec, registry=REGISTRY, seed=1)
    memory, _ = model.encode(batch.source, batch.source_lengths)
    assert not decoder_step_native.applies(model.decoder, memory)  # gradients on
    with torch.no_grad():
        assert decoder_step_native.applies(model.decoder, memory) == (
            native.loops() is not None)
        model.train()
        assert not decoder_step_native.applies(model.decoder, memory)  # dropout
        model.eval().double()
        memory, _ = model.encode(batch.source, batch.source_lengths)
        assert not decoder_step_native.applies(model.decoder, memory)  # float64
