"""Shared by the tests of the teacher-forcing node and of the native code against its
Python twins (test_teacher_forcing, test_native_teacher_forcing, test_decode_native): the
decoder configurations, those the native loops cover, float32 tolerances, and the skip
where the native module cannot be built."""

from __future__ import annotations

from typing import Any

import pytest

from assembly.builtin.cells import LstmSpec
from assembly.nn import native
from assembly.spec import AttentionSpec, BridgeSpec, ContinuousSpec, PeekSpec

FEEDING = AttentionSpec(input_feeding=True)

# the teacher-forcing node's test configurations (test_teacher_forcing)
CONFIGS: dict[str, dict[str, Any]] = {
    "reference-like": {"encoder__bidirectional": True, "bridge": BridgeSpec(type="linear"),
                       "decoder__attention": FEEDING},
    "additive-sized": {"decoder__attention": AttentionSpec(input_feeding=True, size=5)},
    "concat": {"decoder__attention": AttentionSpec(score="concat", input_feeding=True)},
    "dot": {"decoder__attention": AttentionSpec(score="dot", input_feeding=True)},
    "dot-resized": {"encoder__bidirectional": True,
                    "decoder__attention": AttentionSpec(score="dot", input_feeding=True)},
    "general": {"decoder__attention": AttentionSpec(score="general", input_feeding=True)},
    "three-layers": {"depth": (1, 3), "decoder__hidden": (8, 6, 5),
                     "decoder__attention": FEEDING},
    "two-layers-general": {"depth": 2, "encoder__bidirectional": True,
                           "decoder__attention": AttentionSpec(score="general",
                                                               input_feeding=True)},
    "no-bias": {"decoder__cell": LstmSpec(bias=False), "decoder__attention": FEEDING},
    "peek-concat": {"decoder__peek": PeekSpec(mode="concat"), "decoder__attention": FEEDING},
    "peek-add": {"decoder__peek": PeekSpec(mode="add"), "decoder__attention": FEEDING},
    "peek-projected-add": {
        "decoder__peek": PeekSpec(mode="projected-add"), "decoder__attention": FEEDING},
    "nothing-fed": {"decoder__feed_previous": False, "decoder__peek": PeekSpec(),
                    "decoder__attention": FEEDING},
    "zero-bridge": {"bridge": BridgeSpec(type="zero"), "decoder__attention": FEEDING},
    "continuous": {"mode": "continuous",
                   "continuous": ContinuousSpec(input_dim=3, output_dim=2),
                   "decoder__attention": FEEDING},
}
# those the native loops cover (LSTM layers, additive/concat attention)
NATIVE_CONFIGS = {name: CONFIGS[name] for name in (
    "reference-like", "additive-sized", "concat", "three-layers", "no-bias", "peek-concat",
    "nothing-fed", "zero-bridge", "continuous")}
RTOL, ATOL = 2e-5, 2e-6  # float32 rounding; the exp polynomial is ~1 ulp

needs_native = pytest.mark.skipif(native.loops() is None,
                                  reason="the native module could not be built here")
