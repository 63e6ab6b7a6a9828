"""The teacher-forcing node with its step loops in C++ (``native/loops.cpp``).

:class:`~assembly.nn.teacher_forcing.TeacherForced` hands its forward and backward here
when its layout says ``native`` (LSTM layers, additive/concat attention, float32 on the
CPU, the module built). Everything around the loops is the Python node's: the same state
and step buffers (StepRows), the same dropout masks drawn in the same order, the same
per-row factors of the backward and the same deferred products
(:func:`~assembly.nn.teacher_forcing._gradients`), so a seed gives the same model either
way up to float rounding (tests/test_native_teacher_forcing.py).

What differs from the Python node, besides the loops being C++:

- the weights are used as they are (tanh is computed directly, not as 2σ(2x) − 1 through
  doubled rows);
- attention works on each row's own source extent (the positions up to its last
  unmasked one) instead of the batch's longest: the padding of shorter sources costs
  nothing;
- the additive squashing σ(K + 2 W_q s_t) is never stored: the backward recomputes it
  from the queries 2 W_q s_t (N, A), kept instead.

Measured with benchmarks/teacher_forcing.py --native (see the C++ file's header).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from assembly.nn import native
from assembly.nn.teacher_forcing import (
    _dropout_masks,
    _finish_forward,
    _gradients,
    _Layout,
    _outside_gradients,
    _saved,
    _state_buffers,
)
from assembly.nn.teacher_forcing_cells import LSTMCell

ABSENT = torch.empty(0)  # an absent optional tensor, for the C++ side


def _or_none(tensor: Tensor | None) -> Tensor:
    return ABSENT if tensor is None else tensor


def masked_extents(mask: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """What the C++ attention reads of a mask (B, S): 0 or −inf per position (``like``'s
    dtype) and each row's extent, one past its last valid position (int64, CPU)."""
    sources = mask.shape[1]
    blocked = like.new_zeros(mask.shape).masked_fill_(~mask, float("-inf"))
    positions = torch.arange(1, sources + 1, device=mask.device)
    extents = torch.where(mask, positions, 0).amax(1).to("cpu", torch.int64)  # (B,)
    return blocked, extents


def step_weights(rest: tuple[Tensor | None, ...] | list[Tensor | None]
                 ) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor, Tensor, Tensor]:
    """The weights as ``forward_steps`` reads them, from the node's parameter inputs
    ``rest`` (per layer h0, c0, W_ih, W_hh, b_ih, b_hh — the states are not read — then
    W_q, v, W_c, b_c): per layer [W_ih W_hh]ᵀ (I + H, 4H) and b_ih + b_hh (zeros without
    bias), then 2 W_qᵀ (O, A), 2v (A), W_cᵀ (M + O, F), b_c."""
    count = (len(rest) - 4) // 6
    weights, biases = [], []
    for index in range(count):
        _, _, w_ih, w_hh, b_ih, b_hh = rest[6 * index:6 * index + 6]
        weights.append(torch.cat([w_ih, w_hh], 1).t().contiguous())
        biases.append(w_ih.new_zeros(w_ih.shape[0]) if b_ih is None else b_ih + b_hh)
    query, vector, w_c, b_c = rest[6 * count:]
    return (weights, biases, (query * 2).t().contiguous(), (vector[0] * 2).contiguous(),
            w_c.t().contiguous(), b_c)


def forward(ctx: Any, layout: _Layout, order: Tensor | None, static: Tensor | None,
            keys: Tensor, values: Tensor, mask: Tensor, feed: Tensor,
            *rest: Tensor | None) -> tuple[Tensor, ...]:
    """TeacherForced.forward's contract (same inputs, outputs and saved state)."""
    loops = native.loops()
    rows = layout.rows
    count = len(layout.hidden)
    y, batch, sources = layout.static, rows.batch, values.shape[1]
    width = feed.shape[1]
    new = values.new_empty
    xs = _state_buffers(layout, static, feed, rest, values)
    saved = []
    for index in range(count):
        hidden = layout.hidden[index]
        c = new(xs[index].shape[0], hidden)  # a state buffer, as x
        c[:batch] = rest[6 * index + 1]  # c0
        saved.append((c, new(rows.count, 4 * hidden), new(rows.count, hidden)))  # c, act, tc
    weights, biases, query2, vector2, w_c_t, b_c = step_weights(rest)
    layer_noise, feature_noise = _dropout_masks(layout, width, order, values)
    squashed_tanh = new(rows.count, width) if layout.attention_dropout else None
    blocked, extents = masked_extents(mask, values)
    queries = new(rows.count, query2.shape[1])  # 2 W_q s_t
    attended = new(rows.count, sources)
    joined = new(rows.count, values.shape[-1] + layout.hidden[-1])
    loops.forward_steps(
        list(rows.active), batch, xs, [s[0] for s in saved], [s[1] for s in saved],
        [s[2] for s in saved], weights, biases, list(layout.inputs),
        [_or_none(m) for m in layer_noise], keys.contiguous(), values.contiguous(), blocked,
        extents, query2, vector2, queries, attended, joined, w_c_t, b_c,
        _or_none(squashed_tanh), _or_none(feature_noise), y)

    ctx.attention = queries
    ctx.extents = extents
    return _finish_forward(ctx, layout, (xs, saved, layer_noise, feature_noise,
                                         squashed_tanh, attended, joined),
                           keys, values, rest, width)


def backward(ctx: Any, d_features: Tensor | None, d_weights: Tensor | None,
             d_top: Tensor | None, *d_layers: Tensor | None) -> tuple[Tensor | None, ...]:
    """TeacherForced.backward's contract."""
    loops = native.loops()
    layout = ctx.layout
    rows = layout.rows
    xs, saved, layer_noise, _, _, attended, _ = ctx.buffers
    count = len(layout.hidden)
    keys, values, query, vector, w_c, w_ih, w_hh = _saved(ctx)
    y, batch = layout.static, rows.batch
    width = xs[0].shape[-1] - y - layout.hidden[0]
    new = values.new_empty

    d_tanh, d_u, d_joined = _outside_gradients(ctx, d_features, d_top)
    factors, d_cells, d_gates, weights = [], [], [], []
    for index in range(count):
        factor, d_cell = LSTMCell.factors(saved[index], layout.hidden[index], rows)
        factors.append(factor)
        d_cells.append(d_cell)
        d_gates.append(new(rows.count, 4 * layout.hidden[index]))
        w_in = w_ih[index][:, y:] if index == 0 else w_ih[index]
        weights.append(torch.cat([w_in, w_hh[index]], 1))
    firsts = [width, *layout.inputs[1:]]
    d_belows = [None if d is None else rows.pack(d) for d in d_layers]
    d_scores = new(rows.count, values.shape[1])
    size_a = query.shape[0]
    d_q = new(rows.count, size_a)  # Σ_s δz_ts
    d_keys = keys.new_zeros(keys.shape)  # contiguous, whatever keys' strides
    d_v = values.new_zeros(torch.get_num_threads(), size_a)  # one partial sum per thread
    back = loops.backward_steps(
        list(rows.active), batch, factors, d_cells, [s[1] for s in saved], d_gates, weights,
        firsts, [_or_none(m) for m in layer_noise], [_or_none(d) for d in d_belows], d_u,
        d_tanh, w_c, d_joined, d_top is not None, values.contiguous(), attended,
        _or_none(None if d_weights is None else rows.pack(d_weights)), d_scores,
        keys.contiguous(), ctx.attention, ctx.extents, query * (4 * vector[0])[:, None],
        d_keys, d_q, d_v)
    d_feed, d_h, d_c = back[0], back[1:1 + count], back[1 + count:]
    return _gradients(ctx, d_gates, d_feed, list(d_h), list(d_c), d_u, d_joined, d_scores,
                      d_q, d_keys, d_v.sum(0, keepdim=True))
