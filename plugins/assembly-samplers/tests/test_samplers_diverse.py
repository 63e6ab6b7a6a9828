"""``diverse-beam``: one group is beam search; groups diverge under the Hamming penalty."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from samplers_testlib import make_batch, make_model, sequence_logprob

from assembly_samplers import BeamSpec, DiverseBeamSpec


def run(registry: Any, model: Any, source: torch.Tensor, lengths: torch.Tensor,
        spec: Any) -> Any:
    return registry.record_of(spec).build(spec).decode(model, source, lengths)


@pytest.mark.parametrize("diversity", [0.0, 3.0])
def test_one_group_is_beam_search(registry: Any, diversity: float) -> None:
    model = make_model(registry, 1, sharpness=3.0)
    source, lengths = make_batch([3, 7, 2, 5, 9], seed=1)
    options = {"width": 4, "n_best": 3, "length_penalty": 0.5, "max_length": 12}
    plain = run(registry, model, source, lengths, BeamSpec(**options))
    diverse = run(registry, model, source, lengths,
                  DiverseBeamSpec(groups=1, diversity=diversity, **options))
    assert diverse.tokens == plain.tokens
    for a, b in zip(diverse.scores, plain.scores, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_without_penalty_groups_repeat_each_other(registry: Any) -> None:
    """λ = 0: every group runs the same beam search, so each hypothesis comes twice."""
    model = make_model(registry, 2, sharpness=3.0)
    source, lengths = make_batch([3, 7, 2, 5], seed=2)
    hyps = run(registry, model, source, lengths,
               DiverseBeamSpec(width=4, groups=2, diversity=0.0, n_best=4, max_length=10))
    for row in hyps.tokens:
        assert row[0] == row[1] and row[2] == row[3]


def test_penalty_makes_groups_differ(registry: Any) -> None:
    model = make_model(registry, 2, sharpness=3.0)
    source, lengths = make_batch([3, 7, 2, 5, 6, 4], seed=2)
    spec = DiverseBeamSpec(width=4, groups=2, diversity=5.0, n_best=4, max_length=10)
    hyps = run(registry, model, source, lengths, spec)
    for row, length in enumerate(lengths.tolist()):
        assert len({tuple(t) for t in hyps.tokens[row]}) == 4  # four different outputs
        # the two groups start differently: at the first step, group 1 avoids both of
        # group 0's tokens (λ = 5 outweighs any log-probability gap on this model)
        firsts = {t[0] for t in hyps.tokens[row] if t}
        assert len(firsts) >= 2
        # reported scores are true log-probabilities (no penalty), best first
        assert hyps.scores[row] == sorted(hyps.scores[row], reverse=True)
        for tokens, score in zip(hyps.tokens[row], hyps.scores[row], strict=True):
            expected = sequence_logprob(model, source[row], length, tokens, len(tokens) < 10)
            assert score == pytest.approx(expected, abs=1e-4)


def test_diversity_lowers_the_best_true_score_at_most_to_the_first_group(
        registry: Any) -> None:
    """Group 0 is never penalised: with n_best = width the best hypothesis overall is at
    least as good as plain beam search of one group's width."""
    model = make_model(registry, 3, sharpness=3.0)
    source, lengths = make_batch([4, 6, 3], seed=3)
    diverse = run(registry, model, source, lengths,
                  DiverseBeamSpec(width=4, groups=2, diversity=2.0, n_best=4, max_length=10))
    plain = run(registry, model, source, lengths, BeamSpec(width=2, max_length=10))
    for a, b in zip(diverse.scores, plain.scores, strict=True):
        assert a[0] >= b[0] - 1e-5
