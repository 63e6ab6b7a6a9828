"""Helpers for the sampler tests: small random models, mixed-length batches, and plain
one-row reference decoders (greedy, replay) the samplers are held against."""

from __future__ import annotations

from typing import Any

import torch
from assembly.build import build_model
from assembly.plugin import EOS_ID
from assembly.spec import (
    AttentionSpec,
    BridgeSpec,
    DecoderSpec,
    EncoderSpec,
    Spec,
    TokenSideSpec,
)
from torch import Tensor

VOCAB = 12


def small_spec(*, attention: bool = True, feeding: bool = True, depth: int = 1,
               cell: str = "lstm", vocab: int = VOCAB) -> Spec:
    """A small token model: bi-LSTM encoder, linear bridge, optional attention."""
    from assembly.builtin.cells import GruSpec, LstmSpec

    cell_spec = LstmSpec() if cell == "lstm" else GruSpec()
    return Spec(
        depth=depth,
        source=TokenSideSpec(vocab_size=vocab, embedding=8),
        target=TokenSideSpec(vocab_size=vocab, embedding=8),
        encoder=EncoderSpec(cell=cell_spec, hidden=12, bidirectional=True),
        bridge=BridgeSpec(type="linear"),
        decoder=DecoderSpec(cell=cell_spec, hidden=16, attention=AttentionSpec(
            input_feeding=feeding) if attention else None),
    )


MODEL_KINDS = {
    "attention-feeding": {},
    "no-attention-gru-2": {"attention": False, "depth": 2, "cell": "gru"},
}


def make_model(registry: Any, seed: int, *, sharpness: float = 1.0, **options: Any) -> Any:
    """A random model (see :func:`small_spec`); ``sharpness`` scales the output layer so
    that its distributions are less flat than a fresh initialisation's."""
    model = build_model(small_spec(**options), registry, seed=seed).eval()
    if sharpness != 1.0:
        with torch.no_grad():
            for parameter in model.output.parameters():
                parameter.mul_(sharpness)
    return model


def make_batch(lengths: list[int], seed: int = 0, vocab: int = VOCAB) -> tuple[Tensor, Tensor]:
    """source (B, max) ids ≥ 4 right-padded with PAD, lengths (B,)."""
    generator = torch.Generator().manual_seed(seed)
    source = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        source[row, :length] = torch.randint(4, vocab, (length,), generator=generator)
    return source, torch.tensor(lengths)


def alone(sampler: Any, model: Any, source: Tensor, lengths: Tensor, row: int,
          **options: Any) -> Any:
    """Decode row ``row`` as a batch of one, without padding."""
    length = int(lengths[row])
    return sampler.decode(model, source[row:row + 1, :length], lengths[row:row + 1],
                          **options)


@torch.no_grad()
def reference_greedy(model: Any, source: Tensor, length: int, limit: int
                     ) -> tuple[list[int], float]:
    """Plain one-row greedy decoding (tokens without EOS, summed log-probability)."""
    memory, encoded = model.encode(source[None, :length], torch.tensor([length]))
    state = model.start(memory, encoded)
    previous = model.first_input(1, memory.values)
    tokens, score = [], 0.0
    for _ in range(limit):
        result = model.step(previous, state, memory)
        state = result.state
        best, choice = result.scores.max(dim=-1)
        score += float(best)
        if int(choice) == EOS_ID:
            return tokens, score
        tokens.append(int(choice))
        previous = choice
    return tokens, score


@torch.no_grad()
def replay(model: Any, source: Tensor, length: int, tokens: list[int], *,
           eos: bool = True) -> list[Tensor]:
    """The model's log-probabilities (V,) at every step while feeding ``tokens`` (one row);
    one more step for EOS when ``eos``."""
    memory, encoded = model.encode(source[None, :length], torch.tensor([length]))
    state = model.start(memory, encoded)
    previous = model.first_input(1, memory.values)
    steps = []
    for token in [*tokens, EOS_ID] if eos else tokens:
        result = model.step(previous, state, memory)
        state = result.state
        steps.append(result.scores[0])
        previous = torch.tensor([token])
    return steps


def sequence_logprob(model: Any, source: Tensor, length: int, tokens: list[int],
                     ended: bool) -> float:
    """log p(tokens [+ EOS]) under the model, by replay."""
    feed = [*tokens, EOS_ID] if ended else tokens
    steps = replay(model, source, length, tokens, eos=ended)
    return float(sum(step[token] for step, token in zip(steps, feed, strict=True)))


def limit_of(spec_max: int | None, length: int) -> int:
    return spec_max if spec_max is not None else 2 * length + 10
