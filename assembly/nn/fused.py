"""Built-in LSTM and GRU layers on torch's fused kernels (the ones nn.LSTM / nn.GRU call).

Whole sequences run through ``_VF.lstm`` / ``_VF.gru``: unpadded batches on the dense
kernel (oneDNN on CPU, cuDNN on GPU), padded ones packed. On CPU a padded LSTM layer runs
as one autograd node instead (:mod:`assembly.nn.lstm_node`, see :func:`lstm_node.applies`
for when), as torch's packed CPU path is a per-step loop of small autograd nodes. Single
decoder steps go through ``_VF.lstm_cell`` / ``_VF.gru_cell`` with the same weights.
Parameter names and shapes follow torch.nn.LSTM/GRU (without the ``_l0`` suffix), so
weights copy across directly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import _VF, Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from assembly.nn import lstm_node
from assembly.nn.layers import RecurrentLayer, State, init_recurrent


class _FusedLayer(RecurrentLayer):
    gates: int

    def __init__(self, spec: Any, input_size: int, hidden: int) -> None:
        super().__init__()
        self.spec = spec
        self.input_size = input_size
        self.hidden_size = hidden
        self.output_size = hidden
        self.has_bias = spec.bias
        g = self.gates * hidden
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden))
        if spec.bias:
            self.bias_ih = nn.Parameter(torch.empty(g))
            self.bias_hh = nn.Parameter(torch.empty(g))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)  # torch.nn.LSTM/GRU's own default
        init_recurrent(self.weight_ih, self.weight_hh, self.spec, self.gates)
        if self.spec.bias and self.spec.init in ("identity", "orthogonal", "uniform"):
            with torch.no_grad():
                self.bias_ih.zero_()
                self.bias_hh.zero_()

    def flat_weights(self) -> list[Tensor]:
        if self.has_bias:
            return [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]
        return [self.weight_ih, self.weight_hh]

    def _set_gate_bias(self, gate: int, value: float) -> None:
        """Give gate block ``gate`` the total bias ``value`` (held by ``bias_ih``)."""
        h = self.hidden_size
        with torch.no_grad():
            self.bias_ih[gate * h:(gate + 1) * h].fill_(value)
            self.bias_hh[gate * h:(gate + 1) * h].zero_()

    # The kernels take the hidden state as (1 or 2, B, H) in the packed order (None: zeros)
    # and return each direction's outputs (N, H) in the packed order.
    def _run(self, data: Tensor, batch_sizes: Tensor, hx: Any, weights: list[Tensor],
             bidirectional: bool) -> tuple[list[Tensor], Any]:  # pragma: no cover
        raise NotImplementedError

    def _to_kernel(self, state: State, packed: PackedSequence,
                   directions: int = 1) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _from_kernel(self, hidden: Any, packed: PackedSequence,
                     direction: int) -> State:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: Tensor, lengths: Tensor,
                state: State | None = None) -> tuple[Tensor, State]:
        batch, steps, _ = x.shape
        if _unpadded(lengths, steps):  # no padding: the dense kernel (oneDNN) is faster
            if state is None:
                state = self.initial_state(batch, x)
            output, hidden = self._run_dense(x, self._to_dense(state, 1),
                                             self.flat_weights(), False)
            return output, self._from_dense(hidden, 0)
        packed = pack(x, lengths)
        output, final = self.forward_packed(packed.data, packed, state)
        return unpack(output, packed, steps), final

    def forward_packed(self, data: Tensor, packed: PackedSequence,
                       state: State | None = None) -> tuple[Tensor, State]:
        """Over data already packed (``packed`` gives the order): data (N, I) → (outputs
        (N, O) in the same packed order, final state (B, ·) in batch order). Lets a stack
        of layers pack once instead of once per layer."""
        hx = None if state is None else self._to_kernel(state, packed)
        outputs, hidden = self._run(data, packed.batch_sizes, hx, self.flat_weights(), False)
        return outputs[0], self._from_kernel(hidden, packed, 0)

    def _to_dense(self, state: State, directions: int) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _from_dense(self, hidden: Any, direction: int) -> State:  # pragma: no cover
        raise NotImplementedError

    def _run_dense(self, x: Tensor, hx: Any, weights: list[Tensor],
                   bidirectional: bool) -> tuple[Tensor, Any]:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def run_bidirectional(forward_layer: _FusedLayer, backward_layer: _FusedLayer, x: Tensor,
                          lengths: Tensor) -> tuple[Tensor, Tensor, State, State]:
        """Both directions in one fused kernel call, as nn.LSTM(bidirectional=True) does."""
        batch, steps, _ = x.shape
        if _unpadded(lengths, steps):  # no padding: the dense kernel (oneDNN) is faster
            zeros = forward_layer.initial_state(batch, x)
            weights = forward_layer.flat_weights() + backward_layer.flat_weights()
            h = forward_layer.hidden_size
            output, hidden = forward_layer._run_dense(x, forward_layer._to_dense(zeros, 2),
                                                      weights, True)
            return (output[..., :h], output[..., h:], forward_layer._from_dense(hidden, 0),
                    backward_layer._from_dense(hidden, 1))
        packed = pack(x, lengths)
        out_f, out_b, state_f, state_b = _FusedLayer.run_bidirectional_packed(
            forward_layer, backward_layer, packed.data, packed)
        return (unpack(out_f, packed, steps), unpack(out_b, packed, steps), state_f, state_b)

    @staticmethod
    def run_bidirectional_packed(forward_layer: _FusedLayer, backward_layer: _FusedLayer,
                                 data: Tensor, packed: PackedSequence
                                 ) -> tuple[Tensor, Tensor, State, State]:
        """Both directions over data already packed: (N, I) → each direction's outputs
        (N, H) in packed order and final states in batch order."""
        weights = forward_layer.flat_weights() + backward_layer.flat_weights()
        (out_f, out_b), hidden = forward_layer._run(data, packed.batch_sizes, None, weights,
                                                    True)
        return (out_f, out_b, forward_layer._from_kernel(hidden, packed, 0),
                backward_layer._from_kernel(hidden, packed, 1))


def pack(x: Tensor, lengths: Tensor) -> PackedSequence:
    """pack_padded_sequence of batch-first ``x``; when the rows already come longest first
    (the trainer's batches do) without the sort and its reorderings (``sorted_indices``
    None), which saves an index_select of the input, of the output and of every state."""
    lengths = lengths.cpu()
    ordered = bool((lengths[:-1] >= lengths[1:]).all())
    return pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=ordered)


def unpack(data: Tensor, packed: PackedSequence, steps: int) -> Tensor:
    """Packed data (N, ·) in ``packed``'s order → padded (B, steps, ·), zero at padding.

    One index_copy_ into zeros, whose backward is one index_select of the gradient.
    (pad_packed_sequence copies step by step; autograd then clones the whole padded
    gradient once per step, ~4 % of a reference training update.)"""
    positions = _padded_positions(packed.batch_sizes, packed.sorted_indices, steps)
    batch = int(packed.batch_sizes[0])
    flat = data.new_zeros(batch * steps, *data.shape[1:])
    flat.index_copy_(0, positions.to(data.device), data)
    return flat.view(batch, steps, *data.shape[1:])


def _padded_positions(batch_sizes: Tensor, sorted_indices: Tensor | None,
                      steps: int) -> Tensor:
    """Where each packed row goes in the flattened padded (B · steps) layout: row i of
    step t is (sorted) row i, at batch row ``sorted_indices[i]`` (i itself when None)."""
    sizes = batch_sizes.to("cpu", torch.long)
    step = torch.repeat_interleave(torch.arange(len(sizes)), sizes)  # (N,) each row's t
    starts = torch.cumsum(sizes, 0) - sizes  # each step's first packed row
    row = torch.arange(len(step)) - starts[step]  # (N,) its sorted row
    if sorted_indices is not None:
        row = sorted_indices.to("cpu")[row]
    return row * steps + step


def _unpadded(lengths: Tensor, steps: int) -> bool:
    """Whether every row is ``steps`` long (one host sync, the same one packing makes)."""
    return bool(lengths.min() == steps)


def _dense(t: Tensor, directions: int) -> Tensor:
    # (B, H) → (directions, B, H) in batch order
    return t.unsqueeze(0).expand(directions, -1, -1).contiguous()


def _sorted(t: Tensor, packed: PackedSequence, directions: int) -> Tensor:
    # (B, H) → (directions, B, H) in the packed (length-sorted) order
    if packed.sorted_indices is not None:
        t = t.index_select(0, packed.sorted_indices)
    return t.unsqueeze(0).expand(directions, -1, -1).contiguous()


def _unsorted(t: Tensor, packed: PackedSequence, direction: int) -> Tensor:
    if packed.unsorted_indices is None:
        return t[direction]
    return t[direction].index_select(0, packed.unsorted_indices)


def _zeros(data: Tensor, batch_sizes: Tensor, hidden: int, directions: int) -> Tensor:
    # the zero initial state (directions, B, H) for the kernels
    return data.new_zeros(directions, int(batch_sizes[0]), hidden)


def _split(output: Tensor, bidirectional: bool) -> list[Tensor]:
    # the kernels' (N, D·H) output → each direction's (N, H)
    return list(output.chunk(2, 1)) if bidirectional else [output]


class FusedLSTM(_FusedLayer):
    """LSTM: gates i, f, g, o (torch order); c' = f⊙c + i⊙g, h' = o⊙tanh(c'). The cell
    state c is stored unsquashed. Forget-gate bias starts at ``forget_bias``; input and
    output gate biases at ``gate_bias`` when given."""

    gates = 4
    use_node = True  # False on an instance: padded batches on torch's packed kernel too

    def __init__(self, spec: Any, input_size: int, hidden: int) -> None:
        super().__init__(spec, input_size, hidden)
        self.state_sizes = (hidden, hidden)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.spec.bias:
            self._set_gate_bias(1, self.spec.forget_bias)
            if self.spec.gate_bias is not None:
                self._set_gate_bias(0, self.spec.gate_bias)
                self._set_gate_bias(3, self.spec.gate_bias)

    def _run(self, data: Tensor, batch_sizes: Tensor, hx: Any, weights: list[Tensor],
             bidirectional: bool) -> tuple[list[Tensor], Any]:
        if self.use_node and lstm_node.applies(data, weights, int(batch_sizes[0]),
                                               bidirectional):
            h0, c0 = (None, None) if hx is None else hx
            *outputs, h, c = lstm_node.LSTMLayer.apply(
                self.has_bias, tuple(batch_sizes.tolist()), data, h0, c0, *weights)
            return outputs, (h, c)
        if hx is None:
            zeros = _zeros(data, batch_sizes, self.hidden_size, 2 if bidirectional else 1)
            hx = (zeros, zeros)
        output, h, c = _VF.lstm(data, batch_sizes, hx, weights, self.has_bias,
                                1, 0.0, self.training, bidirectional)
        return _split(output, bidirectional), (h, c)

    def _to_kernel(self, state: State, packed: PackedSequence, directions: int = 1) -> Any:
        return (_sorted(state[0], packed, directions), _sorted(state[1], packed, directions))

    def _to_dense(self, state: State, directions: int) -> Any:
        return (_dense(state[0], directions), _dense(state[1], directions))

    def _from_dense(self, hidden: Any, direction: int) -> State:
        return (hidden[0][direction], hidden[1][direction])

    def _run_dense(self, x: Tensor, hx: Any, weights: list[Tensor],
                   bidirectional: bool) -> tuple[Tensor, Any]:
        output, h, c = _VF.lstm(x, hx, weights, self.has_bias, 1, 0.0, self.training,
                                bidirectional, True)
        return output, (h, c)

    def _from_kernel(self, hidden: Any, packed: PackedSequence, direction: int) -> State:
        return (_unsorted(hidden[0], packed, direction), _unsorted(hidden[1], packed, direction))

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = _VF.lstm_cell(x, state, self.weight_ih, self.weight_hh, self.bias_ih,
                             self.bias_hh)
        return h, (h, c)


class FusedGRU(_FusedLayer):
    """GRU: gates r, z, n (torch order). ``update = "cho"`` stores the update gate's
    weights negated, so that the kernel's (1 − z') equals the paper's z."""

    gates = 3

    def __init__(self, spec: Any, input_size: int, hidden: int) -> None:
        super().__init__(spec, input_size, hidden)
        self.state_sizes = (hidden,)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.spec.bias and self.spec.gate_bias is not None:
            sign = -1.0 if self.spec.update == "cho" else 1.0
            self._set_gate_bias(0, self.spec.gate_bias)
            self._set_gate_bias(1, sign * self.spec.gate_bias)

    def _run(self, data: Tensor, batch_sizes: Tensor, hx: Any, weights: list[Tensor],
             bidirectional: bool) -> tuple[list[Tensor], Any]:
        if hx is None:
            hx = _zeros(data, batch_sizes, self.hidden_size, 2 if bidirectional else 1)
        output, h = _VF.gru(data, batch_sizes, hx, weights, self.has_bias,
                            1, 0.0, self.training, bidirectional)
        return _split(output, bidirectional), h

    def _to_kernel(self, state: State, packed: PackedSequence, directions: int = 1) -> Any:
        return _sorted(state[0], packed, directions)

    def _to_dense(self, state: State, directions: int) -> Any:
        return _dense(state[0], directions)

    def _from_dense(self, hidden: Any, direction: int) -> State:
        return (hidden[direction],)

    def _run_dense(self, x: Tensor, hx: Any, weights: list[Tensor],
                   bidirectional: bool) -> tuple[Tensor, Any]:
        output, h = _VF.gru(x, hx, weights, self.has_bias, 1, 0.0, self.training,
                            bidirectional, True)
        return output, h

    def _from_kernel(self, hidden: Any, packed: PackedSequence, direction: int) -> State:
        return (_unsorted(hidden, packed, direction),)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h = _VF.gru_cell(x, state[0], self.weight_ih, self.weight_hh, self.bias_ih,
                         self.bias_hh)
        return h, (h,)
