"""The assembled model: embeddings, encoder, bridge, decoder, output layer.

Token mode: ``logits`` (B, T, V) against ``target`` (B, T) ids (EOS included, PAD
masked). Continuous mode: predicted vectors (B, T, D) against target vectors, with an
optional stop head. The decoder input at step t is the target at t−1 (teacher forcing,
shifted by one: BOS / a zero vector at t = 0), never the target at t.

Samplers drive decoding through :meth:`Seq2Seq.encode`, :meth:`Seq2Seq.start` and
:meth:`Seq2Seq.step` (one step for a batch of rows), and reorder rows with
``Memory.select`` / ``DecoderState.select``.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from assembly.data.vocab import BOS_ID, PAD_ID
from assembly.nn import teacher_forcing
from assembly.nn.bridge import Bridge
from assembly.nn.decoder import Decoder, DecoderState, Memory
from assembly.nn.dropout import Dropout
from assembly.nn.encoder import Encoder, EncoderOutput, device_of


@attrs.define
class ForwardOutputs:
    """Everything a training step and the regularisers may read.

    predictions: logits (B, T, V) or vectors (B, T, D); mask (B, T) true at target steps;
    attention (B, T, S) or None; stop_logits (B, T) or None; encoder: the
    :class:`EncoderOutput`; decoder_outputs (B, T, O) the top decoder layer's outputs;
    decoder_layer_outputs: every decoder layer's (B, T, O_j).

    Only the steps ``mask`` marks are defined: past a row's length the fused
    teacher-forcing node runs nothing (its outputs there are zero and pass no gradient
    back), so whatever reads these tensors masks them, as the loss and the regularisers
    do."""

    predictions: Tensor
    mask: Tensor
    attention: Tensor | None
    stop_logits: Tensor | None
    encoder: EncoderOutput
    decoder_outputs: Tensor
    decoder_layer_outputs: list[Tensor]


@attrs.define
class StepResult:
    """One decoding step: scores (B, V) log-probabilities (token mode) or the predicted
    vector (B, D); stop (B,) stop probabilities or None; attention (B, S) or None; top
    (B, O) the top decoder layer's output (what regularisers read)."""

    scores: Tensor
    state: DecoderState
    attention: Tensor | None
    stop: Tensor | None
    top: Tensor | None = None


class Seq2Seq(nn.Module):
    def __init__(self, *, token_mode: bool, source_embedding: nn.Embedding | None,
                 target_embedding: nn.Embedding | None, source_dropout: float,
                 target_dropout: float, encoder: Encoder, bridge: Bridge, decoder: Decoder,
                 output: nn.Module, stop: nn.Module | None, output_size: int,
                 output_length: int | None = None) -> None:
        super().__init__()
        self.token_mode = token_mode
        self.source_embedding = source_embedding
        self.target_embedding = target_embedding
        self.source_dropout = Dropout(source_dropout)
        self.target_dropout = Dropout(target_dropout)
        self.encoder = encoder
        self.bridge = bridge
        self.decoder = decoder
        self.output = output
        self.stop = stop
        self.output_size = output_size
        self.output_length = output_length

    # -- pieces shared by training and decoding -----------------------------------------
    def encode(self, source: Tensor, source_lengths: Tensor) -> tuple[Memory, EncoderOutput]:
        """source (B, S) ids or (B, S, D) vectors → decoder memory and encoder outputs."""
        x = self.source_embedding(source) if self.source_embedding is not None else source
        encoded = self.encoder(self.source_dropout(x), source_lengths)
        device = self.output_device(encoded.outputs.device)
        memory = self.decoder.prepare(encoded.outputs.to(device), encoded.mask.to(device),
                                      encoded.summary.to(device), source_lengths)
        return memory, encoded

    def output_device(self, fallback: torch.device) -> torch.device:
        """Where attention, the bridge, the output layer and the loss run: the output
        layer's device (its tied embedding's where it has no parameters of its own), else
        ``fallback``."""
        for module in (self.output, self.target_embedding):
            device = device_of(module) if module is not None else None
            if device is not None:
                return device  # type: ignore[return-value]
        return fallback

    def start(self, memory: Memory, encoded: EncoderOutput) -> DecoderState:
        """The decoder's initial state from the bridge."""
        layers = self.bridge(encoded.states, memory.values)
        # every decoder layer's state lives on that layer's device
        layers = [tuple(t.to(device_of(layer) or t.device) for t in state)
                  for layer, state in zip(self.decoder.layers, layers, strict=True)]
        feed = None
        if self.decoder.input_feeding:
            feed = memory.values.new_zeros(memory.values.shape[0],
                                           self.decoder.attentional.out_features)
        return DecoderState(layers, feed)

    def embed_previous(self, previous: Tensor) -> Tensor | None:
        """Fed inputs: ids (B,) / (B, T) → embeddings; vectors pass through."""
        if not self.decoder.feed_previous:
            return None
        if self.token_mode:
            ids = previous.to(self.target_embedding.weight.device)
            return self.target_dropout(self.target_embedding(ids))
        return previous

    def first_input(self, batch: int, like: Tensor) -> Tensor:
        """What is fed at t = 0: BOS ids (B,) or a zero vector (B, D)."""
        if self.token_mode:
            return torch.full((batch,), BOS_ID, dtype=torch.long, device=like.device)
        return like.new_zeros(batch, self.output_size)

    def _predict(self, features: Tensor, fed: Tensor | None) -> Tensor:
        return self.output(features, None if fed is None else fed.to(features.device))

    def step(self, previous: Tensor, state: DecoderState, memory: Memory) -> StepResult:
        """One decoding step for every row: previous (B,) ids or (B, D) vectors."""
        fed = self.embed_previous(previous)
        out = self.decoder.step(fed, state, memory)
        prediction = self._predict(out.features, fed)
        scores = torch.log_softmax(prediction, dim=-1) if self.token_mode else prediction
        stop = torch.sigmoid(self.stop(out.features)).squeeze(-1) if self.stop is not None \
            else None
        return StepResult(scores, out.state, out.attention, stop, out.top)

    # -- training -------------------------------------------------------------------------
    def forward(self, source: Tensor, source_lengths: Tensor, target: Tensor,
                target_lengths: Tensor, sampling_probability: float = 0.0,
                generator: torch.Generator | None = None) -> ForwardOutputs:
        """Teacher-forced pass. target (B, T) ids or (B, T, D); the input at step t is the
        target at t−1. With ``sampling_probability`` p > 0 (scheduled sampling), each row
        is fed its own previous prediction instead with probability p at every step."""
        memory, encoded = self.encode(source, source_lengths)
        state = self.start(memory, encoded)
        batch, steps = target.shape[0], target.shape[1]
        first = self.first_input(batch, target)
        previous = torch.cat([first.unsqueeze(1), target[:, :-1]], dim=1)  # shifted by one
        device = memory.values.device  # where predictions and the loss are
        mask = target_lengths.to(device)[:, None] > torch.arange(
            steps, device=device)[None, :]  # (B, T)
        if self.decoder.parallel and sampling_probability == 0.0:
            fed = self.embed_previous(previous)  # (B, T, Y)
            features, attention, top, layers = self.decoder.forward_parallel(
                fed, target_lengths, state, memory, steps)
            predictions = self._predict(features, fed)
        elif sampling_probability == 0.0 and self.decoder.fused_teacher_forcing \
                and teacher_forcing.runnable(self.decoder, memory.values):
            fed = self.embed_previous(previous)  # (B, T, Y) or None
            features, attention, top, layers = self.decoder.forward_teacher_forced(
                fed, target_lengths, state, memory, steps)
            predictions = self._predict(features, fed)
        else:
            predictions, attention, top, layers, features = self._loop(
                previous, state, memory, steps, sampling_probability, generator)
        stop_logits = self.stop(features).squeeze(-1) if self.stop is not None else None
        return ForwardOutputs(predictions, mask, attention, stop_logits, encoded, top, layers)

    def _loop(self, previous: Tensor, state: DecoderState, memory: Memory, steps: int,
              sampling_probability: float, generator: torch.Generator | None
              ) -> tuple[Tensor, Tensor | None, Tensor, list[Tensor], Tensor]:
        """Step-by-step teacher forcing (input feeding, attention before, inner sync,
        scheduled sampling). The output layer runs once over all steps afterwards unless
        sampling needs each step's prediction. The reference the fused path
        (:meth:`Decoder.forward_teacher_forced`) is tested against."""
        fed_all = self.embed_previous(previous)  # (B, T, Y) or None
        sampling = sampling_probability > 0.0
        features, attention, tops = [], [], []
        layer_steps: list[list[Tensor]] = []
        predictions = []
        fed = None if fed_all is None else fed_all[:, 0]
        for t in range(steps):
            out = self.decoder.step(fed, state, memory)
            state = out.state
            features.append(out.features)
            tops.append(out.top)
            layer_steps.append(out.layer_outputs)
            if out.attention is not None:
                attention.append(out.attention)
            if sampling:
                predictions.append(self._predict(out.features, fed))
            if t + 1 < steps and fed_all is not None:
                fed = fed_all[:, t + 1]
                if sampling:
                    fed = self._sample_feed(fed, predictions[-1], sampling_probability,
                                            generator)
        stacked = torch.stack(features, dim=1)  # (B, T, F)
        result = torch.stack(predictions, dim=1) if sampling else self._predict(stacked, fed_all)
        layers = [torch.stack(per_layer, dim=1) for per_layer in zip(*layer_steps, strict=True)]
        weights = torch.stack(attention, dim=1) if attention else None
        return result, weights, torch.stack(tops, dim=1), layers, stacked

    def _sample_feed(self, teacher: Tensor, prediction: Tensor, probability: float,
                     generator: torch.Generator | None) -> Tensor:
        """Scheduled sampling: replace each row's fed input by the model's own previous
        prediction with the given probability (gradients do not flow through the choice)."""
        rows = teacher.shape[0]
        use_own = torch.rand(rows, generator=generator, device="cpu").to(teacher.device) \
            < probability
        if self.token_mode:
            own = self.embed_previous(prediction.detach().argmax(dim=-1))
        else:
            own = prediction.detach().to(teacher.device)
        return torch.where(use_own[:, None], own, teacher)

    def loss(self, outputs: ForwardOutputs, target: Tensor,
             label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
        """(summed loss over valid target steps, number of those steps).

        Token mode: cross-entropy (optionally label-smoothed), PAD never counted.
        Continuous: the spec's regression loss summed over dimensions, plus the stop
        head's binary cross-entropy when present."""
        mask = outputs.mask
        target = target.to(outputs.predictions.device)
        count = mask.sum()
        if self.token_mode:
            logits = outputs.predictions.reshape(-1, outputs.predictions.shape[-1])
            total = F.cross_entropy(logits, target.reshape(-1), ignore_index=PAD_ID,
                                    label_smoothing=label_smoothing, reduction="sum")
            return total, count
        per_step = self.regression(outputs.predictions, target).sum(-1)  # (B, T)
        total = (per_step * mask).sum()
        if outputs.stop_logits is not None:
            lengths = mask.sum(1)
            is_last = torch.zeros_like(outputs.stop_logits)
            is_last[torch.arange(len(lengths)), (lengths - 1).clamp(min=0)] = 1.0
            stop = F.binary_cross_entropy_with_logits(outputs.stop_logits, is_last,
                                                      reduction="none")
            total = total + (stop * mask).sum()
        return total, count

    regression_loss: str = "mse"

    def regression(self, prediction: Tensor, target: Tensor) -> Tensor:
        if self.regression_loss == "l1":
            return F.l1_loss(prediction, target, reduction="none")
        if self.regression_loss == "huber":
            return F.huber_loss(prediction, target, reduction="none")
        return F.mse_loss(prediction, target, reduction="none")
