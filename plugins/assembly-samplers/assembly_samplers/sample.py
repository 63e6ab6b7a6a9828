"""Ancestral sampling inside the decoding loop (sampler ``sample``).

At every step each row draws its next token from the model's distribution, sharpened or
flattened by the temperature and optionally truncated (top-k, then top-p), and that
token is fed back as the next input — the draw happens *inside* the loop, unlike the old
add-on's post-hoc "temperature" that was not a valid categorical draw.

The draw is an exact categorical draw by inverse transform sampling: with the filtered,
renormalised probabilities p (cumulative sums c) and a uniform u ∈ [0, 1), the token is
the first k with c_k > u · c_V, so P(k) = p_k and a token of probability 0 is never
drawn. Each row's uniforms come from its own generator
(:meth:`~assembly.plugin.Sampler.row_generators`, seeded from the decode seed and the
row's source), drawn once per decode on the CPU: a row gets the same samples alone as in
any batch and on any device, and the step loop draws no random numbers at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from assembly_samplers._common import require_tokens
from assembly_samplers._rows import RowSampler

if TYPE_CHECKING:
    from assembly.plugin import DecodeStart


def filtered_probabilities(scores: Tensor, temperature: float = 1.0, top_k: int = 0,
                           top_p: float = 1.0) -> tuple[Tensor, Tensor | None]:
    """The distribution a row samples from.

    scores (R, V) log-probabilities → (probabilities (R, V') in float64, index (R, V') or
    None). With top-k or top-p the probabilities are over the kept candidates sorted by
    decreasing probability and ``index`` maps them to token ids (V' = k for top-k);
    without, they are over the whole vocabulary in id order and ``index`` is None.
    Filtered-out candidates have probability 0; the rest sum to 1.

    Order: temperature, then the k most probable tokens (exactly k), then the smallest
    prefix of them whose renormalised mass reaches ``top_p`` (always at least one)."""
    logits = scores.double()
    if temperature != 1.0:
        logits = logits / temperature
    vocab = logits.shape[-1]
    index = None
    if 0 < top_k < vocab:
        logits, index = logits.topk(top_k, dim=-1)  # (R, k), sorted descending
    elif top_p < 1.0:
        logits, index = logits.sort(dim=-1, descending=True)
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        before = probs.cumsum(dim=-1) - probs  # mass of the more probable candidates
        probs = probs.masked_fill(before >= top_p, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs, index


def draw(probs: Tensor, index: Tensor | None, uniforms: Tensor) -> Tensor:
    """Inverse-transform categorical draw: probs (R, V') (any non-negative weights, not all
    zero), index (R, V') or None (see :func:`filtered_probabilities`), uniforms (R,) in
    [0, 1) → (R,) token ids. P(candidate k) = probs_k / Σ probs."""
    cdf = probs.cumsum(dim=-1)  # (R, V')
    total = cdf[:, -1:]  # (R, 1)
    position = torch.searchsorted(cdf, uniforms[:, None].to(cdf) * total, right=True)
    # u · total may round up to total: fall back to the last candidate of positive mass
    last = (cdf < total).sum(dim=-1, keepdim=True)
    position = torch.minimum(position, last)  # (R, 1)
    chosen = position if index is None else index.gather(1, position)
    return chosen[:, 0]


class AncestralSampler(RowSampler):
    """``sample``: see the module docstring and
    :class:`~assembly_samplers.specs.SampleSpec`. Scores are each sample's log-probability
    under the model itself (temperature 1, unfiltered)."""

    uniforms: Tensor

    def copies(self) -> int:
        return int(self.spec.n)

    def begin(self, model: Any, start: DecodeStart, rows: int, device: torch.device) -> None:
        require_tokens(model, "sample")
        copies = self.copies()
        limits = start.limits.tolist()
        generators = self.row_generators(start, torch.device("cpu"))
        uniforms = torch.zeros(len(limits), copies, max(limits), dtype=torch.float64)
        for row, (generator, limit) in enumerate(zip(generators, limits, strict=True)):
            uniforms[row, :, :limit] = torch.rand(copies, limit, generator=generator,
                                                  dtype=torch.float64)
        self.uniforms = uniforms.view(rows, -1).to(device)  # (rows, T): row i·n + j

    def choose(self, scores: Tensor, rows: Tensor, step: int) -> Tensor:
        spec = self.spec
        probs, index = filtered_probabilities(scores, spec.temperature, spec.top_k, spec.top_p)
        return draw(probs, index, self.uniforms[rows, step])
