"""Output layers: features → logits (token mode) or vectors (continuous mode)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from assembly.nn.attention import resizer


class LinearOutput(nn.Module):
    """logits = W o + b. With ``tied`` W is the target embedding matrix (V, E), and o is
    resized to E first where its size differs."""

    def __init__(self, features: int, classes: int, bias: bool,
                 tied: nn.Embedding | None = None) -> None:
        super().__init__()
        self.tied = tied is not None
        if tied is not None:
            self.resize = resizer(features, tied.embedding_dim, bias=False)
            self._embedding = [tied]  # a list: not a submodule, so not counted twice
            self.bias = nn.Parameter(tied.weight.new_zeros(classes)) if bias else None
        else:
            self.proj = nn.Linear(features, classes, bias=bias)

    def forward(self, features: Tensor, previous: Tensor | None = None) -> Tensor:
        """features (..., F) → (..., V). ``previous`` (the fed input) is unused here."""
        if self.tied:
            return F.linear(self.resize(features), self._embedding[0].weight, self.bias)
        return self.proj(features)


class MaxoutOutput(nn.Module):
    """Bahdanau's deep output: t = maxout_pieces(W_t [o; y_{t−1}] + b), logits = W t.

    ``o`` holds the decoder state and, where the decoder uses it, the context; ``y_{t−1}``
    is the fed previous target embedding (left out when nothing is fed)."""

    def __init__(self, features: int, previous: int, size: int, pieces: int, classes: int,
                 bias: bool, tied: nn.Embedding | None = None) -> None:
        super().__init__()
        self.pieces = pieces
        self.size = size
        self.uses_previous = previous > 0
        self.pre = nn.Linear(features + previous, size * pieces)
        self.out = LinearOutput(size, classes, bias, tied)

    def forward(self, features: Tensor, previous: Tensor | None = None) -> Tensor:
        import torch

        x = torch.cat([features, previous], dim=-1) if self.uses_previous else features
        t = self.pre(x)  # (..., size·pieces)
        t = t.view(*t.shape[:-1], self.size, self.pieces).amax(dim=-1)  # (..., size)
        return self.out(t)
