"""Teacher-forced decoding with input feeding as one autograd node, backward by hand.

Input feeding makes every decoder step read the previous step's attentional vector, so
a teacher-forced pass cannot run as one fused sequence (:meth:`Decoder.forward_parallel`)
and :meth:`Seq2Seq._loop` records ~40 small autograd nodes per step. For the common
stack (built-in ``lstm`` layers, or built-in ``gru`` layers — one cell for the whole stack,
attention *after* the step on the top layer's state, input feeding, no inner sync, no
scheduled sampling) :class:`TeacherForced` runs the whole sequence instead: the forward
runs without recording (writing every activation the backward needs into packed
buffers), the backward through time is written out with the fewest per-step operations,
and every weight gradient is deferred to one large matmul over all steps, as cuDNN's RNN
backward does. The generic loop stays the reference (and the path for everything else,
mixed LSTM/GRU stacks included); tests/test_teacher_forcing.py holds the two equal.

The node itself (the inputs, dropout between layers, attention, h̃, the deferred products)
is shared; what is particular to a cell — its buffers, its step forward and backward and
its weight gradients — lives apart in ``LSTMCell`` and ``GRUCell`` of
:mod:`assembly.nn.teacher_forcing_cells` (the GRU's equations are in its class's
docstring), behind the functions listed there.

In float32 on the CPU, with LSTM layers and additive/concat attention, the two step
loops run in C++ instead (:mod:`assembly.nn.teacher_forcing_native`, where the layout
says ``native``): the same buffers, masks and deferred products, one vectorised loop per
pointwise stage, attention over each row's own source length. Everything below
describes both; the Python loops here stay the reference and the path for the rest.

Forward, step t (layer l, inputs x⁰_t = [y_t; h̃_{t−1}], xˡ_t = dropout(hˡ⁻¹_t)):

    LSTM: [i f g o] = σσtanhσ(W_ih xˡ_t + W_hh hˡ_{t−1} + b)
          cˡ_t = f⊙cˡ_{t−1} + i⊙g,   hˡ_t = o⊙tanh(cˡ_t)
    GRU:  [r z] = σ(W_i[rz] xˡ_t + W_h[rz] hˡ_{t−1} + b[rz])
          n = tanh(W_in xˡ_t + b_in + r⊙(W_hn hˡ_{t−1} + b_hn)),   hˡ_t = (1−z)⊙n + z⊙hˡ_{t−1}
    s_t = h^top_t,  e_t = score(s_t, K) (masked),  a_t = softmax(e_t),  ctx_t = a_tᵀ V
    h̃_t = dropout(tanh(W_c [ctx_t; s_t] + b_c))

y_t is everything fed that does not depend on the previous step (the previous target's
embedding, the peek summary): it is copied once into the rows the per-step matmul reads,
and its gradient is one matmul for all steps.

Backward, step t from T−1 down to 0 (δ· the gradient of the loss, ∂· the gradient that
arrives from outside into an output; m the dropout masks):

    δh̃_t = ∂h̃_t + δfeed_t                      (δfeed_t from step t+1's input)
    δu_t = δh̃_t ⊙ m_t ⊙ (1 − h̃_t²)             (m ⊙ (1 − h̃²) for all steps at once)
    [δctx_t; δs_t] = δu_t W_c
    δa_t = δctx_t Vᵀ + ∂a_t,   δe_t = a_t ⊙ (δa_t − ⟨a_t, δa_t⟩)
    δs_t += δq_t W_q + ∂s_t + (δs_t from step t+1's recurrence), where
        additive/concat (attention.py's form 2 vᵀσ(2 W_q s + K)):
            δz_t = δe_t ⊗ σ'(z_t),  δq_t = 4 v ⊙ Σ_s δz_ts,  δK += 2 v ⊙ δz_t
        dot/general: δq_t = δe_t K,  δK += δe_tᵀ q_t
    per layer, top down (LSTM; the GRU's step is in ``teacher_forcing_cells.GRUCell``):
        δc = δc_{t+1} ⊙ f_{t+1} + δh ⊙ o ⊙ (1 − tanh² c)
        δ[i f g o] = [δc⊙g⊙σ'(i), δc⊙c_{t−1}⊙σ'(f), δc⊙i⊙(1 − g²), δh⊙tanh c⊙σ'(o)]
        [δx; δh_{t−1}] = δ[i f g o] [W_ih W_hh]                 (one matmul)
        δh of the layer below = m ⊙ δx + ∂h + δh_{t−1} of step t+1 (layer 0: δx is
        [δy_t; δfeed_{t−1}])

and after the loop, with every step's rows stacked (T·B rows, one matmul each):

    δ[W_ih W_hh] = δGatesᵀ [X H_prev],   δb_ih = δb_hh = Σ δGates,   δy = δGates⁰ W_ih[:, y]
    (the GRU: δW_ih = δ[n_x r z]ᵀ X, δW_hh = δ[r z n_h]ᵀ H_prev, rows put in torch's order)
    δW_c = δUᵀ [Ctx S],   δV = Σ_t a_tᵀ δctx_t,   δW_q = (4 v ⊙ δQ)ᵀ S,   δv = 2 Σ δe σ

What it buys, measured with benchmarks/teacher_forcing.py before the rows were packed
(the reference model, batch 64, lengths 3–20, train mode, one thread on a 2-core AMD
EPYC shared with other jobs; fused and generic alternate batch by batch, median of 100
paired ratios; the packed figures follow below): forward + backward of a
whole update 86.3 → 73.1 ms (1.18×, quartiles 1.17–1.21). The decoder alone (this node vs
the step loop, T = 21, paired) 62.5 → 49.0 ms (1.30×): forward 26.7 → 20.5, backward
35.8 → 28.5. It is not matmul efficiency: on this CPU the per-step (64 × 256 × 512)
matmuls already run at ~70 GFLOP/s against ~77 for a large sgemm, so the deferred weight
gradients save little by themselves. What pays is ~20 kernels per step each way instead of
~40 ops forward and as many autograd nodes backward, each tanh taken as 2σ(2x) − 1
(torch's CPU tanh is ~3× slower than its sigmoid; the cell gate's rows and W_c are doubled
for the forward), and σ'(z) formed once per step in the backward rather than stored
(storing it cost 9%). About 20 of the node's 49 ms are those matmuls and ~10 the
(B, S, A) squashing of additive attention, which both paths do alike.

The same model with a GRU decoder (``--cell gru``, same conditions, 100 pairs;
results/teacher_forcing_gru_depth1.json): 92.1 → 68.2 ms per update (1.36×, quartiles
1.32–1.43); four such runs gave 1.33–1.41× at load averages 1.4–1.9, the LSTM 1.35–1.49×
back to back with them (these ratios grow with the machine's load: the step loop suffers
more from it). Two matmuls per GRU step (input and hidden parts, each into its contiguous
columns) are 6 % faster per update than one block matmul of [x; h] with zero blocks that
keeps n's two parts apart (paired, 1.06×, quartiles 1.04–1.09): a quarter fewer flops
outweighs three more kernels per step.

Rows that end early (a batch of mixed target lengths) run no step past their length: the
rows are sorted longest first and laid out as a packed sequence is
(:class:`~assembly.nn.teacher_forcing_cells.StepRows`: step t runs the first n_t rows,
every buffer holds only the rows that ran), so every per-step kernel and every deferred
product costs what the real steps cost. The gradients carried back from step t + 1 cover
its n_{t+1} rows and are zero-extended to step t's n_t. The outputs at the steps past a
row's length are zero and their gradients are dropped: the loss and the regularisers
mask those steps, so the model's gradients are the generic loop's. On random-length
batches (benchmarks/teacher_forcing.py --every-row, reference model, lengths 3–20, one
thread, 100 paired batches): forward + backward of a whole update 68.5 → 54.6 ms against
running every row at every step (1.28×, quartiles 1.24–1.30), and the fused node against
the generic loop 89.5 → 56.7 ms (1.57×, quartiles 1.53–1.62; the GRU decoder 80.9 →
51.7 ms, 1.57×).

Dropout masks are drawn from torch's global generator with the very calls nn.Dropout
makes (``empty(B, ·).bernoulli_(1 − p).div_(1 − p)``, same shapes, same order, every
step's before the first step runs), so a seed gives the same masks, and the same
results, as the generic loop.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from assembly.nn import dropout, native
from assembly.nn.teacher_forcing_cells import CELLS, StepRows

_SCORES = ("additive", "concat", "dot", "general")

# The additive/concat squashing σ(K + 2 W_q s_t) is (B, S, A) per step: kept for the
# backward while all steps together stay under this many bytes, recomputed there (one add
# and one sigmoid per step, ~3 % of an update) above it, so that long sequences do not
# need memory quadratic in their length times A (16 × 400 × 400 steps × 128 × 4 bytes
# would be 1.3 GB).
SQUASHED_MEMORY_BUDGET = 64 * 2**20  # the reference batch (64 × 13 × 13 steps) needs 5.5 MB

_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
_tanh_backward = torch.ops.aten.tanh_backward


def supported(decoder: Any) -> bool:
    """Whether ``decoder``'s structure is one :class:`TeacherForced` runs: built-in
    ``lstm`` layers or built-in ``gru`` layers (not a mix), attention after the step on
    the top layer's state with input feeding, no inner sync; the layers agree on bias.
    (Peek is fine: it joins the per-step static input y_t.)"""
    attention = decoder.attention
    if attention is None or decoder.position != "after" or not decoder.input_feeding:
        return False
    if decoder.query != "top" or decoder.sync_maps is not None:
        return False
    layers = list(decoder.layers)
    if type(layers[0]) not in CELLS or any(type(layer) is not type(layers[0])
                                            for layer in layers):
        return False
    if any(layer.has_bias != layers[0].has_bias for layer in layers):
        return False
    attentional = decoder.attentional
    if not isinstance(attentional, nn.Linear) or attentional.bias is None:
        return False
    if attention.score not in _SCORES:
        return False
    query_map = attention.query_map
    if isinstance(query_map, nn.Linear):
        return query_map.bias is None
    return isinstance(query_map, nn.Identity)


def runnable(decoder: Any, values: Tensor) -> bool:
    """The run-time half of the predicate: every parameter on ``values``' device and of
    its dtype, and no autocast there (the buffers are written in one dtype)."""
    if torch.is_autocast_enabled(values.device.type):
        return False
    return all(p.device == values.device and p.dtype == values.dtype
               for p in decoder.parameters())


@attrs.frozen
class _Layout:
    """The static description the autograd function needs besides its tensors."""

    cell: str  # "lstm" or "gru" (a key of CELLS' values)
    static: int  # width of y_t (0: nothing but the fed h̃)
    inputs: tuple[int, ...]  # per layer: input size (layer 0: static + feature size)
    hidden: tuple[int, ...]
    bias: bool
    score: str
    layer_dropout: float  # 0 when not training
    attention_dropout: float
    rows: StepRows = attrs.field(eq=False)  # where each step's rows live
    native: bool = False  # the step loops run in C++ (teacher_forcing_native)


def _noise(buffer: Tensor, p: float) -> Tensor:
    """nn.Dropout's mask in place: bernoulli(1 − p) / (1 − p), the same draws
    (:func:`assembly.nn.dropout.mask_`)."""
    return dropout.mask_(buffer, p)


def _dropout_masks(layout: _Layout, width: int, order: Tensor | None, like: Tensor
                   ) -> tuple[list[Tensor | None], Tensor | None]:
    """Every step's dropout masks as step buffers (N, ·): (per layer, None for layer 0
    and without dropout; on h̃ or None). They are drawn before the steps run, in the order
    the generic loop draws them (per step: between layers bottom up, then on h̃; nothing
    else in the steps draws), each for the whole batch in its own row order, so a seed
    gives the generic loop's masks; then each step row takes its own row's (``order``:
    the batch row of each sorted row, None when unsorted)."""
    rows = layout.rows
    steps, batch, count = rows.steps, rows.batch, len(layout.hidden)
    layer = [like.new_empty(steps, batch, layout.inputs[i]) if i and layout.layer_dropout
             else None for i in range(count)]
    feature = like.new_empty(steps, batch, width) if layout.attention_dropout else None
    if all(m is None for m in layer) and feature is None:
        return layer, feature
    for t in range(steps):
        for mask in layer[1:]:
            if mask is not None:
                _noise(mask[t], layout.layer_dropout)
        if feature is not None:
            _noise(feature[t], layout.attention_dropout)
    if rows.dense and order is None:
        return ([None if m is None else m.view(steps * batch, -1) for m in layer],
                None if feature is None else feature.view(steps * batch, -1))
    own = rows.row_of if order is None else order.cpu()[rows.row_of]
    index = (rows.step_of * batch + own).to(like.device)  # (N,) into (T·B) time-major
    return ([None if m is None else m.view(steps * batch, -1).index_select(0, index)
             for m in layer],
            None if feature is None else feature.view(steps * batch, -1).index_select(0, index))


def schedule(lengths: Tensor | None, steps: int, batch: int
             ) -> tuple[tuple[int, ...], Tensor | None]:
    """(rows each step runs, the batch row of each row sorted longest first, or None when
    the rows are already in that order). lengths (B,) or None (every row, every step)."""
    if lengths is None:
        return (batch,) * steps, None
    ordered, order = torch.sort(lengths.cpu(), descending=True, stable=True)
    active = (ordered[None, :] > torch.arange(steps)[:, None]).sum(1)  # (T,)
    if torch.equal(order, torch.arange(batch)):
        return tuple(active.tolist()), None
    return tuple(active.tolist()), order


def run(decoder: Any, static: Tensor | None, layers: list[tuple[Tensor, ...]],
        feed: Tensor, keys: Tensor, values: Tensor, mask: Tensor, steps: int,
        lengths: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """Teacher-forced steps of ``decoder`` (see :func:`supported`).

    static (B, T, Y) or None: the per-step input without the fed h̃; layers: each
    layer's initial state ((h, c) for LSTM, (h,) for GRU); feed (B, F) h̃ before step 0;
    keys, values, mask as in :class:`~assembly.nn.decoder.Memory`; lengths (B,): how many
    steps each row needs (None: all ``steps``). Returns features (B, T, F), attention
    weights (B, T, S), the top layer's outputs (B, T, O) and every layer's outputs (the
    last is the top's).

    With ``lengths``, step t runs only the rows still going, packed as a packed sequence
    is (:class:`~assembly.nn.teacher_forcing_cells.StepRows`; the rows sorted longest
    first and put back afterwards): a batch of mixed lengths costs what its real steps
    cost. The outputs at a row's steps past its length are zero and pass no gradient
    back; whatever reads them masks those steps (the loss, the regularisers), so the
    model's gradients are the generic loop's."""
    attention = decoder.attention
    cells = list(decoder.layers)
    batch = feed.shape[0]
    active, order = schedule(lengths, steps, batch)
    layout = _Layout(
        cell=CELLS[type(cells[0])].name, static=0 if static is None else static.shape[-1],
        inputs=tuple(c.input_size for c in cells), hidden=tuple(c.hidden_size for c in cells),
        bias=cells[0].has_bias, score=attention.score,
        layer_dropout=decoder.dropout.p if decoder.dropout.training else 0.0,
        attention_dropout=(decoder.attention_dropout.p if decoder.attention_dropout.training
                           else 0.0),
        rows=StepRows(active, batch))
    layout = attrs.evolve(layout, native=_native_applies(layout, values))
    if order is not None:  # longest first: step t's rows are a prefix of the batch
        rows = order.to(values.device)
        static, keys, values, mask, feed = (None if t is None else t.index_select(0, rows)
                                            for t in (static, keys, values, mask, feed))
        layers = [tuple(t.index_select(0, rows) for t in state) for state in layers]
    query = attention.query_map.weight if isinstance(attention.query_map, nn.Linear) else None
    vector = attention.vector.weight if attention.squashed else None
    tensors: list[Tensor | None] = []
    for cell, state in zip(cells, layers, strict=True):
        tensors += [state[0], state[1] if len(state) > 1 else None, cell.weight_ih,
                    cell.weight_hh, cell.bias_ih, cell.bias_hh]
    tensors += [query, vector, decoder.attentional.weight, decoder.attentional.bias]
    outputs = TeacherForced.apply(layout, order, static, keys, values, mask, feed, *tensors)
    if order is not None:  # back in the batch's order
        back = torch.argsort(order).to(values.device)
        outputs = tuple(t.index_select(0, back) for t in outputs)
    features, weights, top, *inner = outputs
    return features, weights, top, [*inner, top]


_BY_NAME = {cell.name: cell for cell in CELLS.values()}


def _native_applies(layout: _Layout, values: Tensor) -> bool:
    """Whether the C++ step loops (:mod:`assembly.nn.teacher_forcing_native`) run this
    node: LSTM layers, additive/concat attention, float32 on the CPU, and the native
    module built (:func:`assembly.nn.native.loops`)."""
    if layout.cell != "lstm" or layout.score not in ("additive", "concat"):
        return False
    if values.dtype != torch.float32 or values.device.type != "cpu":
        return False
    return native.enabled() and native.loops() is not None


def _state_buffers(layout: _Layout, static: Tensor | None, feed: Tensor,
                   rest: tuple[Tensor | None, ...], like: Tensor) -> list[Tensor]:
    """Each layer's [input; h_{t−1}] state buffer (B + N, I+H) (a StepRows state buffer):
    step t reads rows :n_t of block t and writes h_t into block t + 1, so the rows read
    are the X and H_prev of the deferred weight gradients. Block 0 holds h0; layer 0's
    input is [y_t, h̃_{t−1}], y_t filled for every step and h̃_{−1} = feed."""
    rows, y, width = layout.rows, layout.static, feed.shape[1]
    batch = rows.batch
    xs = []
    for index, (size, hidden) in enumerate(zip(layout.inputs, layout.hidden, strict=True)):
        x = like.new_empty(batch + rows.count, size + hidden)
        x[:batch, size:] = rest[6 * index]  # h0
        xs.append(x)
    if y:
        if rows.dense:
            xs[0][:rows.count, :y] = rows.pack(static)
        else:
            xs[0][:, :y].index_copy_(0, rows.previous.to(like.device), rows.pack(static))
    xs[0][:batch, y:y + width] = feed
    return xs


def _finish_forward(ctx: Any, layout: _Layout, buffers: tuple[Any, ...], keys: Tensor,
                    values: Tensor, rest: tuple[Tensor | None, ...], width: int
                    ) -> tuple[Tensor, ...]:
    """How both forwards end (the Python loops' and the native ones'): keep what the
    backwards read (:func:`_saved`; ``buffers`` = (xs, saved, layer noise, feature noise,
    squashed tanh, attended, joined)) and return the outputs (B, T, ·): features,
    weights, top, then every layer below the top."""
    count = len(layout.hidden)
    query, vector, w_c = rest[6 * count:6 * count + 3]
    ctx.layout = layout
    ctx.buffers = buffers
    ctx.save_for_backward(keys, values, query, vector, w_c,
                          *(rest[6 * i + 2] for i in range(count)),
                          *(rest[6 * i + 3] for i in range(count)))
    xs, attended = buffers[0], buffers[5]
    y, batch = layout.static, layout.rows.batch
    outputs = [xs[0][batch:, y:y + width], attended, xs[-1][batch:, layout.inputs[-1]:]]
    outputs += [xs[i][batch:, layout.inputs[i]:] for i in range(count - 1)]
    return tuple(layout.rows.unpack(o) for o in outputs)


def _saved(ctx: Any) -> tuple[Any, ...]:
    """What :func:`_finish_forward` saved: keys, values, W_q, v, W_c, then each layer's
    W_ih and W_hh (two tuples)."""
    count = len(ctx.layout.hidden)
    keys, values, query, vector, w_c = ctx.saved_tensors[:5]
    return (keys, values, query, vector, w_c, ctx.saved_tensors[5:5 + count],
            ctx.saved_tensors[5 + count:])


def _outside_gradients(ctx: Any, d_features: Tensor | None, d_top: Tensor | None
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """What both backwards start from, for every step row at once (N, ·), the outside
    gradients of the steps past each row's length dropped (rows.pack): d_tanh = m ⊙
    (1 − h̃²); δu_t's ∂h̃ share, ∂h̃_t ⊙ d_tanh_t (the loops add δfeed_t ⊙ d_tanh_t); and
    δ[ctx; s] holding [0; ∂s] (the top outputs' own gradient; uninitialised without)."""
    layout = ctx.layout
    rows, y, batch = layout.rows, layout.static, layout.rows.batch
    xs, _, _, feature_noise, squashed_tanh, _, _ = ctx.buffers
    size_m = _saved(ctx)[1].shape[-1]  # values' M
    width = xs[0].shape[-1] - y - layout.hidden[0]
    if feature_noise is not None:
        d_tanh = _tanh_backward(feature_noise, squashed_tanh)  # m ⊙ (1 − h̃²)
    else:
        fed = xs[0][batch:, y:y + width]
        d_tanh = torch.addcmul(fed.new_ones(()), fed, fed, value=-1)
    d_u = (d_tanh * rows.pack(d_features) if d_features is not None
           else torch.zeros_like(d_tanh))
    d_joined = d_tanh.new_empty(rows.count, size_m + layout.hidden[-1])
    if d_top is not None:
        d_joined[:, :size_m] = 0
        d_joined[:, size_m:] = rows.pack(d_top)
    return d_tanh, d_u, d_joined


def _gradients(ctx: Any, d_gates: list[Tensor], d_feed: Tensor, d_h: list[Tensor],
               d_c: list[Tensor | None], d_u: Tensor, d_joined: Tensor, d_scores: Tensor,
               d_q: Tensor | None, d_keys: Tensor | None, d_v: Tensor | None
               ) -> tuple[Tensor | None, ...]:
    """The node's input gradients, in :class:`TeacherForced`'s input order, from what
    the backward through time left: the deferred products over all N step rows,

        δ[W_ih W_hh] = δGatesᵀ [X H_prev],  δW_c = δUᵀ [Ctx S],  δV = Σ_t a_tᵀ δctx_t,
        δW_q = (4 v ⊙ δQ)ᵀ S (additive) or δQᵀ S,  δK = 2 v ⊙ ΣδZ or Σ_t δe_tᵀ q_t, …

    d_keys (B, S, A) and d_v (1, A) without their factors 2 v and 2 (additive/concat;
    None otherwise); d_q: Σ_s δz (additive) or δq (general), None for dot."""
    layout = ctx.layout
    rows, count, y = layout.rows, len(layout.hidden), layout.static
    cell = _BY_NAME[layout.cell]
    xs, _, _, _, _, attended, joined = ctx.buffers
    _, values, query, vector, _, w_ih, _ = _saved(ctx)
    batch, size_m = rows.batch, values.shape[-1]
    tops = xs[-1][batch:, layout.inputs[-1]:]  # (N, O)
    squashed = layout.score in ("additive", "concat")
    grads: list[Tensor | None] = [None, None, None]  # layout, order, static
    if y and ctx.needs_input_grad[2]:
        grads[2] = rows.unpack(cell.static_grad(d_gates[0], w_ih[0][:, :y]))
    if squashed:
        grads.append(d_keys.mul_(2 * vector[0]))
    else:
        q = ctx.attention if query is not None else tops
        grads.append(torch.bmm(rows.unpack(d_scores).transpose(1, 2), rows.unpack(q)))
    grads.append(torch.bmm(rows.unpack(attended).transpose(1, 2),
                           rows.unpack(d_joined[:, :size_m])))  # values
    grads.append(None)  # mask
    grads.append(d_feed)
    for index in range(count):
        grads += [d_h[index], d_c[index]]
        grads += cell.weight_grads(d_gates[index], rows.previous_rows(xs[index]),
                                   layout.inputs[index], layout.hidden[index], layout.bias)
    if squashed:
        grads.append((d_q * (4 * vector[0])).t() @ tops)
        grads.append(d_v.mul_(2))
    else:
        grads.append(d_q.t() @ tops if query is not None else None)
        grads.append(None)
    grads.append(d_u.t() @ joined)
    grads.append(d_u.sum(0))
    return tuple(grads)


def _grow(carry: Tensor | None, rows: int) -> Tensor | None:
    """A gradient carried back from step t + 1 (its n_{t+1} rows), zero-extended to step
    t's ``rows``: the rows that end at step t get nothing from later steps."""
    if carry is None or carry.shape[0] == rows:
        return carry
    return nn.functional.pad(carry, (0, 0, 0, rows - carry.shape[0]))


class TeacherForced(torch.autograd.Function):
    """See the module docstring. Inputs: layout, order (the batch row of each sorted row,
    for the dropout masks; None: unsorted), static, keys, values, mask, feed, then per
    layer (h0, c0 (None for a GRU), W_ih, W_hh, b_ih, b_hh), then W_q (or None), v (or
    None), W_c, b_c — all in the sorted row order. Outputs (B, T, ·): features, weights,
    top, the outputs of every layer below the top.

    Each tanh runs as 2σ(2x) − 1 (torch's CPU tanh is ~3× slower than its sigmoid): the
    tanh gates' rows of the weights (``teacher_forcing_cells``) and W_c, b_c
    are doubled for the forward."""

    @staticmethod
    def forward(ctx: Any, layout: _Layout, order: Tensor | None, static: Tensor | None,
                keys: Tensor, values: Tensor, mask: Tensor, feed: Tensor,
                *rest: Tensor | None) -> tuple[Tensor, ...]:
        ctx.set_materialize_grads(False)
        if layout.native:
            from assembly.nn import teacher_forcing_native

            return teacher_forcing_native.forward(ctx, layout, order, static, keys, values,
                                                  mask, feed, *rest)
        cell = _BY_NAME[layout.cell]
        rows = layout.rows
        count = len(layout.hidden)
        query, vector, w_c, b_c = rest[6 * count:]
        y, active = layout.static, rows.active
        batch, sources, _ = values.shape
        width = feed.shape[1]
        new = values.new_empty
        squashed = layout.score in ("additive", "concat")
        minus_one = values.new_full((), -1.0)

        xs = _state_buffers(layout, static, feed, rest, values)
        saved, steps_of = [], []
        for index, x in enumerate(xs):
            _, c0, w_ih, w_hh, b_ih, b_hh = rest[6 * index:6 * index + 6]
            kept, views = cell.forward_setup(x, c0, w_ih, w_hh, b_ih, b_hh,
                                             layout.inputs[index], layout.hidden[index], rows)
            saved.append(kept)
            steps_of.append(views)
        x0 = xs[0]
        feeds = rows.writes(x0[:, y:y + width])  # h̃_t, fed to step t + 1
        layer_noise, feature_noise = _dropout_masks(layout, width, order, values)
        belows = [None] + [rows.reads(xs[i][:, :layout.inputs[i]]) for i in range(1, count)]
        outs = [rows.writes(xs[i][:, layout.inputs[i]:]) for i in range(count)]
        noises = [None if n is None else rows.steps_of(n) for n in layer_noise]
        squashed_tanh = new(rows.count, width) if layout.attention_dropout else None

        blocked = values.new_zeros(batch, sources).masked_fill_(~mask, float("-inf"))
        if squashed:  # attention.py's 2 vᵀσ(2 W_q s + K) with 2 W_q and 2 v folded
            query2 = (query * 2).t()  # (O, A)
            vector2 = vector[0] * 2  # (A,)
            blocked = blocked.view(-1)
            sig: list[Tensor] = []
            keep_squashed = rows.count * sources * keys.shape[-1] * keys.element_size() \
                <= SQUASHED_MEMORY_BUDGET
            queries = None
        else:
            queries = new(rows.count, query.shape[0]) if query is not None else None
            blocked = blocked.unsqueeze(2)  # (B, S, 1)
        attended = new(rows.count, sources)
        joined = new(rows.count, values.shape[-1] + layout.hidden[-1])  # [ctx; s]
        w_c2, b_c2 = (w_c * 2).t(), b_c * 2
        attended_t, joined_t = rows.steps_of(attended), rows.steps_of(joined)
        squashed_t = rows.steps_of(squashed_tanh) if squashed_tanh is not None else feeds
        feature_noise_t = None if feature_noise is None else rows.steps_of(feature_noise)
        queries_t = None if queries is None else rows.steps_of(queries)
        tops = outs[-1]

        for t, n in enumerate(active):  # rows :n are still going
            for index in range(count):
                cell.step(steps_of[index], t, minus_one)
                if index + 1 < count:
                    h = outs[index][t]
                    if noises[index + 1] is not None:
                        torch.mul(h, noises[index + 1][t], out=belows[index + 1][t])
                    else:
                        belows[index + 1][t].copy_(h)
            top = tops[t]  # (n, O)
            keys_n = keys if n == batch else keys[:n]
            if squashed:
                s = torch.add(keys_n, torch.mm(top, query2).unsqueeze(1)).sigmoid_()
                if keep_squashed:
                    sig.append(s)
                scores = torch.addmv(blocked[:n * sources], s.view(-1, s.shape[-1]), vector2)
                scores = scores.view(n, sources)
            else:
                q = top if queries_t is None else torch.mm(top, query.t(), out=queries_t[t])
                scores = torch.baddbmm(blocked[:n], keys_n, q.unsqueeze(2)).squeeze(2)
            a = torch.softmax(scores, 1, out=attended_t[t])
            context = torch.bmm(a.unsqueeze(1), values[:n]).squeeze(1)  # (n, M)
            torch.cat([context, top], 1, out=joined_t[t])
            u = torch.sigmoid(torch.addmm(b_c2, joined_t[t], w_c2), out=squashed_t[t])
            torch.add(minus_one, u, alpha=2, out=u)  # tanh
            if feature_noise_t is not None:
                torch.mul(u, feature_noise_t[t], out=feeds[t])

        ctx.attention = sig if squashed else queries
        return _finish_forward(ctx, layout, (xs, saved, layer_noise, feature_noise,
                                             squashed_tanh, attended, joined),
                               keys, values, rest, width)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_features: Tensor | None, d_weights: Tensor | None,
                 d_top: Tensor | None, *d_layers: Tensor | None) -> tuple[Any, ...]:
        layout = ctx.layout
        if layout.native:
            from assembly.nn import teacher_forcing_native

            return teacher_forcing_native.backward(ctx, d_features, d_weights, d_top,
                                                   *d_layers)
        rows = layout.rows
        cell = _BY_NAME[layout.cell]
        xs, saved, layer_noise, _, _, attended, _ = ctx.buffers
        count = len(layout.hidden)
        keys, values, query, vector, w_c, w_ih, w_hh = _saved(ctx)
        y, active = layout.static, rows.active
        batch, sources, size_m = values.shape
        width = xs[0].shape[-1] - y - layout.hidden[0]
        new = values.new_empty
        squashed = layout.score in ("additive", "concat")
        softmax_backward = torch.ops.aten._softmax_backward_data.out

        d_tanh, d_u, d_joined = _outside_gradients(ctx, d_features, d_top)
        layers, d_gates = [], []
        for index in range(count):
            first = width if index == 0 else layout.inputs[index]
            w_in = w_ih[index][:, y:] if index == 0 else w_ih[index]
            views, gates = cell.backward_setup(saved[index], w_in, w_hh[index], first,
                                               layout.hidden[index], rows)
            d_gates.append(gates)
            layers.append((
                views, first,
                None if layer_noise[index] is None else rows.steps_of(layer_noise[index]),
                None if index == 0 or d_layers[index - 1] is None
                else rows.steps_of(rows.pack(d_layers[index - 1]))))
        tops = xs[-1][batch:, layout.inputs[-1]:]  # (N, O)
        if squashed:
            sig = ctx.attention  # empty: recompute each step's σ (SQUASHED_MEMORY_BUDGET)
            query2 = (query * 2).t()
            tops_t = rows.steps_of(tops)
            query4 = query * (4 * vector[0])[:, None]  # (A, O): δs += r_t 4 diag(v) W_q
            size_a = query.shape[0]
            d_q = new(rows.count, size_a)  # r_t = Σ_s δe_ts σ'_ts
            d_v = values.new_zeros(1, size_a)  # Σ δe σ
            d_keys = torch.zeros_like(keys)
            d_q_t = rows.steps_of(d_q)
            d_z = torch.empty_like(keys)  # δe_ts σ'_ts, one step at a time
        elif query is not None:
            d_q = new(rows.count, query.shape[0])
            d_q_t = rows.steps_of(d_q)
        d_scores = new(rows.count, sources)
        values_t = values.transpose(1, 2)
        d_u_t, d_tanh_t = rows.steps_of(d_u), rows.steps_of(d_tanh)
        d_joined_t = rows.steps_of(d_joined)
        d_context_t = rows.steps_of(d_joined[:, :size_m].unsqueeze(1))  # (n, 1, M)
        d_scores_t = rows.steps_of(d_scores)
        d_weights_t = None if d_weights is None else rows.steps_of(rows.pack(d_weights))
        attended_t = rows.steps_of(attended)
        # what flows into step t from step t + 1 (its rows, a prefix of step t's)
        d_h: list[Tensor | None] = [None] * count
        carry: list[Tensor | None] = [None] * count  # the LSTM's δc_t
        d_feed: Tensor | None = None

        for t in reversed(range(rows.steps)):
            n = active[t]
            if not rows.dense:  # the rows that end at step t start from no gradient
                d_feed = _grow(d_feed, n)
                d_h = [_grow(g, n) for g in d_h]
                carry = [_grow(g, n) for g in carry]
            keys_n, values_n = (keys, values_t) if n == batch else (keys[:n], values_t[:n])
            du = d_u_t[t]
            if d_feed is not None:
                du.addcmul_(d_feed, d_tanh_t[t])
            # [δctx; ∂s + δs from W_c]
            dj = (d_joined_t[t].addmm_(du, w_c) if d_top is not None
                  else torch.mm(du, w_c, out=d_joined_t[t]))
            dw = torch.bmm(d_context_t[t], values_n).squeeze(1)  # (n, S)
            if d_weights_t is not None:
                dw += d_weights_t[t]
            de = softmax_backward(dw, attended_t[t], 1, dw.dtype, grad_input=d_scores_t[t])
            if squashed:
                s_t = sig[t] if sig else torch.add(
                    keys_n, torch.mm(tops_t[t], query2).unsqueeze(1)).sigmoid_()
                d_z_n = d_z if n == batch else d_z[:n]
                _sigmoid_backward(de.unsqueeze(2).expand_as(d_z_n), s_t, grad_input=d_z_n)
                d_v.addmm_(de.view(1, -1), s_t.view(-1, size_a))
                if n == batch:
                    d_keys += d_z
                else:
                    d_keys[:n] += d_z_n
                r = torch.sum(d_z_n, 1, out=d_q_t[t])
                d_s = (torch.mm(r, query4) if d_h[-1] is None
                       else torch.addmm(d_h[-1], r, query4))
            else:
                dq = torch.bmm(de.unsqueeze(1), keys_n).squeeze(1)
                if query is not None:
                    d_q_t[t].copy_(dq)
                    dq = dq @ query
                d_s = dq if d_h[-1] is None else dq + d_h[-1]
            dh = d_s + dj[:, size_m:]
            for index in reversed(range(count)):
                views, first, noise, d_below = layers[index]
                below, d_h[index], carry[index] = cell.backward_step(views, t, dh,
                                                                     carry[index])
                if index == 0:
                    d_feed = below
                    continue
                if noise is not None:
                    below = below * noise[t]
                if d_below is not None:
                    below = below + d_below[t]
                if d_h[index - 1] is not None:
                    below = below + d_h[index - 1]
                dh = below
        # the gradients of the initial state, for every row
        d_feed = _grow(d_feed, batch)
        d_h = [_grow(g, batch) for g in d_h]
        carry = [_grow(g, batch) for g in carry]

        return _gradients(ctx, d_gates, d_feed, d_h, carry, d_u, d_joined, d_scores,
                          d_q if squashed or query is not None else None,
                          d_keys if squashed else None, d_v if squashed else None)
