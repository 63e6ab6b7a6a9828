"""The sampler contract every decoding strategy follows.

A sampler receives a built model and a batch of sources and returns, per source, its
hypotheses best first. It drives the model only through the step API of
:class:`~assembly.nn.seq2seq.Seq2Seq` (``encode``, ``start``, ``step``, ``first_input``)
and reorders rows with ``Memory.select`` / ``DecoderState.select``. Every sampler is
batched, stops a row at EOS or at its own length limit, and gives a row the same result
alone as inside a mixed batch (seeded samplers: under the same seed, see
:meth:`Sampler.row_generators`).
"""

from __future__ import annotations

import zlib
from typing import Any

import attrs
import torch
from torch import Tensor

from assembly.decode.memory import DecodeStart


@attrs.define
class Hypotheses:
    """Per source row: ``n`` hypotheses, best first.

    tokens[i][k]: ids without BOS/EOS (token mode); vectors[i][k]: (T, D) (continuous);
    scores[i][k]: the sampler's score (log-probability for greedy/sampling/beam);
    attention[i][k]: (T, S_i) weights, or None when the model has no attention."""

    tokens: list[list[list[int]]]
    scores: list[list[float]]
    attention: list[list[Tensor | None]]
    vectors: list[list[Tensor]] | None = None

    def best(self) -> list[list[int]]:
        return [hyps[0] for hyps in self.tokens]


DecodeModel = Any
"""A :class:`~assembly.nn.seq2seq.Seq2Seq` (typed loosely to keep imports light)."""


class Sampler:
    """Base of decoding strategies. Subclasses implement :meth:`search`.

    ``spec`` is the sampler's spec (a :class:`~assembly.plugin.SamplerSpec`)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    def max_lengths(self, model: DecodeModel, source_lengths: Tensor) -> Tensor:
        """Each row's limit on output steps (EOS included): the model's fixed
        ``output_length`` if any, else the spec's ``max_length``, else 2·|source| + 10."""
        if getattr(model, "output_length", None):
            return torch.full_like(source_lengths, model.output_length)
        if self.spec.max_length is not None:
            return torch.full_like(source_lengths, self.spec.max_length)
        return source_lengths * 2 + 10

    @torch.no_grad()
    def decode(self, model: DecodeModel, source: Tensor, source_lengths: Tensor, *,
               seed: int | None = None) -> Hypotheses:
        """Decode a batch: source (B, S) ids or (B, S, D) vectors, lengths (B,)."""
        memory, encoded = model.encode(source, source_lengths)
        state = model.start(memory, encoded)
        limits = self.max_lengths(model, source_lengths).to(memory.values.device)
        start = DecodeStart(memory, state, limits, seed, row_seeds(seed, source, source_lengths))
        return self.search(model, start)

    def search(self, model: DecodeModel, start: DecodeStart) -> Hypotheses:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def row_generators(start: DecodeStart, device: torch.device) -> list[torch.Generator]:
        """One generator per row, seeded from (seed, the row's own source), so a row draws
        the same numbers alone as inside any batch. Unseeded: from torch's generator."""
        seeds = start.row_seeds or [int(torch.randint(0, 2**62, ())) for _ in start.limits]
        return [torch.Generator(device=device).manual_seed(s) for s in seeds]


def row_seeds(seed: int | None, source: Tensor, source_lengths: Tensor) -> list[int] | None:
    """A stable seed per row from the decode seed and the row's valid source content."""
    if seed is None:
        return None
    seeds = []
    for row, length in zip(source, source_lengths.tolist(), strict=True):
        content = row[:length].detach().cpu().numpy().tobytes()
        mixed = zlib.crc32(content, seed & 0xFFFFFFFF) ^ ((hash(seed) & 0x7FFFFFFF) << 32)
        seeds.append(mixed & 0x7FFF_FFFF_FFFF_FFFF)  # torch generators take 63 bits
    return seeds


def trim(ids: list[int], eos: int) -> list[int]:
    """Cut a token list at its first EOS (excluded)."""
    return ids[:ids.index(eos)] if eos in ids else ids
