"""A whole LSTM layer (both directions of a bidirectional one) as one autograd node.

torch's CPU path for padded (packed) batches, ``_VF.lstm`` with batch sizes, is a loop of
small differentiable ops per step, and its backward replays them node by node. For the
built-in ``lstm`` layers (:mod:`assembly.nn.fused`) :class:`LSTMLayer` runs the layer
instead: the input projection of every step as one batched matmul with both directions
stacked, then per step one batched matmul for both directions ((2, n_k, H) @ (2, H, 4H))
and a handful of pointwise kernels, without recording; the backward through time is
written out with five kernels a step, and the weight gradients are deferred to one
matmul over all rows, as cuDNN's RNN backward does. tests/test_lstm_node.py holds it
equal to ``_VF.lstm`` (1e-9 in float64, gradients included).

Layout. Rows are packed (sequences sorted by length, step k runs the first n_k). The
backward direction reads each sequence reversed *within its length* and aligned at its
start (its row (k, b) holds time len_b − 1 − k), so at every step both directions have
the same n_k rows and share every kernel; the reversal is one index over the packed rows
(an involution), applied once to the input and once to the output. States (h, c) live in
B + N rows: block 0 the initial state, block k + 1 the state after step k; step k reads
rows :n_k of block k and writes block k + 1, so a finished sequence keeps its final state
where it is: nothing is masked or zero-filled. Unpadded batches are the special case
n_k = B (data may then come batch-first).

Forward, step k (both directions; the hats double the cell gate's rows of W and b):

    [i f s o] = σ(Ŵ_ih x_k + b̂ + Ŵ_hh h_{k−1})      (Ŵ_ih x_k + b̂ hoisted: one matmul)
    2g = 4s − 2                                     (g = tanh z = 2σ(2z) − 1)
    2c_k = f ⊙ 2c_{k−1} + i ⊙ 2g
    τ_k = 2σ(2c_k) − 1 = tanh c_k,   h_k = o ⊙ τ_k

Keeping 2c rather than c saves a product a step; each tanh goes through the sigmoid
(torch's CPU tanh is ~3.5× slower than its sigmoid here).

Backward, k = T−1 … 0, with δc₂ the gradient of 2c (δc₂ = δc / 2), σ'(a) = a (1 − a),
and every factor formed before the loop in one pass:

    δc₂_k += ½ δh_k ⊙ o ⊙ (1 − τ_k²)
    δz_k = [δc₂ δc₂ δc₂ δh] ⊙ m ⊙ σ'([i f s o]),   m = [2g, 2c_{k−1}, 8i, τ]   (1 − g² = 4σ'(s))
    δc₂_{k−1} += δc₂_k ⊙ f,   δh_{k−1} += δz_k W_hh

then over all N rows at once: [δW_ih δb]ᵀ = [X 1]ᵀ δZ, δW_hhᵀ = H_prevᵀ δZ,
δx = δZ W_ih (the backward direction's rows mapped back by the reversal), δb_ih = δb_hh.
A zero initial state (h0, c0 None) skips step 0's recurrent products.

Measured with benchmarks/encoder_node.py (one thread on a 2-core AMD EPYC shared with
other jobs; node and torch alternate batch by batch, median of the paired ratios
torch / node):

- the reference encoder (embeddings 32, one bidirectional layer of 64 per direction),
  batch 64, random lengths 3–20: forward + backward 19.8 → 11.5 ms (1.72×, quartiles
  1.70–1.74), forward alone 4.64 → 4.04 ms (1.16×); a whole training update of the
  reference model 68.7 → 60.5 ms (1.14×). Unpadded (length-bucketed) batches run oneDNN
  either way: 1.00×.
- one layer against ``_VF.lstm``, padded, with gradients: B 64, H 64: bidirectional
  1.99×, unidirectional 1.67×; H 256: 1.31× and 1.42× (H 512 bidirectional 1.37×, B 4
  and 16 at H 64 2.2–2.4×, quick runs). Without gradients torch's packed forward is lean:
  bidirectional B 64: 1.22× (H 64), 1.06× (H 256), 1.00× (H 512); B 500 1.16×, B 16
  1.07×, B 4 0.90×; unidirectional 0.75–0.97× up to B·H = 4096, 1.03–1.14× above. Hence
  :func:`applies`: with a gradient always, without one for bidirectional layers from 16
  sequences on.
- unpadded, oneDNN's dense kernel wins: with gradients bidirectional 0.86× (H 64) and
  0.83× (H 256), unidirectional 0.76× and 0.82×; without, 0.76–0.99×. Such batches stay
  on torch's kernel. Where the node's time goes there (bidirectional, H 64, T 13, ~6.8 ms
  forward + backward): ~3.9 ms of matmuls at this CPU's ~70 GFLOP/s (input projection
  0.45, recurrence 0.83 each way, weight gradients 1.2, δx 0.4), the 4H-wide sigmoid
  ~34 µs a step (≈1 ns an element) and ~10 small kernels of ~5 µs a step; oneDNN does
  the same arithmetic with fused pointwise code, which ops at torch's granularity cannot
  beat.

In float32, when the native module builds (:mod:`assembly.nn.native`), the two step
loops run in C++ (``loops.cpp``: per step the recurrent baddbmm and one vectorised pass
for the gates, 2c, tanh c and h; backward one pass and one baddbmm): the reference
encoder's forward + backward 4.3 → 2.9 ms on 2 threads (/tmp measurement inside whole
updates, Intel Xeon). tests/test_lstm_node.py holds them to the Python loops.

GRU layers keep torch's kernels.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from assembly.nn import native


class _Plan(NamedTuple):
    """Row bookkeeping for packed batch sizes n_0 ≥ … ≥ n_{T−1}: step k runs the first
    n_k sequences, packed row p = off_k + b.

    *Step* buffers (gates and the like) have the N packed rows. *State* buffers (h, c)
    have B + N rows in blocks 0..T: block 0 holds the initial state (B rows), block k + 1
    the state after step k (n_k rows), so the state after packed row p sits at row B + p.
    Step k reads rows :n_k of block k and writes block k + 1; sequences that ended keep
    their final state in place."""

    sizes: list[int]  # n_k
    count: int  # N
    dense: bool  # every n_k = B
    blocks: list[int]  # split sizes of a state buffer into blocks 0..T
    active: list[int]  # split sizes of a state buffer whose pieces [0::2] are rows :n_k of block k
    previous: Tensor  # (N,) packed row p = (k, b) → state row of block k, row b
    reverse: Tensor  # (N,) packed row of (t, b) → that of (len_b − 1 − t, b); an involution
    last: Tensor  # (B,) state row of each sequence's final state


@functools.lru_cache(maxsize=512)
def _plan(batch_sizes: tuple[int, ...]) -> _Plan:
    sizes = list(batch_sizes)
    batch, steps = sizes[0], len(sizes)
    offsets = [0] * steps
    for k in range(1, steps):
        offsets[k] = offsets[k - 1] + sizes[k - 1]
    starts = [0] + [batch + o for o in offsets]  # first state row of blocks 0..T
    active = [sizes[0], 0]
    for k in range(1, steps):
        active += [sizes[k], sizes[k - 1] - sizes[k]]
    active.append(sizes[-1])
    index = torch.arange(batch)
    lengths = (torch.tensor(sizes)[None, :] > index[:, None]).sum(1)  # (B,) descending
    step = torch.arange(steps)[:, None]  # (T, 1)
    valid = step < lengths[None, :]  # (T, B)
    first = torch.tensor(offsets)
    reverse = (first[(lengths[None, :] - 1 - step).clamp(min=0)] + index)[valid]
    previous = (torch.tensor(starts[:-1])[:, None] + index).expand(steps, batch)[valid]
    last = torch.tensor(starts)[lengths] + index
    return _Plan(sizes, sum(sizes), all(n == batch for n in sizes), [batch, *sizes], active,
                 previous, reverse, last)


def _rows(buffer: Tensor, plan: _Plan) -> tuple[Tensor, ...]:
    """A step buffer (D, N, ·) → each step's rows (D, n_k, ·)."""
    if plan.dense:
        return buffer.unflatten(1, (len(plan.sizes), plan.sizes[0])).unbind(1)
    return buffer.split(plan.sizes, 1)


def _states(buffer: Tensor, plan: _Plan) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """A state buffer (D, B + N, ·) → (what step k reads: rows :n_k of block k, where it
    writes: block k + 1) for k = 0..T−1."""
    if plan.dense:
        blocks = buffer.unflatten(1, (len(plan.sizes) + 1, plan.sizes[0])).unbind(1)
        return blocks[:-1], blocks[1:]
    return buffer.split(plan.active, 1)[0:-1:2], buffer.split(plan.blocks, 1)[1:]


def _previous(buffer: Tensor, plan: _Plan, start: int = 0) -> Tensor:
    """The state each packed row from ``start`` on read: (D, B + N, ·) → (D, N − start, ·)."""
    if plan.dense:
        return buffer[:, start:plan.count]
    return buffer.index_select(1, plan.previous[start:])


def _native_loops(like: Tensor) -> Any:
    """The C++ step loops (assembly/nn/native/loops.cpp) for float32, if built; else None."""
    if like.dtype != torch.float32 or not native.enabled():
        return None
    return native.loops()


def _forward_steps(plan: _Plan, gates: Tensor, w_hh2: Tensor, hs: Tensor, cs: Tensor,
                   m: Tensor, has_h0: bool, has_c0: bool) -> None:
    """The forward's step loop (see the module docstring): gates (D, N, 4H) from the input
    projections to [i f s o]; writes h and 2c into their state buffers, 2g and tanh c
    into m."""
    hidden = hs.shape[-1]
    minus_one, minus_two = hs.new_full((), -1.0), hs.new_full((), -2.0)
    g_step = _rows(gates, plan)
    i, f, s, o = (_rows(part, plan) for part in gates.split(hidden, 2))
    g2 = _rows(m[..., :hidden], plan)
    tc = _rows(m[..., 3 * hidden:], plan)
    h_prev, h_next = _states(hs, plan)
    c_prev, c_next = _states(cs, plan)
    for k in range(len(plan.sizes)):
        if k or has_h0:
            g_step[k].baddbmm_(h_prev[k], w_hh2)
        g_step[k].sigmoid_()
        torch.add(minus_two, s[k], alpha=4, out=g2[k])  # 2g = 2 tanh = 4σ(2·) − 2
        c = c_next[k]
        if k or has_c0:
            torch.mul(f[k], c_prev[k], out=c)
            c.addcmul_(i[k], g2[k])  # 2c_k = f 2c_{k−1} + i 2g
        else:
            torch.mul(i[k], g2[k], out=c)
        torch.sigmoid(c, out=tc[k])
        torch.add(minus_one, tc[k], alpha=2, out=tc[k])  # tanh c = 2σ(2c) − 1
        torch.mul(o[k], tc[k], out=h_next[k])


def _backward_steps(plan: _Plan, d_h: Tensor, d_c: Tensor, d_cell: Tensor, factor: Tensor,
                    gates: Tensor, d_gates: Tensor, w_hh: Tensor, need_h0: bool,
                    need_c0: bool) -> None:
    """The backward's step loop: δh and δ(2c) carried back through the state buffers,
    every step's δgates into d_gates (D, N, 4H)."""
    hidden = d_h.shape[-1]
    dh_prev, dh_next = _states(d_h, plan)
    dc_prev, dc_next = _states(d_c, plan)
    cell = _rows(d_cell, plan)
    forget = _rows(gates[..., hidden:2 * hidden], plan)
    three = _rows(factor[..., :3 * hidden].unflatten(2, (3, hidden)), plan)
    out_gate = _rows(factor[..., 3 * hidden:], plan)
    dg_step = _rows(d_gates, plan)
    dg_three = _rows(d_gates[..., :3 * hidden].unflatten(2, (3, hidden)), plan)
    dg_out = _rows(d_gates[..., 3 * hidden:], plan)
    for k in reversed(range(len(plan.sizes))):
        dh, dc = dh_next[k], dc_next[k]
        dc.addcmul_(dh, cell[k], value=0.5)
        torch.mul(dc.unsqueeze(2), three[k], out=dg_three[k])
        torch.mul(dh, out_gate[k], out=dg_out[k])
        if k or need_c0:
            dc_prev[k].addcmul_(dc, forget[k])
        if k or need_h0:
            dh_prev[k].baddbmm_(dg_step[k], w_hh)


class LSTMLayer(torch.autograd.Function):
    """See the module docstring. Inputs: bias (bool), batch sizes (tuple), data, h0 and
    c0 (D, B, H) in the packed (sorted) order or None (zeros), then per direction W_ih,
    W_hh (and b_ih, b_hh with bias). data is packed (N, I), or batch-first (B, T, I) when
    no row is padded. Outputs: every direction's outputs in data's layout ((N, H) packed
    or (B, T, H)), h_n and c_n (D, B, H) sorted."""

    @staticmethod
    def forward(ctx: Any, bias: bool, batch_sizes: tuple[int, ...], data: Tensor,
                h0: Tensor | None, c0: Tensor | None, *weights: Tensor) -> tuple[Tensor, ...]:
        ctx.set_materialize_grads(False)
        plan = _plan(batch_sizes)
        per = 4 if bias else 2
        directions = len(weights) // per
        batch, steps, count = plan.sizes[0], len(plan.sizes), plan.count
        hidden, size = weights[1].shape[1], data.shape[-1]
        new = data.new_empty
        w_ih = torch.stack(weights[0::per])  # (D, 4H, I)
        w_hh = torch.stack(weights[1::per])  # (D, 4H, H)
        double = data.new_ones(4 * hidden, 1)
        double[2 * hidden:3 * hidden] = 2  # the cell gate's rows doubled: tanh via σ

        # xs (D, N, I + 1): [x, 1] per packed row; the backward direction reads each
        # sequence reversed, so its row (k, b) holds x at time len_b − 1 − k
        xs = new(directions, count, size + 1)
        if data.dim() == 3:  # batch-first, no padding: packed rows are time-major
            time_major = xs[..., :size].unflatten(1, (steps, batch))  # (D, T, B, I)
            time_major[0] = data.transpose(0, 1)
            if directions == 2:
                time_major[1] = data.transpose(0, 1).flip(0)
        else:
            xs[0, :, :size] = data
            if directions == 2:
                xs[1, :, :size] = data.index_select(0, plan.reverse)
        xs[..., size] = 1
        w_x = w_ih
        if bias:  # the bias rides on the column of ones
            b = torch.stack(weights[2::per]) + torch.stack(weights[3::per])
            w_x = torch.cat([w_ih, b.unsqueeze(2)], 2)
        gates = torch.bmm(xs[..., :w_x.shape[2]], (w_x * double).transpose(1, 2))  # (D, N, 4H)
        w_hh2 = (w_hh * double).transpose(1, 2)  # (D, H, 4H)

        # state buffers: h and 2c (2c saves a product per step)
        hs = new(directions, batch + count, hidden)
        cs = new(directions, batch + count, hidden)
        if h0 is None:
            hs[:, :batch] = 0
        else:
            hs[:, :batch] = h0
        if c0 is None:
            cs[:, :batch] = 0
        else:
            torch.mul(c0, 2, out=cs[:, :batch])
        # m (D, N, 4H): [2g, ·, ·, tanh c] per step row; the backward fills the gaps with
        # 2c_{k−1} and 8i, the factors of the gates' derivatives
        m = new(directions, count, 4 * hidden)

        loops = _native_loops(data)
        if loops is not None:  # the same steps in C++
            loops.lstm_layer_forward(plan.sizes, gates, w_hh2, hs, cs, m, h0 is not None,
                                     c0 is not None)
        else:
            _forward_steps(plan, gates, w_hh2, hs, cs, m, h0 is not None, c0 is not None)

        ctx.bias = bias
        ctx.plan = plan
        ctx.initial = h0 is not None, c0 is not None
        ctx.batch_first = data.dim() == 3
        ctx.m = m  # the backward writes into it, so it is not saved (version-checked)
        ctx.save_for_backward(w_ih, w_hh, xs, gates, hs, cs)
        h_n = hs.index_select(1, plan.last)
        c_n = cs.index_select(1, plan.last).mul_(0.5)
        outputs = hs[:, batch:]  # (D, N, H)
        if ctx.batch_first:
            time_major = outputs.unflatten(1, (steps, batch))
            result = [time_major[0].transpose(0, 1)]
            if directions == 2:
                result.append(time_major[1].flip(0).transpose(0, 1))
        else:
            result = [outputs[0]]
            if directions == 2:
                result.append(outputs[1].index_select(0, plan.reverse))
        return (*result, h_n, c_n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Any, ...]:
        plan = ctx.plan
        w_ih, w_hh, xs, gates, hs, cs = ctx.saved_tensors
        m = ctx.m
        directions, hidden, size = w_hh.shape[0], w_hh.shape[2], w_ih.shape[2]
        batch, steps = plan.sizes[0], len(plan.sizes)
        d_outs, d_hn, d_cn = grads[:directions], grads[directions], grads[directions + 1]
        sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
        tanh_backward = torch.ops.aten.tanh_backward
        need_h0 = ctx.initial[0] and ctx.needs_input_grad[3]
        need_c0 = ctx.initial[1] and ctx.needs_input_grad[4]

        # With respect to 2c (δc2 = δc / 2) every gate's derivative is m ⊙ σ'(a):
        # δi = δc2 2g σ'(i), δf = δc2 2c_{k−1} σ'(f), δz = δc2 8i σ'(s) (1 − g² = 4σ'(s)),
        # δo = δh tanh c σ'(o); one pass for all steps.
        m[..., hidden:2 * hidden] = _previous(cs, plan)
        torch.mul(gates[..., :hidden], 8, out=m[..., 2 * hidden:3 * hidden])
        factor = torch.empty_like(gates)
        sigmoid_backward(m, gates, grad_input=factor)
        d_cell = tanh_backward(gates[..., 3 * hidden:], m[..., 3 * hidden:])  # o (1 − tanh² c)

        # δh and δ(2c) of every state row; the outside gradients enter at their rows
        d_h = hs.new_zeros(hs.shape)
        d_out_rows = d_h[:, batch:]
        for d, d_out in enumerate(d_outs):
            if d_out is None:
                continue
            if ctx.batch_first:
                d_out = d_out.transpose(0, 1)  # (T, B, H)
                d_out_rows[d].unflatten(0, (steps, batch)).copy_(d_out.flip(0) if d else d_out)
            else:
                d_out_rows[d] = d_out.index_select(0, plan.reverse) if d else d_out
        if d_hn is not None:
            d_h.index_add_(1, plan.last, d_hn)
        d_c = cs.new_zeros(cs.shape)
        if d_cn is not None:
            d_c.index_add_(1, plan.last, d_cn, alpha=0.5)
        d_gates = torch.empty_like(gates)

        loops = _native_loops(gates)
        if loops is not None:  # the same steps in C++
            loops.lstm_layer_backward(plan.sizes, d_h, d_c, d_cell, factor, gates, d_gates,
                                      w_hh, need_h0, need_c0)
        else:
            _backward_steps(plan, d_h, d_c, d_cell, factor, gates, d_gates, w_hh, need_h0,
                            need_c0)

        # [δW_ih δb]ᵀ = [X 1]ᵀ δGates and δW_hhᵀ = H_prevᵀ δGates over all rows at once
        # (step 0's rows read h0: skipped when it is zero); transposed, as MKL runs this
        # orientation ~20% faster
        d_wx = torch.bmm(xs.transpose(1, 2), d_gates)  # (D, I + 1, 4H)
        first = 0 if ctx.initial[0] else batch
        d_wh = torch.bmm(_previous(hs, plan, first).transpose(1, 2), d_gates[:, first:])
        out: list[Any] = [None, None, None, None, None]
        if need_h0:
            out[3] = d_h[:, :batch]
        if need_c0:
            out[4] = d_c[:, :batch].mul_(2)
        if ctx.needs_input_grad[2]:
            d_xs = torch.bmm(d_gates, w_ih)  # (D, N, I)
            if ctx.batch_first:
                d_x = d_xs.unflatten(1, (steps, batch))  # (D, T, B, I)
                d_x = d_x[0] + d_x[1].flip(0) if directions == 2 else d_x[0]
                out[2] = d_x.transpose(0, 1)
            else:
                d_x = d_xs[0]
                if directions == 2:
                    d_x = d_x.index_add(0, plan.reverse, d_xs[1])
                out[2] = d_x
        for d in range(directions):
            out += [d_wx[d, :size].t(), d_wh[d].t()]
            if ctx.bias:
                d_b = d_wx[d, size]
                out += [d_b, d_b.clone()]
        return tuple(out)


def applies(data: Tensor, weights: list[Tensor], batch: int, bidirectional: bool) -> bool:
    """Whether :class:`LSTMLayer` runs a packed (padded) batch of ``batch`` sequences: on
    CPU, in float32 or float64, the weights alike, outside autocast; and, as measured (see
    the module docstring), whenever a gradient is wanted, but without one only for a
    bidirectional layer of at least 16 sequences (torch's packed forward is as fast or
    faster otherwise). Unpadded batches stay on torch's dense kernel (oneDNN), faster
    there in every case measured."""
    if data.device.type != "cpu" or data.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    if not all(w.device.type == "cpu" and w.dtype == data.dtype for w in weights):
        return False
    if torch.is_grad_enabled() and (data.requires_grad or any(w.requires_grad
                                                               for w in weights)):
        return True
    return bidirectional and batch >= NO_GRAD_MIN_BATCH


NO_GRAD_MIN_BATCH = 16  # without gradients: bidirectional layers from this batch size on
