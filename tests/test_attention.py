"""Attention scores against their defining equations, computed independently here.

The module computes the tanh scores through the sigmoid (2 vᵀ σ(2z), which differs from
vᵀ tanh(z) by a per-row constant the softmax removes); these tests pin that the weights,
the contexts and the gradients are those of the textbook formulas.
"""

from __future__ import annotations

import pytest
import torch

from assembly.nn import native
from assembly.nn.attention import Attention

BATCH, STEPS, QUERY, KEY, SIZE = 3, 5, 6, 4, 7


def _reference_scores(attention: Attention, query: torch.Tensor,
                      keys: torch.Tensor) -> torch.Tensor:
    """score(q, k_s) for every source step, straight from the equations: (B, S)."""
    if attention.score == "additive":  # vᵀ tanh(W q + U k + b)
        w, u = attention.query_map.weight, attention.key_map.weight
        b, v = attention.key_map.bias, attention.vector.weight[0]
        return torch.tanh((query @ w.T)[:, None, :] + keys @ u.T + b) @ v
    if attention.score == "concat":  # vᵀ tanh(W [q; k]), W split into its q and k columns
        w_q, w_k = attention.query_map.weight, attention.key_map.weight
        v = attention.vector.weight[0]
        return torch.tanh((query @ w_q.T)[:, None, :] + keys @ w_k.T) @ v
    if attention.score == "dot":
        q = query if QUERY == KEY or isinstance(attention.query_map, torch.nn.Identity) \
            else query @ attention.query_map.weight.T
        return torch.einsum("bm,bsm->bs", q, keys)
    return torch.einsum("bq,qm,bsm->bs", query, attention.key_map.weight, keys)  # general


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(BATCH, QUERY, generator=generator, dtype=torch.float64)
    keys = torch.randn(BATCH, STEPS, KEY, generator=generator, dtype=torch.float64)
    mask = torch.ones(BATCH, STEPS, dtype=torch.bool)
    mask[1, 3:] = False  # a padded row
    mask[2, 1:] = False  # a row with a single valid step
    return query, keys, mask


@pytest.mark.parametrize("score", ["additive", "concat", "dot", "general"])
def test_weights_and_context_follow_the_equations(score: str) -> None:
    torch.manual_seed(0)
    attention = Attention(score, QUERY, KEY, SIZE).double()
    query, keys, mask = _inputs(1)
    context, weights = attention(query, attention.prepare(keys), keys, mask)
    expected = torch.softmax(_reference_scores(attention, query, keys)
                             .masked_fill(~mask, float("-inf")), dim=1)
    torch.testing.assert_close(weights, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(context, torch.einsum("bs,bsm->bm", expected, keys))
    assert bool((weights[~mask] == 0).all())  # padding gets exactly nothing
    torch.testing.assert_close(weights.sum(1), torch.ones(BATCH, dtype=torch.float64))


@pytest.mark.parametrize("score", ["additive", "concat"])
def test_gradients_equal_those_of_the_tanh_formula(score: str) -> None:
    torch.manual_seed(0)
    attention = Attention(score, QUERY, KEY, SIZE).double()
    query, keys, mask = _inputs(2)
    query.requires_grad_(True)
    keys.requires_grad_(True)
    probe = torch.randn(BATCH, KEY, dtype=torch.float64)  # a random direction for the loss

    context, _ = attention(query, attention.prepare(keys), keys, mask)
    ours = torch.autograd.grad((context * probe).sum(), [query, keys,
                                                          *attention.parameters()])
    expected_weights = torch.softmax(_reference_scores(attention, query, keys)
                                     .masked_fill(~mask, float("-inf")), dim=1)
    expected_context = torch.einsum("bs,bsm->bm", expected_weights, keys)
    reference = torch.autograd.grad((expected_context * probe).sum(),
                                    [query, keys, *attention.parameters()])
    for mine, theirs in zip(ours, reference, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("score", ["additive", "concat", "dot", "general"])
def test_all_steps_at_once_equal_step_by_step(score: str) -> None:
    torch.manual_seed(0)
    attention = Attention(score, QUERY, KEY, SIZE).double()
    _, keys, mask = _inputs(3)
    queries = torch.randn(BATCH, 4, QUERY, dtype=torch.float64)
    prepared = attention.prepare(keys)
    contexts, weights = attention.forward_all(queries, prepared, keys, mask)
    for t in range(queries.shape[1]):
        context, weight = attention(queries[:, t], prepared, keys, mask)
        torch.testing.assert_close(contexts[:, t], context)
        torch.testing.assert_close(weights[:, t], weight)


@pytest.mark.parametrize("shapes", [((3, 5, 4), (3, 1, 4)), ((2, 1, 5, 4), (2, 3, 1, 4))],
                         ids=["per-step", "all-steps"])
def test_recomputing_scores_pass_gradcheck(shapes: tuple[tuple[int, ...], ...]) -> None:
    """The squashed scores keep no (…, S, A) tensor for the backward; gradients are exact."""
    from assembly.nn.attention import SquashedScores

    generator = torch.Generator().manual_seed(4)
    keys, queries = (torch.randn(s, generator=generator, dtype=torch.float64,
                                 requires_grad=True) for s in shapes)
    vector = torch.randn(4, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SquashedScores.apply, (keys, queries, vector))
    expected = 2 * (torch.sigmoid(keys + queries) @ vector)
    torch.testing.assert_close(SquashedScores.apply(keys, queries, vector), expected)


@pytest.mark.skipif(native.loops() is None, reason="the native module could not be built here")
@pytest.mark.parametrize("score", ["additive", "concat"])
def test_native_decoding_step_equals_the_equations(score: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Without gradients, in float32, a decoding step's tanh attention runs natively (one
    pass per row over its own source extent); weights and contexts are the textbook
    formulas' to float rounding, with masked steps at zero weight, and the torch path
    gives the same."""
    import assembly.nn.attention as attention_module

    torch.manual_seed(0)
    attention = Attention(score, QUERY, KEY, 64)
    batch, steps = 37, 9
    query, keys = torch.randn(batch, QUERY), torch.randn(batch, steps, KEY)
    lengths = torch.randint(1, steps + 1, (batch,))
    lengths[3] = steps
    mask = torch.arange(steps)[None, :] < lengths[:, None]
    mask[3, 0] = False  # a hole before the row's last valid step
    calls = []
    real = attention_module._native_attend

    def spy(*args: torch.Tensor) -> object:
        found = real(*args)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(attention_module, "_native_attend", spy)
    with torch.no_grad():
        context, weights = attention(query, attention.prepare(keys), keys, mask)
        expected = torch.softmax(_reference_scores(attention, query, keys)
                                 .masked_fill(~mask, float("-inf")), dim=1)
        monkeypatch.setattr(attention_module, "_native_attend", lambda *args: None)
        torch_context, torch_weights = attention(query, attention.prepare(keys), keys, mask)
    assert calls == [True]
    torch.testing.assert_close(weights, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(context, torch.einsum("bs,bsm->bm", expected, keys),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights, torch_weights, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(context, torch_context, rtol=1e-5, atol=1e-5)
    assert torch.all(weights[~mask] == 0)
