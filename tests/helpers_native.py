"""Shared by the tests of the native code against its Python twins
(test_native_teacher_forcing, test_decode_native): the decoder configurations the native
loops cover, float32 tolerances, and the skip where the module cannot be built."""

from __future__ import annotations

from typing import Any

import pytest

from assembly.builtin.cells import LstmSpec
from assembly.nn import native
from assembly.spec import AttentionSpec, BridgeSpec, ContinuousSpec, PeekSpec

FEEDING = AttentionSpec(input_feeding=True)
RTOL, ATOL = 2e-5, 2e-6  # float32 rounding; the exp polynomial is ~1 ulp

CONFIGS: dict[str, dict[str, Any]] = {
    "reference-like": {"encoder__bidirectional": True, "bridge": BridgeSpec(type="linear"),
                       "decoder__attention": FEEDING},
    "additive-sized": {"decoder__attention": AttentionSpec(input_feeding=True, size=5)},
    "concat": {"decoder__attention": AttentionSpec(score="concat", input_feeding=True)},
    "three-layers": {"depth": (1, 3), "decoder__hidden": (8, 6, 5),
                     "decoder__attention": FEEDING},
    "no-bias": {"decoder__cell": LstmSpec(bias=False), "decoder__attention": FEEDING},
    "peek-concat": {"decoder__peek": PeekSpec(mode="concat"), "decoder__attention": FEEDING},
    "nothing-fed": {"decoder__feed_previous": False, "decoder__peek": PeekSpec(),
                    "decoder__attention": FEEDING},
    "zero-bridge": {"bridge": BridgeSpec(type="zero"), "decoder__attention": FEEDING},
    "continuous": {"mode": "continuous",
                   "continuous": ContinuousSpec(input_dim=3, output_dim=2),
                   "decoder__attention": FEEDING},
}

needs_native = pytest.mark.skipif(native.loops() is None,
                                  reason="the native module could not be built here")
