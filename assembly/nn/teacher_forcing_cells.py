"""The per-cell work of the teacher-forcing node (:mod:`assembly.nn.teacher_forcing`).

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

# The cells. Each is a namespace of the functions the node calls per layer, so that the
# node itself (inputs, dropout between layers, attention, deferred products) is shared:
#   forward_setup(x, c0, W_ih, W_hh, b_ih, b_hh, size, hidden) → (saved, views)
#       x (T+1, B, I+H) is the layer's [input; h_{t−1}] buffer (rows :T filled by the
#       node as the steps go, h0 in row 0); saved: what backward_setup reads; views:
#       what step reads;
#   step(views, t, minus_one): step t, writing h_t into x[t+1, :, I:];
#   backward_setup(saved, W_in, W_hh, first, hidden) → (views, δGates (T, B, G))
#       W_in: W_ih without layer 0's static columns, ``first`` (its column count) where
#       δinput ends in [δinput; δh_{t−1}];
#   backward_step(views, t, δh_t, carry) → (δinput_t, δh_{t−1}, carry) (carry: δc for
#       the LSTM, None for the GRU), filling δGates[t];
#   static_grad(δGates (T·B, G), W_ih[:, :Y]) → δy (T·B, Y), layer 0's static input;
#   weight_grads(δGates (T·B, G), [X H_prev] (T·B, I+H), I, hidden, bias)
#       → δW_ih, δW_hh, δb_ih, δb_hh.


class LSTMCell:
    """i, f, g, o in one (B, 4H) matmul of [x; h_{t−1}]; the cell gate's rows doubled so
    that tanh runs as 2σ(2x) − 1."""

    name = "lstm"

    @staticmethod
    def forward_setup(x: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                      b_hh: Tensor | None, size: int, hidden: int
                      ) -> tuple[tuple[Tensor, ...], tuple[Any, ...]]:
        steps, batch = x.shape[0] - 1, x.shape[1]
        new = x.new_empty
        c = new(steps + 1, batch, hidden)
        c[0] = c0
        act = new(steps, batch, 4 * hidden)
        tc = new(steps, batch, hidden)
        doubled = torch.cat([w_ih, w_hh], 1)  # the cell gate's rows doubled: tanh via σ
        doubled[2 * hidden:3 * hidden] *= 2
        bias = None
        if b_ih is not None:
            bias = b_ih + b_hh
            bias[2 * hidden:3 * hidden] *= 2
        i, f, g, o = (part.unbind(0) for part in act.split(hidden, 2))
        views = (x[:steps].unbind(0), act.unbind(0), i, f, g, o, c.unbind(0), tc.unbind(0),
                 x[1:, :, size:].unbind(0), doubled.t(), bias)
        return (c, act, tc), views

    @staticmethod
    def step(views: tuple[Any, ...], t: int, minus_one: Tensor) -> None:
        xin, act, i, f, g, o, c, tc, h, w, bias = views
        if bias is None:
            torch.mm(xin[t], w, out=act[t]).sigmoid_()
        else:
            torch.addmm(bias, xin[t], w, out=act[t]).sigmoid_()
        torch.add(minus_one, g[t], alpha=2, out=g[t])  # g = tanh = 2σ(2·) − 1
        torch.mul(f[t], c[t], out=c[t + 1])
        c[t + 1].addcmul_(i[t], g[t])
        torch.mul(c[t + 1], 2, out=tc[t]).sigmoid_()
        torch.add(minus_one, tc[t], alpha=2, out=tc[t])  # tanh c
        torch.mul(o[t], tc[t], out=h[t])

    @staticmethod
    def backward_setup(saved: tuple[Tensor, ...], w_in: Tensor, w_hh: Tensor, first: int,
                       hidden: int) -> tuple[tuple[Any, ...], Tensor]:
        c, act, tc = saved
        steps, batch = act.shape[:2]
        new = act.new_empty
        i, f, g, o = act.split(hidden, 2)
        factor = new(steps, batch, 4 * hidden)
        _sigmoid_backward(g, i, grad_input=factor[..., :hidden])  # g ⊙ σ'(i)
        _sigmoid_backward(c[:steps], f, grad_input=factor[..., hidden:2 * hidden])
        factor[..., 2 * hidden:3 * hidden] = _tanh_backward(i, g)  # i ⊙ tanh'(g)
        _sigmoid_backward(tc, o, grad_input=factor[..., 3 * hidden:])
        d_cell = _tanh_backward(o, tc)  # o ⊙ (1 − tanh² c)
        d_gates = new(steps, batch, 4 * hidden)
        views = (factor[..., :3 * hidden].view(steps, batch, 3, hidden).unbind(0),
                 factor[..., 3 * hidden:].unbind(0), d_cell.unbind(0), f.unbind(0),
                 d_gates[..., :3 * hidden].view(steps, batch, 3, hidden).unbind(0),
                 d_gates[..., 3 * hidden:].unbind(0), d_gates.unbind(0),
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
                      b_hh: Tensor | None, size: int, hidden: int
                      ) -> tuple[tuple[Tensor, ...], tuple[Any, ...]]:
        steps, batch = x.shape[0] - 1, x.shape[1]
        new = x.new_empty
        h, h2, h3 = hidden, 2 * hidden, 3 * hidden
        act = new(steps, batch, 4 * hidden)  # [2 n_x (then n), r, z, 2 n_h]
        diff = new(steps, batch, hidden)  # h_{t−1} − n_t
        w_i = torch.cat([w_ih[h2:] * 2, w_ih[:h2]]).t()  # (I, 3H): 2 W_in, W_ir, W_iz
        w_h = torch.cat([w_hh[:h2], w_hh[h2:] * 2]).t()  # (H, 3H): W_hr, W_hz, 2 W_hn
        bias = None
        if b_ih is None:
            act[..., h3:] = 0
        else:
            bias = torch.cat([b_ih[h2:] * 2, b_ih[:h2] + b_hh[:h2]])
            act[..., h3:] = b_hh[h2:] * 2
        n, r, z, n_h = (part.unbind(0) for part in act.split(hidden, 2))
        views = (x[:steps, :, :size].unbind(0), x[:steps, :, size:].unbind(0),
                 act[..., :h3].unbind(0), act[..., h:].unbind(0), act[..., h:h3].unbind(0),
                 r, z, n, n_h, diff.unbind(0), x[1:, :, size:].unbind(0), w_i, w_h, bias)
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
                       hidden: int) -> tuple[tuple[Any, ...], Tensor]:
        act, diff = saved
        steps, batch = act.shape[:2]
        new = act.new_empty
        h, h2, h3 = hidden, 2 * hidden, 3 * hidden
        n, r, z, n_h2 = act.split(hidden, 2)
        factor = new(steps, batch, h3)  # [δn_x/δh, δr/δn_x, δz/δh]
        factor[..., :h] = _tanh_backward(1 - z, n)  # (1 − z) ⊙ (1 − n²)
        _sigmoid_backward(n_h2, r, grad_input=factor[..., h:h2])  # 2 n_h ⊙ σ'(r)
        factor[..., h:h2] *= 0.5
        _sigmoid_backward(diff, z, grad_input=factor[..., h2:])  # (h − n) ⊙ σ'(z)
        d_gates = new(steps, batch, 4 * hidden)  # [n_x, r, z, n_h]
        views = (factor[..., :h].unbind(0), factor[..., h:h2].unbind(0),
                 factor[..., h2:].unbind(0), r.unbind(0), z.unbind(0),
                 d_gates[..., :h].unbind(0), d_gates[..., h:h2].unbind(0),
                 d_gates[..., h2:h3].unbind(0), d_gates[..., h3:].unbind(0),
                 d_gates[..., :h3].unbind(0), d_gates[..., h:].unbind(0),
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
