"""The simulated devices behave like separate accelerators: real values, device checks."""

from __future__ import annotations

import pytest
import torch

from assembly_placement.virtual import DeviceMismatch, VirtualTensor, real, virtual_devices


def test_values_are_real_and_devices_are_reported() -> None:
    x = torch.randn(4, 3)
    layer = torch.nn.Linear(3, 2)
    expected = layer(x)
    with virtual_devices():
        layer.to("meta:1")
        assert isinstance(layer.weight, VirtualTensor) and str(layer.weight.device) == "meta:1"
        y = layer(x.to("meta:1"))
        assert str(y.device) == "meta:1"
        y.sum().backward()
        assert str(layer.weight.grad.device) == "meta:1"
        assert torch.arange(3, device=y.device).tolist() == [0, 1, 2]
    torch.testing.assert_close(real(y), expected)


def test_mixing_devices_fails_like_an_accelerator() -> None:
    with virtual_devices():
        a, b = torch.ones(2, 2).to("meta:0"), torch.ones(2, 2).to("meta:1")
        with pytest.raises(DeviceMismatch, match="meta:0, meta:1"):
            a + b
        with pytest.raises(DeviceMismatch, match="cpu, meta:0"):
            a + torch.ones(2, 2)
        assert float(real(a + torch.tensor(2.0))[0, 0]) == 3.0  # CPU scalars mix
        moved = b.to(a.device) + a
        assert str(moved.device) == "meta:0" and moved.to("cpu").device.type == "cpu"
