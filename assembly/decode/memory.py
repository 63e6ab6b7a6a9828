"""What a sampler starts from (kept apart so the sampler module stays small)."""

from __future__ import annotations

from typing import Any

import attrs
from torch import Tensor


@attrs.define
class DecodeStart:
    """memory and initial decoder state for B rows; limits (B,) max steps per row; seed
    for seeded samplers (None: unseeded); row_seeds: one seed per row derived from the
    seed and the row's source (see :func:`assembly.decode.sampler.row_seeds`)."""

    memory: Any
    state: Any
    limits: Tensor
    seed: int | None
    row_seeds: list[int] | None = None
