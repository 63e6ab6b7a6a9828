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
    _gradients,
    _Layout,
    _outside_gradients,
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


def forward(ctx: Any, layout: _Layout, order: Tensor | None, static: Tensor | None,
            keys: Tensor, values: Tensor, mask: Tensor, feed: Tensor,
            *rest: Tensor | None) -> tuple[Tensor, ...]:
    """TeacherForced.forward's contract (same inputs, outputs and saved state)."""
    loops = native.loops()
    rows = layout.rows
    count = len(layout.hidden)
    query, vector, w_c, b_c = rest[6 * count:]
    y, batch, sources = layout.static, rows.batch, values.shape[1]
    width = feed.shape[1]
    new = values.new_empty
    xs = _state_buffers(layout, static, feed, rest, values)
    saved, weights, biases = [], [], []
    for index in range(count):
        hidden = layout.hidden[index]
        _, c0, w_ih, w_hh, b_ih, b_hh = rest[6 * index:6 * index + 6]
        c = new(xs[index].shape[0], hidden)  # a state buffer, as x
        c[:batch] = c0
        saved.append((c, new(rows.count, 4 * hidden), new(rows.count, hidden)))  # c, act, tc
        weights.append(torch.cat([w_ih, w_hh], 1).t().contiguous())  # (I + H, 4H)
        biases.append(w_ih.new_zeros(4 * hidden) if b_ih is None else b_ih + b_hh)
    layer_noise, feature_noise = _dropout_masks(layout, width, order, values)
    squashed_tanh = new(rows.count, width) if layout.attention_dropout else None
    blocked, extents = masked_extents(mask, values)
    queries = new(rows.count, query.shape[0])  # 2 W_q s_t
    attended = new(rows.count, sources)
    joined = new(rows.count, values.shape[-1] + layout.hidden[-1])
    loops.forward_steps(
        list(rows.active), batch, xs, [s[0] for s in saved], [s[1] for s in saved],
        [s[2] for s in saved], weights, biases, list(layout.inputs),
        [_or_none(m) for m in layer_noise], keys.contiguous(), values.contiguous(), blocked,
        extents, (query * 2).t().contiguous(), (vector[0] * 2).contiguous(), queries,
        attended, joined, w_c.t().contiguous(), b_c, _or_none(squashed_tanh),
        _or_none(feature_noise), y)

    ctx.layout = layout
    ctx.buffers = (xs, saved, layer_noise, feature_noise, squashed_tanh, attended, joined)
    ctx.attention = queries
    ctx.extents = extents
    ctx.save_for_backward(keys, values, query, vector, w_c,
                          *(rest[6 * i + 2] for i in range(count)),
                          *(rest[6 * i + 3] for i in range(count)))
    outputs = [xs[0][batch:, y:y + width], attended, xs[-1][batch:, layout.inputs[-1]:]]
    outputs += [xs[i][batch:, layout.inputs[i]:] for i in range(count - 1)]
    return tuple(rows.unpack(o) for o in outputs)


def backward(ctx: Any, d_features: Tensor | None, d_weights: Tensor | None,
             d_top: Tensor | None, *d_layers: Tensor | None) -> tuple[Tensor | None, ...]:
    """TeacherForced.backward's contract."""
    loops = native.loops()
    layout = ctx.layout
    rows = layout.rows
    xs, saved, layer_noise, _, _, attended, _ = ctx.buffers
    count = len(layout.hidden)
    keys, values, query, vector, w_c = ctx.saved_tensors[:5]
    w_ih = ctx.saved_tensors[5:5 + count]
    w_hh = ctx.saved_tensors[5 + count:]
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
