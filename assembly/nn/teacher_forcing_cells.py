"""The per-cell work of the teacher-forcing node (:mod:`assembly.nn.teacher_forcing`),
and where each step's rows live (:class:`StepRows`).

The node shares everything that does not depend on the recurrent cell (inputs, dropout
between layers, attention, the output's attentional vector, deferred weight products);
what does — a step forward, a step backward, and the cell's weight gradients — lives here,
one namespace class per built-in cell. The equations are in each class's docstring.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from assembly.nn.fused import FusedGRU, FusedLSTM

_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
_tanh_backward = torch.ops.aten.tanh_backward


class StepRows:
    """Where each step's rows live when rows end at different steps, laid out as a packed
    sequence lays them out (the rows sorted longest first; step t runs the first n_t,
    n_0 ≥ n_1 ≥ …), so that no buffer holds, and no kernel touches, a row past its length:

    - *step* buffers (gates, attention, …) have N = Σ n_t rows, step t's after the n_s of
      every earlier step s;
    - *state* buffers (each layer's [input; h_{t−1}], the LSTM's c) have B + N rows in
      blocks 0..T: block 0 (B rows) the initial state, block t + 1 (n_t rows) what step t
      writes, so blocks 1..T line up with the step buffers. Step t reads rows :n_t of
      block t; a row that ended keeps its last state where it is.

    When every row runs every step (``dense``) every view is a reshape: N = T·B rows,
    time-major."""

    def __init__(self, active: tuple[int, ...], batch: int) -> None:
        self.active, self.batch, self.steps = active, batch, len(active)
        self.count = sum(active)  # N
        self.dense = all(n == batch for n in active)
        blocks = [batch, *active]
        reads = []  # a state buffer cut so that the pieces [0::2] are rows :n_t of block t
        for t, n in enumerate(active):
            reads += [n, blocks[t] - n]
        self._reads = [*reads, blocks[-1]]
        index = torch.arange(batch)
        step = torch.arange(self.steps)[:, None]  # (T, 1)
        valid = index[None, :] < torch.tensor(active, dtype=torch.long)[:, None]  # (T, B)
        self.step_of = step.expand(self.steps, batch)[valid]  # (N,) each step row's t
        self.row_of = index.expand(self.steps, batch)[valid]  # (N,) and its sorted row
        self.positions = self.row_of * self.steps + self.step_of  # in (B, T) flattened
        starts = torch.tensor([0, *blocks[:self.steps - 1]]).cumsum(0)  # block t's first row
        self.previous = starts[self.step_of] + self.row_of  # (N,) the state row it reads

    def steps_of(self, buffer: Tensor) -> list[Tensor]:
        """A step buffer (N, ·) → step t's rows (n_t, ·), for every t."""
        if self.dense:
            return list(buffer.unflatten(0, (self.steps, self.batch)).unbind(0))
        return list(buffer.split(self.active))

    def reads(self, state: Tensor) -> list[Tensor]:
        """A state buffer (B + N, ·) → what step t reads: rows :n_t of block t."""
        if self.dense:
            return list(state[:self.count].unflatten(0, (self.steps, self.batch)).unbind(0))
        return list(state.split(self._reads)[0:-1:2])

    def writes(self, state: Tensor) -> list[Tensor]:
        """A state buffer (B + N, ·) → where step t writes: block t + 1 (n_t, ·)."""
        return self.steps_of(state[self.batch:])

    def previous_rows(self, state: Tensor) -> Tensor:
        """What each step row read, as a step buffer: (B + N, ·) → (N, ·)."""
        if self.dense:
            return state[:self.count]
        return state.index_select(0, self.previous.to(state.device))

    def pack(self, batch_major: Tensor) -> Tensor:
        """(B, T, ·) → a step buffer (N, ·): the steps past a row's length dropped."""
        if self.dense:
            return batch_major.transpose(0, 1).reshape(self.count, -1)
        flat = batch_major.reshape(self.batch * self.steps, -1)
        return flat.index_select(0, self.positions.to(flat.device))

    def unpack(self, rows: Tensor) -> Tensor:
        """A step buffer (N, ·) → (B, T, ·), zero past each row's length."""
        if self.dense:
            return rows.view(self.steps, self.batch, -1).transpose(0, 1)
        flat = rows.new_zeros(self.batch * self.steps, rows.shape[-1])
        flat.index_copy_(0, self.positions.to(rows.device), rows)
        return flat.view(self.batch, self.steps, -1)


# The cells. Each is a namespace of the functions the node calls per layer, so that the
# node itself (inputs, dropout between layers, attention, deferred products) is shared
# (``rows``: the StepRows):
#   forward_setup(x, c0, W_ih, W_hh, b_ih, b_hh, size, hidden, rows) → (saved, views)
#       x (B + N, I+H) is the layer's [input; h_{t−1}] state buffer (h0 in block 0, the
#       inputs filled by the node as the steps go); saved: what backward_setup reads;
#       views: what step reads;
#   step(views, t, minus_one): step t, writing h_t into block t + 1 of x's h columns;
#   backward_setup(saved, W_in, W_hh, first, hidden, rows) → (views, δGates (N, G))
#       W_in: W_ih without layer 0's static columns, ``first`` (its column count) where
#       δinput ends in [δinput; δh_{t−1}];
#   backward_step(views, t, δh_t, carry) → (δinput_t, δh_{t−1}, carry) (carry: δc for
#       the LSTM, None for the GRU; each of step t's n_t rows), filling step t's δGates;
#   static_grad(δGates (N, G), W_ih[:, :Y]) → δy (N, Y), layer 0's static input;
#   weight_grads(δGates (N, G), [X H_prev] (N, I+H), I, hidden, bias)
#       → δW_ih, δW_hh, δb_ih, δb_hh.


class LSTMCell:
    """i, f, g, o in one (B, 4H) matmul of [x; h_{t−1}]; the cell gate's rows doubled so
    that tanh runs as 2σ(2x) − 1."""

    name = "lstm"

    @staticmethod
    def forward_setup(x: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                      b_hh: Tensor | None, size: int, hidden: int, rows: StepRows
                      ) -> tuple[tuple[Tensor, ...], tuple[Any, ...]]:
        new = x.new_empty
        c = new(x.shape[0], hidden)  # a state buffer, as x
        c[:rows.batch] = c0
        act = new(rows.count, 4 * hidden)
        tc = new(rows.count, hidden)
        doubled = torch.cat([w_ih, w_hh], 1)  # the cell gate's rows doubled: tanh via σ
        doubled[2 * hidden:3 * hidden] *= 2
        bias = None
        if b_ih is not None:
            bias = b_ih + b_hh
            bias[2 * hidden:3 * hidden] *= 2
        i, f, g, o = (rows.steps_of(part) for part in act.split(hidden, 1))
        views = (rows.reads(x), rows.steps_of(act), i, f, g, o, rows.reads(c), rows.writes(c),
                 rows.steps_of(tc), rows.writes(x[:, size:]), doubled.t(), bias)
        return (c, act, tc), views

    @staticmethod
    def step(views: tuple[Any, ...], t: int, minus_one: Tensor) -> None:
        xin, act, i, f, g, o, c, c_next, tc, h, w, bias = views
        if bias is None:
            torch.mm(xin[t], w, out=act[t]).sigmoid_()
        else:
            torch.addmm(bias, xin[t], w, out=act[t]).sigmoid_()
        torch.add(minus_one, g[t], alpha=2, out=g[t])  # g = tanh = 2σ(2·) − 1
        torch.mul(f[t], c[t], out=c_next[t])
        c_next[t].addcmul_(i[t], g[t])
        torch.mul(c_next[t], 2, out=tc[t]).sigmoid_()
        torch.add(minus_one, tc[t], alpha=2, out=tc[t])  # tanh c
        torch.mul(o[t], tc[t], out=h[t])

    @staticmethod
    def factors(saved: tuple[Tensor, ...], hidden: int, rows: StepRows) -> tuple[Tensor, Tensor]:
        """Every step row's factors of the backward at once: (N, 4H) [g σ'(i), c_{t−1}
        σ'(f), i (1 − g²), tanh c σ'(o)] and δc's (N, H) o (1 − tanh² c)."""
        c, act, tc = saved
        i, f, g, o = act.split(hidden, 1)
        factor = act.new_empty(act.shape[0], 4 * hidden)
        _sigmoid_backward(g, i, grad_input=factor[:, :hidden])  # g ⊙ σ'(i)
        _sigmoid_backward(rows.previous_rows(c), f, grad_input=factor[:, hidden:2 * hidden])
        factor[:, 2 * hidden:3 * hidden] = _tanh_backward(i, g)  # i ⊙ tanh'(g)
        _sigmoid_backward(tc, o, grad_input=factor[:, 3 * hidden:])
        return factor, _tanh_backward(o, tc)  # o ⊙ (1 − tanh² c)

    @staticmethod
    def backward_setup(saved: tuple[Tensor, ...], w_in: Tensor, w_hh: Tensor, first: int,
                       hidden: int, rows: StepRows) -> tuple[tuple[Any, ...], Tensor]:
        factor, d_cell = LSTMCell.factors(saved, hidden, rows)
        count = factor.shape[0]
        d_gates = factor.new_empty(count, 4 * hidden)
        f = saved[1][:, hidden:2 * hidden]
        views = (rows.steps_of(factor[:, :3 * hidden].view(count, 3, hidden)),
                 rows.steps_of(factor[:, 3 * hidden:]), rows.steps_of(d_cell),
                 rows.steps_of(f), rows.steps_of(d_gates[:, :3 * hidden].view(count, 3, hidden)),
                 rows.steps_of(d_gates[:, 3 * hidden:]), rows.steps_of(d_gates),
                 torch.cat([w_in, w_hh], 1), first)
        return views, d_gates

    @staticmethod
    def backward_step(views: tuple[Any, ...], t: int, dh: Tensor, d_c: Tensor | None
                      ) -> tuple[Tensor, Tensor, Tensor]:
        f_ifg, f_o, d_cell, forget, dg_ifg, dg_o, dg, w, first = views
        dc = dh * d_cell[t] if d_c is None else torch.addcmul(d_c, dh, d_cell[t])
        torch.mul(dc.unsqueeze(1), f_ifg[t], out=dg_ifg[t])
        torch.mul(dh, f_o[t], out=dg_o[t])
        dx = torch.mm(dg[t], w)  # [δ input; δh_{t−1}] (B, I + H)
        return dx[:, :first], dx[:, first:], dc * forget[t]

    @staticmethod
    def static_grad(d_gates: Tensor, w_static: Tensor) -> Tensor:
        return d_gates @ w_static

    @staticmethod
    def weight_grads(d_gates: Tensor, x: Tensor, split: int, hidden: int, bias: bool
                     ) -> tuple[Tensor | None, ...]:
        d_w = d_gates.t() @ x  # (4H, I + H)
        if not bias:
            return d_w[:, :split], d_w[:, split:], None, None
        d_b = d_gates.sum(0)
        return d_w[:, :split], d_w[:, split:], d_b, d_b.clone()


class GRUCell:
    """Two matmuls per step: [n_x r z] = x W_i + b_i into columns :3H of a (B, 4H) row,
    then [r z n_h] += h_{t−1} W_h into columns H: (n_h's column prefilled with b_hn for
    all steps), so n_x = W_in x + b_in and n_h = W_hn h + b_hn stay apart (r multiplies
    n_h) while r and z add up in place. The n columns are doubled so that tanh runs as
    2σ(2x) − 1. Per step: n = tanh(n_x + r ⊙ n_h), h' = n + z ⊙ (h_{t−1} − n), which is
    (1 − z) ⊙ n + z ⊙ h_{t−1}. Backward (δh the total gradient into h_t):

        δn_x = δh ⊙ (1 − z) ⊙ (1 − n²),   δr = δn_x ⊙ n_h ⊙ σ'(r),
        δz = δh ⊙ (h_{t−1} − n) ⊙ σ'(z),   δn_h = δn_x ⊙ r,
        δx = δ[n_x r z] W_iᵀ,   δh_{t−1} = δ[r z n_h] W_hᵀ + δh ⊙ z

    (the factors of δh and δn_x formed for all steps at once). The gate columns are in
    the order [n_x, r, z, n_h], the one that makes both matmuls' columns contiguous; the
    weight gradients are put back in torch's order r, z, n. ``update = "cho"`` needs
    nothing of its own: FusedGRU stores its update gate negated, so these equations hold."""

    name = "gru"

    @staticmethod
    def forward_setup(x: Tensor, c0: None, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                      b_hh: Tensor | None, size: int, hidden: int, rows: StepRows
                      ) -> tuple[tuple[Tensor, ...], tuple[Any, ...]]:
        new = x.new_empty
        h, h2, h3 = hidden, 2 * hidden, 3 * hidden
        act = new(rows.count, 4 * hidden)  # [2 n_x (then n), r, z, 2 n_h]
        diff = new(rows.count, hidden)  # h_{t−1} − n_t
        w_i = torch.cat([w_ih[h2:] * 2, w_ih[:h2]]).t()  # (I, 3H): 2 W_in, W_ir, W_iz
        w_h = torch.cat([w_hh[:h2], w_hh[h2:] * 2]).t()  # (H, 3H): W_hr, W_hz, 2 W_hn
        bias = None
        if b_ih is None:
            act[:, h3:] = 0
        else:
            bias = torch.cat([b_ih[h2:] * 2, b_ih[:h2] + b_hh[:h2]])
            act[:, h3:] = b_hh[h2:] * 2
        n, r, z, n_h = (rows.steps_of(part) for part in act.split(hidden, 1))
        views = (rows.reads(x[:, :size]), rows.reads(x[:, size:]), rows.steps_of(act[:, :h3]),
                 rows.steps_of(act[:, h:]), rows.steps_of(act[:, h:h3]), r, z, n, n_h,
                 rows.steps_of(diff), rows.writes(x[:, size:]), w_i, w_h, bias)
        return (act, diff), views

    @staticmethod
    def step(views: tuple[Any, ...], t: int, minus_one: Tensor) -> None:
        xin, h_prev, from_x, from_h, rz, r, z, n, n_h, diff, h, w_i, w_h, bias = views
        if bias is None:
            torch.mm(xin[t], w_i, out=from_x[t])
        else:
            torch.addmm(bias, xin[t], w_i, out=from_x[t])
        from_h[t].addmm_(h_prev[t], w_h)
        rz[t].sigmoid_()
        n[t].addcmul_(r[t], n_h[t]).sigmoid_()
        torch.add(minus_one, n[t], alpha=2, out=n[t])  # n = tanh = 2σ(2·) − 1
        torch.sub(h_prev[t], n[t], out=diff[t])
        torch.addcmul(n[t], z[t], diff[t], out=h[t])  # (1 − z) n + z h

    @staticmethod
    def backward_setup(saved: tuple[Tensor, ...], w_in: Tensor, w_hh: Tensor, first: int,
                       hidden: int, rows: StepRows) -> tuple[tuple[Any, ...], Tensor]:
        act, diff = saved
        count = act.shape[0]
        new = act.new_empty
        h, h2, h3 = hidden, 2 * hidden, 3 * hidden
        n, r, z, n_h2 = act.split(hidden, 1)
        factor = new(count, h3)  # [δn_x/δh, δr/δn_x, δz/δh]
        factor[:, :h] = _tanh_backward(1 - z, n)  # (1 − z) ⊙ (1 − n²)
        _sigmoid_backward(n_h2, r, grad_input=factor[:, h:h2])  # 2 n_h ⊙ σ'(r)
        factor[:, h:h2] *= 0.5
        _sigmoid_backward(diff, z, grad_input=factor[:, h2:])  # (h − n) ⊙ σ'(z)
        d_gates = new(count, 4 * hidden)  # [n_x, r, z, n_h]
        views = (*(rows.steps_of(part) for part in (
                     factor[:, :h], factor[:, h:h2], factor[:, h2:], r, z,
                     d_gates[:, :h], d_gates[:, h:h2], d_gates[:, h2:h3],
                     d_gates[:, h3:], d_gates[:, :h3], d_gates[:, h:])),
                 torch.cat([w_in[h2:], w_in[:h2]]), w_hh)  # W_i: rows n, r, z
        return views, d_gates

    @staticmethod
    def backward_step(views: tuple[Any, ...], t: int, dh: Tensor, carry: None
                      ) -> tuple[Tensor, Tensor, None]:
        f_n, f_r, f_z, r, z, dg_n, dg_r, dg_z, dg_nh, from_x, from_h, w_i, w_h = views
        dn = torch.mul(dh, f_n[t], out=dg_n[t])
        torch.mul(dn, f_r[t], out=dg_r[t])
        torch.mul(dh, f_z[t], out=dg_z[t])
        torch.mul(dn, r[t], out=dg_nh[t])
        d_input = torch.mm(from_x[t], w_i)  # (B, I)
        return d_input, torch.addcmul(torch.mm(from_h[t], w_h), dh, z[t]), None

    @staticmethod
    def static_grad(d_gates: Tensor, w_static: Tensor) -> Tensor:
        h2 = 2 * w_static.shape[0] // 3
        return d_gates[:, :w_static.shape[0]] @ torch.cat([w_static[h2:], w_static[:h2]])

    @staticmethod
    def weight_grads(d_gates: Tensor, x: Tensor, split: int, hidden: int, bias: bool
                     ) -> tuple[Tensor | None, ...]:
        h, h3 = hidden, 3 * hidden
        d_x = d_gates[:, :h3].t() @ x[:, :split]  # rows n, r, z
        d_ih = torch.cat([d_x[h:], d_x[:h]])
        d_hh = d_gates[:, h:].t() @ x[:, split:]  # rows r, z, n: torch's order
        if not bias:
            return d_ih, d_hh, None, None
        d_b = d_gates.sum(0)
        return d_ih, d_hh, torch.cat([d_b[h:h3], d_b[:h]]), d_b[h:]


CELLS: dict[type, Any] = {FusedLSTM: LSTMCell, FusedGRU: GRUCell}
