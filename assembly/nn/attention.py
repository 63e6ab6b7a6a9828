"""Attention scores over encoder outputs, masked over padding.

Keys are precomputed once per batch (:meth:`Attention.prepare`); each decoder step then
costs one small matmul for the query and one batched product for the context.

The tanh scores (``additive``, ``concat``) are computed through the sigmoid:
vᵀ tanh(z) = 2 vᵀ σ(2z) − Σv, and the softmax over source steps ignores the per-row
constant −Σv, so the weights are the same function. What it buys: the (B, S, A) squashing
is the largest elementwise operation of every decoder step, and torch's CPU tanh is ~3.5×
slower than its sigmoid (363 µs vs 103 µs for 64 × 13 × 128 floats, AVX2, one thread),
which makes greedy and beam decoding markedly faster. The doubling of the keys happens once
per batch in :meth:`Attention.prepare`.

When gradients are recorded, the squashed (…, S, A) tensor is not kept for the backward
but recomputed there (:class:`SquashedScores`: one add and one sigmoid more per step), so a
teacher-forced pass keeps O(T·S) attention memory instead of O(T·S·A) — at 400 steps, 128
units, batch 16 the kept tensors would take 1.3 GB.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from assembly.nn import native


class SquashedScores(torch.autograd.Function):
    """scores = 2 vᵀ σ(K + Q) over the last axis, K (…, S, A) and Q (…, 1, A) broadcast
    against each other → (…, S); the backward recomputes σ(K + Q) instead of storing it:
    δz = 2 δscores v ⊙ σ ⊙ (1 − σ), δK and δQ are δz summed to their shapes,
    δv = 2 Σ δscores σ."""

    @staticmethod
    def forward(ctx: Any, keys: Tensor, queries: Tensor, vector: Tensor) -> Tensor:
        ctx.save_for_backward(keys, queries, vector)
        squashed = torch.add(keys, queries).sigmoid_()  # (…, S, A), freed after this
        return torch.matmul(squashed, vector * 2)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_scores: Tensor) -> tuple[Tensor | None, ...]:
        keys, queries, vector = ctx.saved_tensors
        squashed = torch.add(keys, queries).sigmoid_()
        d_scores = d_scores.unsqueeze(-1) * 2  # (…, S, 1)
        d_vector = (d_scores * squashed).sum_to_size(vector.shape) if \
            ctx.needs_input_grad[2] else None
        d_z = torch.ops.aten.sigmoid_backward(d_scores * vector, squashed)
        d_keys = d_z.sum_to_size(keys.shape) if ctx.needs_input_grad[0] else None
        d_queries = d_z.sum_to_size(queries.shape) if ctx.needs_input_grad[1] else None
        return d_keys, d_queries, d_vector


def squashed_scores(keys: Tensor, queries: Tensor, vector: Tensor) -> Tensor:
    """2 vᵀ σ(K + Q) (see :class:`SquashedScores`), recorded without its (…, S, A)
    intermediate when gradients are on."""
    if torch.is_grad_enabled() and (keys.requires_grad or queries.requires_grad
                                    or vector.requires_grad):
        return SquashedScores.apply(keys, queries, vector)
    return torch.matmul(torch.add(keys, queries).sigmoid_(), vector * 2)


def _native_attend(keys: Tensor, queries: Tensor, values: Tensor, mask: Tensor) -> Any:
    """The native attention step (``native/loops.cpp``, ``attend``) where it applies:
    float32 CPU tensors, contiguous, the native module built; else None."""
    tensors = (keys, queries, values)
    if any(t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous()
           for t in tensors) or not mask.is_contiguous() or not native.enabled():
        return None
    module = native.loops()
    return None if module is None else module.attend


def resizer(in_size: int, out_size: int, bias: bool = True) -> nn.Module:
    """A linear map where sizes disagree, the identity where they agree."""
    return nn.Identity() if in_size == out_size else nn.Linear(in_size, out_size, bias=bias)


class Attention(nn.Module):
    """score(q, k) for query q (B, Q) and keys k (B, S, M):

    - ``additive`` (Bahdanau): vᵀ tanh(W q + U k + b)
    - ``concat`` (Luong): vᵀ tanh(W [q; k]) (no bias)
    - ``dot``: qᵀ k (q resized to M when Q ≠ M)
    - ``general`` (Luong): qᵀ W k
    """

    def __init__(self, score: str, query_size: int, key_size: int, size: int) -> None:
        super().__init__()
        self.score = score
        if score in ("additive", "concat"):
            self.query_map = nn.Linear(query_size, size, bias=False)
            self.key_map = nn.Linear(key_size, size, bias=score == "additive")
            self.vector = nn.Linear(size, 1, bias=False)
        elif score == "dot":
            self.query_map = resizer(query_size, key_size, bias=False)
            self.key_map = nn.Identity()
        else:  # general: qᵀ W k, W applied to the keys once per batch
            self.query_map = nn.Identity()
            self.key_map = nn.Linear(key_size, query_size, bias=False)

    @property
    def squashed(self) -> bool:
        """Whether the score squashes W q + U k through tanh (see the module docstring)."""
        return self.score in ("additive", "concat")

    def prepare(self, keys: Tensor) -> Tensor:
        """(B, S, M) → the projected keys every step reuses (doubled, 2 U k, for the tanh
        scores; see the module docstring)."""
        projected = self.key_map(keys)
        return projected * 2 if self.squashed else projected

    def forward(self, query: Tensor, projected_keys: Tensor, values: Tensor,
                mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, Q), projected keys (B, S, ·), values (B, S, M), mask (B, S) true at
        valid steps → (context (B, M), weights (B, S))."""
        q = self.query_map(query)  # (B, A)
        if self.squashed and not torch.is_grad_enabled():
            attend = _native_attend(projected_keys, q, values, mask)
            if attend is not None:  # the same function in one native pass per row
                return attend(projected_keys, q * 2, self.vector.weight[0] * 2, values, mask)
        if self.squashed:  # vᵀ tanh(z) up to a per-row constant: 2 vᵀ σ(2z)
            scores = squashed_scores(projected_keys, (q * 2).unsqueeze(1),
                                     self.vector.weight[0])  # (B, S)
        else:
            scores = torch.bmm(projected_keys, q.unsqueeze(2)).squeeze(2)  # (B, S)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)  # (B, M)
        return context, weights

    def forward_all(self, queries: Tensor, projected_keys: Tensor, values: Tensor,
                    mask: Tensor) -> tuple[Tensor, Tensor]:
        """All decoder steps at once: queries (B, T, Q) → contexts (B, T, M), weights
        (B, T, S). Used when the decoder ran as one fused sequence."""
        q = self.query_map(queries)  # (B, T, A)
        if self.squashed:  # as in forward: 2 vᵀ σ(2z)
            scores = squashed_scores(projected_keys.unsqueeze(1), (q * 2).unsqueeze(2),
                                     self.vector.weight[0])  # (B, T, S)
        else:
            scores = torch.bmm(q, projected_keys.transpose(1, 2))  # (B, T, S)
        weights = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=2)
        return torch.bmm(weights, values), weights
