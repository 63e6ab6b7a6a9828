"""What the samplers share: the token ids they need, a token-mode guard, and the step from
device tensors to :class:`~assembly.plugin.Hypotheses` (one host transfer at the end)."""

from __future__ import annotations

from typing import Any

from assembly.plugin import EOS_ID, Hypotheses
from torch import Tensor

__all__ = ["EOS_ID", "collect", "require_tokens"]


def require_tokens(model: Any, name: str) -> None:
    """Raise ``ValueError`` unless ``model`` predicts tokens (scores are log-probabilities);
    ``name`` is the sampler's, for the message."""
    if not model.token_mode:
        raise ValueError(f"sampler {name!r} needs a token-mode model (log-probabilities to "
                         "search over); use 'greedy' or 'hidden-average' in continuous mode")


def collect(*, outputs: Tensor, lengths: Tensor, scores: Tensor | None,
            attention: Tensor | None, source_lengths: Tensor, token_mode: bool,
            per_input: int) -> Hypotheses:
    """Hypotheses from padded device tensors, ``per_input`` consecutive hypotheses per input.

    outputs (N, T) ids or (N, T, D) vectors, N = inputs · per_input; lengths (N,) output
    steps (EOS included); scores (N,) or None (continuous: 0.0); attention (N, T, S) or
    None; source_lengths (inputs,). A hypothesis keeps ``lengths[i]`` steps, without a
    final EOS in ``tokens``; its attention keeps every step (EOS included) over its own
    source. Each input's hypotheses are ordered best first by score (stable)."""
    outputs, steps = outputs.cpu(), lengths.tolist()
    values = scores.tolist() if scores is not None else [0.0] * len(steps)
    weights = attention.cpu() if attention is not None else None
    sources = source_lengths.tolist()
    tokens: list[list[list[int]]] = []
    vectors: list[list[Tensor]] = []
    ranked: list[list[float]] = []
    attended: list[list[Tensor | None]] = []
    rows = outputs.tolist() if token_mode else None
    for i, source in enumerate(sources):
        block = range(i * per_input, (i + 1) * per_input)
        order = sorted(block, key=lambda r: -values[r])
        if rows is not None:
            hyps = [rows[r][: steps[r]] for r in order]
            tokens.append([h[:-1] if h and h[-1] == EOS_ID else h for h in hyps])
        else:
            tokens.append([[] for _ in order])
            vectors.append([outputs[r, : steps[r]] for r in order])
        ranked.append([values[r] for r in order])
        attended.append([None if weights is None else weights[r, : steps[r], :source]
                         for r in order])
    return Hypotheses(tokens=tokens, scores=ranked, attention=attended,
                      vectors=None if token_mode else vectors)


def pad_steps(steps: list[tuple[Tensor, Tensor]], rows: int, fill: float | int,
              ) -> Tensor:
    """Scatter per-step rows into one padded tensor: ``steps[t] = (rows_t (R_t,), values_t
    (R_t, ...))`` → (rows, T, ...) with ``fill`` where a row was not active."""
    first = steps[0][1]
    out = first.new_full((rows, len(steps), *first.shape[1:]), fill)
    for t, (index, values) in enumerate(steps):
        out[:, t].index_copy_(0, index, values)
    return out
