"""Dropout whose masks are nn.Dropout's, bit for bit, drawn about 10× faster.

On the CPU, torch draws a dropout mask (``empty_like(x).bernoulli_(1 − p).div_(1 − p)``)
one element at a time through its Mersenne Twister, ~6 ns per element here: ~7 % of a
reference training update. :func:`mask_` draws the same mask from the same generator in
native code (``native/dropout.cpp``: the Twister advanced 624 words at a time, the rest
one vectorised pass, ~0.6 ns per element) and leaves the generator where torch's call
would, so a seed gives the same masks, and the same training, either way.

That code follows torch internals; once per process it is checked against torch's own
call (several sizes and keep probabilities, state crossing the Twister's refills) and
used only if every mask and the generator's state afterwards agree. Elsewhere (no native
build, another dtype or device, a non-contiguous buffer, ``ASSEMBLY_NATIVE=0``) torch's
call runs.

:class:`Dropout` is nn.Dropout with that mask (same ``p``, same state dict, same
autograd: ``x * mask``); the model's dropout modules are this class.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from assembly.nn import native

# Below this many elements torch's call is as fast (the native call's fixed cost).
_NATIVE_FROM = 256


def mask_(buffer: Tensor, p: float) -> Tensor:
    """nn.Dropout's mask for drop probability ``p`` written into ``buffer``, which is
    returned: 1 / (1 − p) where kept, 0 where dropped — exactly
    ``buffer.bernoulli_(1 − p).div_(1 − p)``, the same draws from torch's default CPU
    generator."""
    keep = 1 - p
    if (buffer.numel() >= _NATIVE_FROM and buffer.dtype == torch.float32
            and buffer.device.type == "cpu" and buffer.is_contiguous()):
        module = native_module()
        if module is not None and module.dropout_mask_(buffer, keep, _kept_value(keep)):
            return buffer
    return buffer.bernoulli_(keep).div_(keep)


class Dropout(nn.Dropout):
    """nn.Dropout drawing its mask with :func:`mask_` (the same mask, faster on the CPU)."""

    def forward(self, x: Tensor) -> Tensor:
        """x (any shape) → x · mask while training with 0 < p < 1; else nn.Dropout's."""
        if not self.training or self.inplace or not 0 < self.p < 1 or x.numel() == 0:
            return super().forward(x)
        if x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous():
            return super().forward(x)
        return x * mask_(torch.empty_like(x), self.p)


@functools.cache
def _kept_value(keep: float) -> float:
    """What a kept element holds: torch's float32 1 / keep (div_'s own rounding)."""
    return float(torch.ones(1).div_(keep))


def native_module() -> Any:
    """The native module when it is built and its masks agree with torch's here; else None."""
    module = native.loops() if native.enabled() else None
    return module if module is not None and _agrees(module) else None


@functools.cache
def _agrees(module: Any) -> bool:
    """Whether ``module``'s masks equal torch's (masks and the generator's state after
    them), checked once per process on a saved and restored generator state."""
    saved = torch.get_rng_state()
    try:
        for seed, size, keep in ((0, 1, 0.9), (1, 623, 0.9), (2, 1249, 0.5),
                                 (3, 5003, 0.37), (4, 300, 0.999)):
            torch.default_generator.manual_seed(seed)  # the CPU generator only
            torch.rand(seed * 101)  # start somewhere inside the Twister's state
            expected = torch.empty(size).bernoulli_(keep).div_(keep)
            expected_next = torch.rand(5)
            torch.default_generator.manual_seed(seed)
            torch.rand(seed * 101)
            got = torch.empty(size)
            if not module.dropout_mask_(got, keep, _kept_value(keep)):
                return False
            if not (torch.equal(got, expected) and torch.equal(torch.rand(5), expected_next)):
                return False
        return True
    finally:
        torch.set_rng_state(saved)
