"""One decoding step in C++: the teacher-forcing node's native forward loop run for a
single step (``native/loops.cpp``, ``forward_steps``), for greedy, beam and sampling.

:meth:`~assembly.nn.decoder.Decoder.step` hands its step here where the teacher-forcing
node's native loops would run its training (built-in ``lstm`` layers, ``additive`` or
``concat`` attention after the step with input feeding; :func:`applies`), without
gradients and outside training (no dropout), in float32 on the CPU. One call does what
the Python step does in ~25 ATen calls: per layer one matmul of [x; h_{t−1}] and one
vectorised pass for the gates, c_t and h_t; the query; attention over each row's own
source extent; [ctx; s] written in place and W_c; tanh. The results are the Python
step's to float rounding (tests/test_decode_native.py).

The step's state lives in the node's layout: per layer a buffer (2B, I + H) whose first B
rows are [input; h_{t−1}] and whose last B rows receive h_t, and (2B, H) for c. The new
DecoderState holds views of the second halves, so the next step copies them into its
first halves (the copies the Python step's concatenations make anyway).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import Tensor

from assembly.nn import native, teacher_forcing
from assembly.nn.teacher_forcing_native import ABSENT, masked_extents, step_weights

_STRUCTURES: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def applies(decoder: Any, memory: Any) -> bool:
    """Whether :func:`step` runs this decoder's step: the structure the native
    teacher-forcing node runs (LSTM layers, additive/concat attention), not training,
    no gradients, float32 CPU tensors, the native module built."""
    if torch.is_grad_enabled() or decoder.training or not native.enabled():
        return False
    if memory.keys is None or memory.values.dtype != torch.float32:
        return False
    if memory.values.device.type != "cpu" or not _structure(decoder):
        return False
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in decoder.parameters()):
        return False
    return native.loops() is not None


def _structure(decoder: Any) -> bool:
    """The structural half of :func:`applies` (it never changes), kept per decoder."""
    known = _STRUCTURES.get(decoder)
    if known is None:
        from assembly.nn.teacher_forcing_cells import LSTMCell

        cells = list(decoder.layers)
        known = (teacher_forcing.supported(decoder)
                 and teacher_forcing.CELLS.get(type(cells[0])) is LSTMCell
                 and decoder.attention.score in ("additive", "concat"))
        _STRUCTURES[decoder] = known
    return known


def _weights(decoder: Any) -> tuple[Any, ...]:
    """The decoder's weights as forward_steps reads them
    (:func:`~assembly.nn.teacher_forcing_native.step_weights`), made once per decoded
    batch and kept in its Memory: an optimiser's in-place update need not bump a
    parameter's version counter, so no cache across batches can tell it is stale."""
    rest: list[Tensor | None] = []
    for cell in decoder.layers:
        rest += [None, None, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    attention = decoder.attention
    rest += [attention.query_map.weight, attention.vector.weight,
             decoder.attentional.weight, decoder.attentional.bias]
    with torch.no_grad():
        return step_weights(rest)


def step(decoder: Any, static: Tensor | None, state: Any, memory: Any) -> Any:
    """:meth:`Decoder.step`'s contract for the decoders :func:`applies` to: static
    (B, Y) or None (the fed input without h̃) → StepOutput."""
    from assembly.nn.decoder import DecoderState, StepOutput

    if memory.step_weights is None:
        memory.step_weights = _weights(decoder)
    weights, biases, query2, vector2, w_c_t, b_c = memory.step_weights
    cells = list(decoder.layers)
    feed = state.feed
    batch, width = feed.shape
    y = 0 if static is None else static.shape[1]
    new = memory.values.new_empty
    xs, cs = [], []
    for index, cell in enumerate(cells):
        size, hidden = cell.input_size, cell.hidden_size
        h_prev, c_prev = state.layers[index]
        x = new(2 * batch, size + hidden)
        x[:batch, size:] = h_prev
        c = new(2 * batch, hidden)
        c[:batch] = c_prev
        xs.append(x)
        cs.append(c)
    if static is not None:
        xs[0][:batch, :y] = static
    xs[0][:batch, y:y + width] = feed
    blocked, extents = masked_extents(memory.mask, memory.values)
    attended = new(batch, memory.mask.shape[1])
    size_a = query2.shape[1]
    native.loops().forward_steps(
        [batch], batch, xs, cs, [new(batch, 4 * c.hidden_size) for c in cells],
        [new(batch, c.hidden_size) for c in cells], weights, biases,
        [c.input_size for c in cells], [ABSENT] * len(cells), memory.keys.contiguous(),
        memory.values.contiguous(), blocked, extents, query2, vector2, new(batch, size_a),
        attended, new(batch, memory.values.shape[-1] + cells[-1].hidden_size), w_c_t, b_c,
        ABSENT, ABSENT, y)
    layers = [(x[batch:, cell.input_size:], c[batch:])
              for x, c, cell in zip(xs, cs, cells, strict=True)]
    outputs = [h for h, _ in layers]
    features = xs[0][batch:, y:y + width]
    return StepOutput(features, DecoderState(layers, features), attended, outputs[-1],
                      outputs)
