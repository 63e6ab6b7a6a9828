"""``beam``: width 1 is greedy, beams never lose to greedy, n-best, length penalty, stops."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
import torch
from assembly.plugin import BOS_ID, EOS_ID, DecodeStart
from samplers_testlib import make_batch, make_model, reference_greedy, sequence_logprob

from assembly_samplers import BeamSpec
from assembly_samplers.beam import length_penalty


def beam(registry: Any, model: Any, source: torch.Tensor, lengths: torch.Tensor,
         **options: Any) -> Any:
    spec = BeamSpec(**options)
    return registry.record_of(spec).build(spec).decode(model, source, lengths)


@pytest.mark.parametrize("seed", [0, 1])
def test_width_one_is_greedy(registry: Any, seed: int) -> None:
    model = make_model(registry, seed)
    source, lengths = make_batch([3, 7, 1, 5, 9, 4], seed=seed)
    hyps = beam(registry, model, source, lengths, width=1, max_length=15)
    for row, length in enumerate(lengths.tolist()):
        tokens, score = reference_greedy(model, source[row], length, 15)
        assert hyps.tokens[row] == [tokens]
        assert hyps.scores[row][0] == pytest.approx(score, abs=1e-4)


def test_builtin_greedy_agrees(registry: Any, attention_model: Any) -> None:
    """Width 1, a plain greedy loop and the core's own greedy sampler agree."""
    from assembly.builtin.samplers import GreedySpec

    source, lengths = make_batch([3, 7, 1, 5, 9, 4])
    greedy = registry.get("sampler", "greedy").build(GreedySpec(max_length=15))
    builtin = greedy.decode(attention_model, source, lengths)
    reference = [reference_greedy(attention_model, source[row], length, 15)[0]
                 for row, length in enumerate(lengths.tolist())]
    assert builtin.best() == reference
    hyps = beam(registry, attention_model, source, lengths, width=1, max_length=15)
    assert hyps.tokens == builtin.tokens
    for ours, theirs in zip(hyps.scores, builtin.scores, strict=True):
        assert ours == pytest.approx(theirs, abs=1e-4)
    for ours, theirs in zip(hyps.attention, builtin.attention, strict=True):
        assert torch.allclose(ours[0], theirs[0], atol=1e-5)


def test_best_beam_never_scores_below_greedy(registry: Any) -> None:
    better = 0
    for seed in range(4):
        model = make_model(registry, seed, feeding=seed % 2 == 0, sharpness=3.0)
        source, lengths = make_batch([3, 7, 2, 5, 9, 4, 6, 8], seed=seed)
        hyps = beam(registry, model, source, lengths, width=4, n_best=4, max_length=12)
        for row, length in enumerate(lengths.tolist()):
            _, greedy_score = reference_greedy(model, source[row], length, 12)
            assert hyps.scores[row][0] >= greedy_score - 1e-4
            better += hyps.scores[row][0] > greedy_score + 1e-4
            # the reported score is the hypothesis' log-probability
            tokens = hyps.tokens[row][0]
            expected = sequence_logprob(model, source[row], length, tokens, len(tokens) < 12)
            assert hyps.scores[row][0] == pytest.approx(expected, abs=1e-4)
    assert better > 0  # beams do find better outputs on random models


def test_n_best_sorted_distinct_and_scored(registry: Any, attention_model: Any) -> None:
    source, lengths = make_batch([4, 6, 2], seed=7)
    hyps = beam(registry, attention_model, source, lengths, width=5, n_best=5,
                length_penalty=0.8, max_length=10)
    for row, length in enumerate(lengths.tolist()):
        assert len(hyps.tokens[row]) == 5
        assert hyps.scores[row] == sorted(hyps.scores[row], reverse=True)
        assert len({tuple(t) for t in hyps.tokens[row]}) == 5
        for tokens, score in zip(hyps.tokens[row], hyps.scores[row], strict=True):
            ended = len(tokens) < 10
            steps = len(tokens) + ended
            logp = sequence_logprob(attention_model, source[row], length, tokens, ended)
            assert score == pytest.approx(logp / length_penalty(steps, 0.8), abs=1e-4)


def test_early_finish_off_never_worse(registry: Any) -> None:
    for seed in range(3):
        model = make_model(registry, seed)
        source, lengths = make_batch([3, 6, 8, 5], seed=seed)
        quick = beam(registry, model, source, lengths, width=3, max_length=12,
                     length_penalty=1.0)
        full = beam(registry, model, source, lengths, width=3, max_length=12,
                    length_penalty=1.0, early_finish=False)
        for a, b in zip(quick.scores, full.scores, strict=True):
            assert b[0] >= a[0] - 1e-5


def test_needs_token_mode(registry: Any) -> None:
    model = make_model(registry, 0)
    model.token_mode = False
    source, lengths = make_batch([3])
    with pytest.raises(ValueError, match="token-mode"):
        beam(registry, model, source, lengths)


# -- a constructed case for the length penalty --------------------------------------------
# vocabulary: PAD, BOS, EOS, UNK, a (every other token 0.001, then renormalised). From
# BOS: EOS 0.50, a 0.49; after the first three "a": a 0.9; after the fourth: EOS 0.95.
# [] scores log p ≈ −0.70 (1 step); [a, a, a, a] + EOS log p ≈ −1.08 over 5 steps:
# lp(5) = 10/6 at α = 1 → ≈ −0.65, so the penalty turns the ranking round.

@attrs.define
class _Memory:
    values: torch.Tensor  # (B, 1, 1)
    source_lengths: torch.Tensor

    def select(self, index: torch.Tensor) -> _Memory:
        return _Memory(self.values[index], self.source_lengths[index])


@attrs.define
class _State:
    count: torch.Tensor  # (B,) "a" tokens so far

    def select(self, index: torch.Tensor) -> _State:
        return _State(self.count[index])


@attrs.define
class _Result:
    scores: torch.Tensor
    state: _State
    attention: None = None
    stop: None = None


class _Chain:
    """A stand-in model with a fixed next-token distribution (see above)."""

    token_mode = True
    output_length = None

    def first_input(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((batch,), BOS_ID, dtype=torch.long)

    def step(self, previous: torch.Tensor, state: _State, memory: _Memory) -> _Result:
        probs = torch.full((previous.shape[0], 5), 1e-3)
        start = previous == BOS_ID
        probs[start, EOS_ID], probs[start, 4] = 0.50, 0.49
        early = ~start & (state.count < 3)
        probs[early, 4], probs[early, EOS_ID] = 0.9, 0.05
        late = ~start & (state.count >= 3)
        probs[late, EOS_ID], probs[late, 4] = 0.95, 0.01
        count = state.count + (previous == 4).long()
        return _Result(torch.log(probs / probs.sum(-1, keepdim=True)), _State(count))


def _chain_search(alpha: float) -> Any:
    memory = _Memory(torch.zeros(1, 1, 1), torch.tensor([1]))
    start = DecodeStart(memory, _State(torch.zeros(1, dtype=torch.long)), torch.tensor([8]),
                        None)
    sampler = BeamSpec(width=3, n_best=2, length_penalty=alpha, early_finish=False)
    from assembly_samplers.beam import BeamSearch

    return BeamSearch(sampler).search(_Chain(), start)


def test_length_penalty_changes_the_ranking() -> None:
    plain = _chain_search(0.0)
    assert plain.tokens[0] == [[], [4, 4, 4, 4]]
    penalised = _chain_search(1.0)
    assert penalised.tokens[0] == [[4, 4, 4, 4], []]
    short, long = penalised.scores[0][1], penalised.scores[0][0]
    assert short == pytest.approx(math.log(0.5 / 0.993), abs=1e-6)  # lp(1) = 1
    assert long > short
    # the reported scores are log p / lp(L)
    assert long == pytest.approx(plain.scores[0][1] / length_penalty(5, 1.0), abs=1e-5)
