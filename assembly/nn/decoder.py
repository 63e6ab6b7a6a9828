"""The decoder stack: one step at a time, or the whole teacher-forced sequence at once.

Per step (``step``): the input is the fed previous token's embedding (or vector), joined
by the peek context, the attention context (position ``before``) and the previous
attentional vector (input feeding); the layers run in turn (with inner state sync if
asked); attention ``after`` then forms h̃_t = tanh(W_c [c_t; s_t]). ``features`` are what
the output layer reads.

Where no step depends on the previous one's result (no input feeding, no attention
before the step, no inner sync, no sampling), :meth:`Decoder.forward_parallel` runs every
layer over the whole sequence with the fused kernels and attends for all steps at once.
Where input feeding is the only such dependence and the layers are all built-in LSTMs or
all built-in GRUs (:attr:`Decoder.fused_teacher_forcing`),
:meth:`Decoder.forward_teacher_forced` runs the step loop as one autograd node with a
hand-written backward (assembly.nn.teacher_forcing).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor, nn

from assembly.nn import decoder_step_native, teacher_forcing
from assembly.nn.attention import Attention
from assembly.nn.dropout import Dropout
from assembly.nn.encoder import device_of
from assembly.nn.layers import State


@attrs.define
class Memory:
    """What every decoder step reads from the encoder, prepared once per batch.

    values (B, S, M), keys (projected for the score), mask (B, S), summary (B, M) (the
    peek context, already mapped for ``add``/``projected-add``). ``step_weights``: the
    decoder's weights as the native decoding step reads them, laid out by its first step
    (:mod:`assembly.nn.decoder_step_native`) and shared by the memories derived from this
    one: weights do not change while a batch decodes."""

    values: Tensor
    keys: Tensor | None
    mask: Tensor
    summary: Tensor
    source_lengths: Tensor
    step_weights: Any = None

    def select(self, index: Tensor) -> Memory:
        """Rows ``index`` (B',) of every batch tensor: reorders/expands beams or samples."""
        return Memory(self.values.index_select(0, index),
                      None if self.keys is None else self.keys.index_select(0, index),
                      self.mask.index_select(0, index), self.summary.index_select(0, index),
                      self.source_lengths.index_select(0, index.to(self.source_lengths.device)),
                      self.step_weights)

    def head(self, rows: int) -> Memory:
        """The first ``rows`` rows, as views (no copy): what :meth:`select` gives for
        ``arange(rows)``."""
        return Memory(self.values[:rows], None if self.keys is None else self.keys[:rows],
                      self.mask[:rows], self.summary[:rows], self.source_lengths[:rows],
                      self.step_weights)


@attrs.define
class DecoderState:
    """layers: each layer's state tensors (B, ·); feed: h̃_{t−1} for input feeding."""

    layers: list[State]
    feed: Tensor | None = None

    def select(self, index: Tensor) -> DecoderState:
        def rows(t: Tensor) -> Tensor:
            return t.index_select(0, index.to(t.device))  # states may sit on several devices

        return DecoderState([tuple(rows(t) for t in s) for s in self.layers],
                            None if self.feed is None else rows(self.feed))

    def head(self, rows: int) -> DecoderState:
        """The first ``rows`` rows, as views: what :meth:`select` gives for arange(rows)."""
        return DecoderState([tuple(t[:rows] for t in s) for s in self.layers],
                            None if self.feed is None else self.feed[:rows])

    def map(self, fn: object) -> DecoderState:
        """Apply ``fn`` to every tensor (e.g. an average over past states)."""
        return DecoderState([tuple(fn(t) for t in s) for s in self.layers],  # type: ignore
                            None if self.feed is None else fn(self.feed))  # type: ignore


@attrs.define
class StepOutput:
    features: Tensor  # (B, F)
    state: DecoderState
    attention: Tensor | None  # (B, S)
    top: Tensor  # (B, O) top layer output (regularisers read it)
    layer_outputs: list[Tensor]


class Decoder(nn.Module):
    """See the module docstring. ``peek_mode`` is None, ``concat``, ``add`` or
    ``projected-add``; ``position`` is ``after`` or ``before``; ``query`` ``top``/``all``."""

    fuse_teacher_forcing = True  # False on an instance: always the generic step loop

    def __init__(self, layers: list[nn.Module], *, dropout: float, feed_previous: bool,
                 peek_mode: str | None, peek_map: nn.Module | None,
                 attention: Attention | None, position: str, query: str,
                 input_feeding: bool, attentional: nn.Module | None,
                 attention_dropout: float, sync_maps: list[nn.ModuleList] | None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout = Dropout(dropout)
        self.feed_previous = feed_previous
        self.peek_mode = peek_mode
        self.peek_map = peek_map
        self.attention = attention
        self.position = position
        self.query = query
        self.input_feeding = input_feeding
        self.attentional = attentional
        self.attention_dropout = Dropout(attention_dropout)
        self.sync_maps = nn.ModuleList(sync_maps) if sync_maps is not None else None

    @property
    def fused_teacher_forcing(self) -> bool:
        """Whether a teacher-forced pass with input feeding runs as one hand-differentiated
        node (:mod:`assembly.nn.teacher_forcing`) instead of ``Seq2Seq._loop``: built-in
        ``lstm`` layers or built-in ``gru`` layers (all one or all the other; a mixed stack
        takes the loop), attention after the step queried with the top state, no inner
        sync."""
        return self.fuse_teacher_forcing and teacher_forcing.supported(self)

    @property
    def parallel(self) -> bool:
        """Whether a teacher-forced sequence can run as one fused pass."""
        return not self.input_feeding and self.sync_maps is None and (
            self.attention is None or self.position == "after")

    def prepare(self, values: Tensor, mask: Tensor, summary: Tensor,
                source_lengths: Tensor) -> Memory:
        keys = self.attention.prepare(values) if self.attention is not None else None
        if self.peek_map is not None:
            summary = self.peek_map(summary)
        return Memory(values, keys, mask, summary, source_lengths)

    def _query(self, layers: list[State], device: torch.device) -> Tensor:
        if self.query == "all":
            return torch.cat([s[0].to(device) for s in layers], dim=-1)
        return layers[-1][0].to(device)

    def _attend(self, layers: list[State], memory: Memory) -> tuple[Tensor, Tensor]:
        assert self.attention is not None
        query = self._query(layers, memory.values.device)
        return self.attention(query, memory.keys, memory.values, memory.mask)

    def _input(self, previous: Tensor | None, memory: Memory,
               extra: list[Tensor]) -> Tensor:
        parts = []
        if previous is not None:
            previous = previous.to(memory.values.device)
            if self.peek_mode in ("add", "projected-add"):
                previous = previous + memory.summary
            parts.append(previous)
        if self.peek_mode == "concat":
            parts.append(memory.summary)
        parts.extend(extra)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def step(self, previous: Tensor | None, state: DecoderState, memory: Memory) -> StepOutput:
        """One step. previous (B, Y) the fed input (None when nothing is fed)."""
        if decoder_step_native.applies(self, memory):  # the same step in one C++ call
            fed = previous is not None or self.peek_mode == "concat"
            static = self._input(previous, memory, []) if fed else None
            return decoder_step_native.step(self, static, state, memory)
        extra: list[Tensor] = []
        weights = None
        if self.attention is not None and self.position == "before":
            context, weights = self._attend(state.layers, memory)
            extra.append(context)
        if self.input_feeding:
            assert state.feed is not None
            extra.append(state.feed)
        x = self._input(previous, memory, extra)  # (B, I)
        new_layers: list[State] = []
        outputs: list[Tensor] = []
        for index, layer in enumerate(self.layers):
            layer_state = state.layers[index]
            if self.sync_maps is not None and index > 0:
                shared = [m(s) for m, s in zip(self.sync_maps[index - 1], new_layers[-1],
                                               strict=False)]
                layer_state = tuple(shared) + tuple(layer_state[len(shared):])
            device = device_of(layer) or x.device
            x = x.to(device)
            if index > 0:
                x = self.dropout(x)  # between layers, on the receiving layer's device
            layer_state = tuple(t.to(device) for t in layer_state)
            out, layer_state = layer.step(x, layer_state)
            new_layers.append(layer_state)
            outputs.append(out)
            x = out
        top = x.to(memory.values.device)
        feed = None
        if self.attention is None:
            features = top
        elif self.position == "after":
            context, weights = self._attend(new_layers, memory)
            features = self.attention_dropout(
                torch.tanh(self.attentional(torch.cat([context, top], dim=-1))))
            feed = features if self.input_feeding else None
        else:
            features = self.attention_dropout(torch.cat([top, extra[0]], dim=-1))
        return StepOutput(features, DecoderState(new_layers, feed), weights, top, outputs)

    def forward_parallel(self, inputs: Tensor | None, lengths: Tensor, state: DecoderState,
                         memory: Memory, steps: int
                         ) -> tuple[Tensor, Tensor | None, Tensor, list[Tensor]]:
        """All teacher-forced steps at once (see :attr:`parallel`).

        inputs (B, T, Y) or None → features (B, T, F), attention (B, T, S) or None,
        top outputs (B, T, O), every layer's outputs."""
        x = self._static_inputs(inputs, memory, steps)  # (B, T, I)
        assert x is not None
        layer_outputs = []
        for index, layer in enumerate(self.layers):
            device = device_of(layer) or x.device
            x = x.to(device)
            if index > 0:
                x = self.dropout(x)  # between layers, on the receiving layer's device
            out, _ = layer(x, lengths, tuple(t.to(device) for t in state.layers[index]))
            layer_outputs.append(out)
            x = out
        top = x.to(memory.values.device)  # (B, T, O)
        if self.attention is None:
            return top, None, top, layer_outputs
        queries = (torch.cat([o.to(top.device) for o in layer_outputs], dim=-1)
                   if self.query == "all" else top)
        context, weights = self.attention.forward_all(queries, memory.keys, memory.values,
                                                      memory.mask)
        features = self.attention_dropout(
            torch.tanh(self.attentional(torch.cat([context, top], dim=-1))))
        return features, weights, top, layer_outputs

    def _static_inputs(self, inputs: Tensor | None, memory: Memory,
                       steps: int) -> Tensor | None:
        """Every step's input to layer 0 except the fed h̃ (what :meth:`_input` joins
        without ``extra``): inputs (B, T, Y) or None → (B, T, I′) or None."""
        batch = memory.values.shape[0]
        summary = memory.summary.unsqueeze(1).expand(batch, steps, -1)
        parts = []
        if inputs is not None:
            inputs = inputs.to(memory.values.device)
            parts.append(inputs + summary if self.peek_mode in ("add", "projected-add")
                         else inputs)
        if self.peek_mode == "concat":
            parts.append(summary)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def forward_teacher_forced(self, inputs: Tensor | None, lengths: Tensor | None,
                               state: DecoderState, memory: Memory, steps: int
                               ) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        """All teacher-forced steps with input feeding as one autograd node (see
        :attr:`fused_teacher_forcing`); returns what :meth:`forward_parallel` does.
        lengths (B,): each row's steps; the steps past them run for no row, and their
        outputs are zero (:func:`assembly.nn.teacher_forcing.run`)."""
        assert state.feed is not None
        static = self._static_inputs(inputs, memory, steps)
        return teacher_forcing.run(self, static, state.layers, state.feed, memory.keys,
                                   memory.values, memory.mask, steps, lengths)
