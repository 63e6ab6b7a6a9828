"""assembly.nn.dropout: the natively drawn masks are nn.Dropout's, bit for bit, and leave
torch's generator where torch's own call leaves it; where the native code is not built or
disagrees with torch, torch's call runs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from assembly.nn import dropout, native
from assembly.nn.dropout import Dropout, mask_

needs_native = pytest.mark.skipif(native.loops() is None,
                                  reason="the native module could not be built here")


def _torch_mask(size: int, p: float) -> torch.Tensor:
    return torch.empty(size).bernoulli_(1 - p).div_(1 - p)


@needs_native
def test_the_native_masks_are_checked_and_used_here() -> None:
    assert dropout.native_module() is native.loops()


# sizes across the native threshold, the Twister's 624-word refills (312 elements) and the
# 2,048-element passes; offsets start the draws at different places in the state
@pytest.mark.parametrize("size", [1, 255, 256, 311, 313, 2048, 2049, 70_001])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.77])
@pytest.mark.parametrize("offset", [0, 5, 623])
def test_mask_equals_torchs_call_and_leaves_the_same_generator_state(
        size: int, p: float, offset: int) -> None:
    torch.manual_seed(size + offset)
    torch.rand(offset)
    expected = _torch_mask(size, p)
    expected_state = torch.get_rng_state()
    torch.manual_seed(size + offset)
    torch.rand(offset)
    got = mask_(torch.empty(size), p)
    assert torch.equal(got, expected)
    assert torch.equal(torch.get_rng_state(), expected_state)
    scale = float(torch.ones(1).div_(1 - p))
    assert set(got.unique().tolist()) <= {0.0, scale}
    if size >= 2048:  # the defining property: a fraction 1 − p kept, scaled by 1 / (1 − p)
        assert abs(int((got == scale).sum()) / size - (1 - p)) < 0.05
        assert abs(scale - 1 / (1 - p)) < 1e-6


def test_mask_of_other_dtypes_and_layouts_is_torchs() -> None:
    for buffer in (torch.empty(3000, dtype=torch.float64), torch.empty(50, 60).t()):
        torch.manual_seed(7)
        expected = buffer.clone().bernoulli_(0.8).div_(0.8)
        torch.manual_seed(7)
        assert torch.equal(mask_(buffer, 0.2), expected)


@pytest.mark.parametrize("shape", [(4, 9, 32), (3, 1000)])
def test_dropout_module_equals_nn_dropout_forward_and_backward(shape: tuple[int, ...]
                                                               ) -> None:
    ours, reference = Dropout(0.3), nn.Dropout(0.3)
    assert ours.state_dict() == reference.state_dict() and isinstance(ours, nn.Dropout)
    x = torch.randn(shape, requires_grad=True)
    torch.manual_seed(11)
    expected = reference(x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    torch.manual_seed(11)
    got = ours(x)
    (got_grad,) = torch.autograd.grad(got.square().sum(), x)
    assert torch.equal(got, expected) and torch.equal(got_grad, expected_grad)
    assert 0 < int((got == 0).sum()) < got.numel()


def test_dropout_module_outside_training_and_at_the_edges_is_nn_dropouts() -> None:
    x = torch.randn(5, 700)
    evaluating = Dropout(0.5).eval()
    assert torch.equal(evaluating(x), x)
    assert torch.equal(Dropout(0.0)(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    torch.manual_seed(3)
    expected = nn.Dropout(0.4)(x.t())  # not contiguous: torch's own path
    torch.manual_seed(3)
    assert torch.equal(Dropout(0.4)(x.t()), expected)


class _WrongModule:
    """A native module whose masks are not torch's (a torch that changed its sampler)."""

    def dropout_mask_(self, mask: torch.Tensor, keep: float, scale: float) -> bool:
        mask.fill_(scale)
        return True


def test_a_native_module_that_disagrees_with_torch_is_not_used(monkeypatch: Any) -> None:
    wrong = _WrongModule()
    monkeypatch.setattr(native, "loops", lambda: wrong)
    torch.manual_seed(5)
    torch.rand(17)
    state = torch.get_rng_state()
    assert dropout.native_module() is None
    assert torch.equal(torch.get_rng_state(), state)  # the check restores the generator
    torch.manual_seed(9)
    expected = _torch_mask(5000, 0.25)
    torch.manual_seed(9)
    assert torch.equal(mask_(torch.empty(5000), 0.25), expected)


def test_without_native_code_torchs_call_runs(monkeypatch: Any) -> None:
    monkeypatch.setenv("ASSEMBLY_NATIVE", "0")
    assert dropout.native_module() is None
    torch.manual_seed(2)
    expected = _torch_mask(4000, 0.1)
    torch.manual_seed(2)
    assert torch.equal(mask_(torch.empty(4000), 0.1), expected)
