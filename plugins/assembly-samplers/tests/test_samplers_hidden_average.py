"""``hidden-average``: α = 0 is greedy, α > 0 changes outputs, the stored states stay true."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from assembly.plugin import EOS_ID
from samplers_testlib import make_batch, make_model, reference_greedy

from assembly_samplers import HiddenAverageSpec


def run(registry: Any, model: Any, source: torch.Tensor, lengths: torch.Tensor,
        alpha: float, max_length: int = 15) -> Any:
    spec = HiddenAverageSpec(average_hidden_state_influence=alpha, max_length=max_length)
    return registry.record_of(spec).build(spec).decode(model, source, lengths)


@pytest.mark.parametrize("seed", [0, 1])
def test_alpha_zero_is_greedy(registry: Any, seed: int) -> None:
    model = make_model(registry, seed, sharpness=2.0)
    source, lengths = make_batch([3, 7, 1, 5, 9, 4], seed=seed)
    hyps = run(registry, model, source, lengths, 0.0)
    for row, length in enumerate(lengths.tolist()):
        tokens, score = reference_greedy(model, source[row], length, 15)
        assert hyps.tokens[row] == [tokens]
        assert hyps.scores[row][0] == pytest.approx(score, abs=1e-5)


def test_alpha_changes_outputs(registry: Any) -> None:
    model = make_model(registry, 1, sharpness=2.0)
    source, lengths = make_batch([3, 7, 1, 5, 9, 4, 6, 8], seed=1)
    greedy = run(registry, model, source, lengths, 0.0)
    for alpha in (0.5, 1.0):
        averaged = run(registry, model, source, lengths, alpha)
        assert averaged.tokens != greedy.tokens
        assert averaged.scores != greedy.scores


@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_cell_receives_the_mix_and_the_true_states_are_kept(registry: Any,
                                                             alpha: float) -> None:
    """Spy on ``model.step``: the state handed in at step t must be
    (1 − α)·s_{t−1} + α·mean(s_0 … s_{t−1}) where s_0 is the bridge's state and s_k the
    state the cell returned at step k — never a mixed one."""
    model = make_model(registry, 2)
    source, lengths = make_batch([5], seed=2)
    with torch.no_grad():
        model.output.proj.bias[EOS_ID] = -50.0  # run to the length limit
        memory, encoded = model.encode(source, lengths)
        initial = model.start(memory, encoded)
    received, returned = [], []
    original = model.step

    def spy(previous: torch.Tensor, state: Any, memory: Any) -> Any:
        result = original(previous, state, memory)
        received.append(state)
        returned.append(result.state)
        return result

    model.step = spy
    run(registry, model, source, lengths, alpha, max_length=8)
    assert len(received) == 8  # the model was made to run long enough to see averaging
    true = [initial, *returned]
    for t, state in enumerate(received):  # step t receives a mix of s_0 … s_t (0-based)
        for layer, given in enumerate(state.layers):
            for index, tensor in enumerate(given):
                history = torch.stack([s.layers[layer][index] for s in true[: t + 1]])
                expected = (1 - alpha) * history[-1] + alpha * history.mean(0)
                assert torch.allclose(tensor, expected, atol=1e-6), (t, layer, index)
        # input feeding: the attentional vector is passed on untouched
        assert torch.equal(state.feed, true[t].feed)


def test_continuous_mode(registry: Any) -> None:
    from assembly.build import build_model
    from assembly.spec import ContinuousSpec, DecoderSpec, EncoderSpec, Spec

    spec = Spec(mode="continuous", continuous=ContinuousSpec(input_dim=3, output_dim=2,
                                                             output_length=4),
                encoder=EncoderSpec(hidden=8), decoder=DecoderSpec(hidden=8))
    model = build_model(spec, registry, seed=0).eval()
    source, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
    plain = run(registry, model, source, lengths, 0.0)
    mixed = run(registry, model, source, lengths, 0.8)
    for hyps in (plain, mixed):
        assert hyps.vectors is not None
        assert [v[0].shape for v in hyps.vectors] == [(4, 2), (4, 2)]
    assert not torch.allclose(plain.vectors[0][0], mixed.vectors[0][0])
