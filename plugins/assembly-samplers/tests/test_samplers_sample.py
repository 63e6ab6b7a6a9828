"""``sample``: a valid categorical draw inside the loop, temperature, top-k, top-p, n, seeds."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from assembly.plugin import EOS_ID
from samplers_testlib import make_batch, make_model, reference_greedy, replay, sequence_logprob

from assembly_samplers import SampleSpec
from assembly_samplers.sample import draw, filtered_probabilities


def decode(registry: Any, model: Any, source: torch.Tensor, lengths: torch.Tensor,
           seed: int | None = 0, **options: Any) -> Any:
    spec = SampleSpec(**options)
    return registry.record_of(spec).build(spec).decode(model, source, lengths, seed=seed)


def first_tokens(registry: Any, model: Any, source: torch.Tensor, length: int, draws: int,
                 **options: Any) -> torch.Tensor:
    """Counts (V,) of the first sampled token over ``draws`` samples (one input, n draws).
    An empty hypothesis means EOS was drawn first."""
    hyps = decode(registry, model, source[None, :length], torch.tensor([length]),
                  n=draws, max_length=1, **options)
    counts = torch.zeros(model.output_size, dtype=torch.float64)
    for tokens in hyps.tokens[0]:
        counts[tokens[0] if tokens else EOS_ID] += 1
    return counts


def chi_square_critical(df: int, z: float = 3.29) -> float:
    """Wilson–Hilferty approximation of the chi-square quantile (z = 3.29: p ≈ 0.0005)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_first_token_frequencies_match_tempered_softmax(registry: Any, attention_model: Any,
                                                        temperature: float) -> None:
    source, _ = make_batch([6])
    draws = 12_000
    counts = first_tokens(registry, attention_model, source[0], 6, draws,
                          temperature=temperature)
    expected = torch.softmax(_first_logp(attention_model, source[0], 6) / temperature, -1)
    frequencies = counts / draws
    total_variation = 0.5 * float((frequencies - expected).abs().sum())
    assert total_variation < 0.03
    cells = expected * draws > 5  # chi-square over the well-filled cells
    chi2 = float(((counts[cells] - draws * expected[cells]) ** 2
                  / (draws * expected[cells])).sum())
    assert chi2 < chi_square_critical(int(cells.sum()) - 1)


def _first_logp(model: Any, source: torch.Tensor, length: int) -> torch.Tensor:
    with torch.no_grad():
        memory, encoded = model.encode(source[None, :length], torch.tensor([length]))
        state = model.start(memory, encoded)
        return model.step(model.first_input(1, memory.values), state, memory).scores[0].double()


def _entropy(counts: torch.Tensor) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def test_lower_temperature_lowers_entropy(registry: Any, attention_model: Any) -> None:
    source, _ = make_batch([5], seed=3)
    logp = _first_logp(attention_model, source[0], 5)
    temperatures = (0.02, 0.05, 0.1, 0.3, 1.0, 3.0)
    sampled = [_entropy(first_tokens(registry, attention_model, source[0], 5, 4000,
                                     temperature=t)) for t in temperatures]
    assert sampled == sorted(sampled)
    assert sampled[0] < sampled[-1] - 1.0
    for t, entropy in zip(temperatures, sampled, strict=True):
        p = torch.softmax(logp / t, -1)
        exact = float(-(p * p.clamp(min=1e-300).log()).sum())
        assert entropy == pytest.approx(exact, abs=0.05)


def test_tiny_temperature_is_greedy(registry: Any, attention_model: Any) -> None:
    source, lengths = make_batch([3, 7, 1, 5, 9, 4], seed=5)
    hyps = decode(registry, attention_model, source, lengths, temperature=1e-4, max_length=15)
    for row, length in enumerate(lengths.tolist()):
        tokens, score = reference_greedy(attention_model, source[row], length, 15)
        assert hyps.tokens[row][0] == tokens
        assert hyps.scores[row][0] == pytest.approx(score, abs=1e-4)


def test_top_k_never_leaves_the_k_most_probable(registry: Any, attention_model: Any) -> None:
    source, lengths = make_batch([4, 8], seed=1)
    k = 3
    hyps = decode(registry, attention_model, source, lengths, n=40, top_k=k, temperature=3.0,
                  max_length=8)
    seen = 0
    for row, length in enumerate(lengths.tolist()):
        for tokens in hyps.tokens[row]:
            ended = len(tokens) < 8
            steps = replay(attention_model, source[row], length, tokens, eos=ended)
            for logp, token in zip(steps, [*tokens, EOS_ID] if ended else tokens, strict=True):
                assert token in set(logp.topk(k).indices.tolist())
                seen += 1
    assert seen > 200


def test_top_p_never_leaves_the_nucleus(registry: Any, attention_model: Any) -> None:
    source, lengths = make_batch([4, 8], seed=2)
    top_p = 0.6
    hyps = decode(registry, attention_model, source, lengths, n=40, top_p=top_p,
                  temperature=2.0, max_length=8)
    seen = 0
    for row, length in enumerate(lengths.tolist()):
        for tokens in hyps.tokens[row]:
            ended = len(tokens) < 8
            steps = replay(attention_model, source[row], length, tokens, eos=ended)
            for logp, token in zip(steps, [*tokens, EOS_ID] if ended else tokens, strict=True):
                probs = torch.softmax(logp.double() / 2.0, -1)
                ordered = probs.sort(descending=True)
                before = ordered.values.cumsum(0) - ordered.values
                nucleus = set(ordered.indices[before < top_p].tolist())
                assert token in nucleus
                assert len(nucleus) < len(probs)  # the nucleus really excludes tokens
                seen += 1
    assert seen > 200


def test_filtered_probabilities() -> None:
    logp = torch.log_softmax(torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]), -1)
    probs, index = filtered_probabilities(logp, top_k=3)
    assert index is not None and index[0].tolist() == [0, 1, 2]
    assert torch.allclose(probs, torch.softmax(torch.tensor([[2.0, 1.0, 0.5]]).double(), -1))
    full = torch.softmax(logp.double(), -1)[0]
    probs, index = filtered_probabilities(logp, top_p=0.8)
    assert index is not None
    kept = int((probs[0] > 0).sum())
    assert full[:kept].sum() >= 0.8 > full[:kept - 1].sum()  # the smallest such prefix
    assert float(probs.sum()) == pytest.approx(1.0)
    probs, index = filtered_probabilities(logp, top_p=1e-9)  # always at least one
    assert int((probs > 0).sum()) == 1 and index is not None and int(index[0, 0]) == 0
    probs, index = filtered_probabilities(logp, temperature=0.5)
    assert index is None
    assert torch.allclose(probs, torch.softmax(logp.double() * 2, -1))


def test_draw_is_an_inverse_cdf_draw() -> None:
    probs = torch.tensor([[0.2, 0.0, 0.5, 0.3]], dtype=torch.float64).expand(7, 4)
    uniforms = torch.tensor([0.0, 0.19, 0.2, 0.69, 0.7, 0.99, 1.0 - 1e-17],
                            dtype=torch.float64)
    assert draw(probs, None, uniforms).tolist() == [0, 0, 2, 2, 3, 3, 3]
    index = torch.tensor([[5, 6, 7, 8]]).expand(7, 4)
    assert draw(probs, index, uniforms).tolist() == [5, 5, 7, 7, 8, 8, 8]
    # a zero-probability token is never drawn, even at the top edge
    edge = torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)
    assert draw(edge, None, torch.tensor([1.0], dtype=torch.float64)).tolist() == [1]


def test_n_samples_sorted_and_scored_by_model_logprob(registry: Any,
                                                      attention_model: Any) -> None:
    source, lengths = make_batch([5, 2], seed=4)
    hyps = decode(registry, attention_model, source, lengths, n=6, temperature=1.5,
                  max_length=10)
    for row, length in enumerate(lengths.tolist()):
        assert len(hyps.tokens[row]) == 6
        assert hyps.scores[row] == sorted(hyps.scores[row], reverse=True)
        for tokens, score in zip(hyps.tokens[row], hyps.scores[row], strict=True):
            expected = sequence_logprob(attention_model, source[row], length, tokens,
                                        ended=len(tokens) < 10)
            assert score == pytest.approx(expected, abs=1e-4)


def test_seeds(registry: Any, attention_model: Any) -> None:
    source, lengths = make_batch([5, 7, 3], seed=6)
    first = decode(registry, attention_model, source, lengths, seed=1, n=4)
    again = decode(registry, attention_model, source, lengths, seed=1, n=4)
    other = decode(registry, attention_model, source, lengths, seed=2, n=4)
    assert first.tokens == again.tokens
    assert first.tokens != other.tokens
    # a row's samples do not depend on its position or neighbours
    swapped = decode(registry, attention_model, source.flip(0), lengths.flip(0), seed=1, n=4)
    assert swapped.tokens == first.tokens[::-1]
    unseeded = decode(registry, attention_model, source, lengths, seed=None, n=4)
    assert len(unseeded.tokens) == 3


def test_needs_token_mode(registry: Any) -> None:
    model = make_model(registry, 0)
    model.token_mode = False
    source, lengths = make_batch([3])
    with pytest.raises(ValueError, match="token-mode"):
        decode(registry, model, source, lengths)
