"""Several devices simulated on the CPU, to test device placement without accelerators.

Inside ``with virtual_devices():`` the devices ``meta:0``, ``meta:1``, ... behave like
separate accelerators whose tensors really compute (on the CPU, so results equal a CPU
run's), and every operation checks its operands the way a real accelerator does: an
operation mixing tensors of two devices raises :class:`DeviceMismatch` (naming the
operation and the devices), just as ``cuda:0`` with ``cuda:1`` would. Moving data with
``.to(device)``/``copy_`` is the only way across, as on real hardware; 0-dimensional CPU
tensors mix with any device, and the arguments torch requires on the CPU (packed
sequences' batch sizes and lengths) may stay there.

A placement spec that names ``meta:0`` and ``meta:1`` is applied unchanged; its
parameters become virtual tensors reporting those devices::

    with virtual_devices():
        model = placement.apply(build_model(spec))
        outputs = model(source.to(placement.input_device(model)), ...)

Torch only: this module imports nothing from ``assembly``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

VIRTUAL_TYPE = "meta"
"""The device type that stands for the simulated accelerators."""

CPU = torch.device("cpu")
_aten = torch.ops.aten

# Operations whose purpose is to cross devices.
_TRANSFERS = {_aten._to_copy.default, _aten.copy_.default}
# Operations torch runs with some tensor arguments on the CPU whatever the device of the
# data (packed-sequence bookkeeping; indices of advanced indexing).
_CPU_ARGUMENTS_ALLOWED = {
    _aten._pack_padded_sequence.default,
    _aten._pad_packed_sequence.default,
    _aten.index.Tensor,
    _aten.index_put_.default,
    _aten.index_put.default,
}


_HOST_READS = {torch.Tensor.tolist, torch.Tensor.numpy}

# Outputs torch leaves on the CPU whatever the device of the data (by output position).
_CPU_OUTPUTS = {_aten._pack_padded_sequence.default: (1,)}


class DeviceMismatch(RuntimeError):
    """An operation mixed tensors of different (virtual) devices."""


class VirtualTensor(torch.Tensor):
    """A CPU tensor (``elem``) that reports a virtual device."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor, device: torch.device) -> VirtualTensor:
        made = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            cls, elem.shape, strides=elem.stride(), storage_offset=elem.storage_offset(),
            dtype=elem.dtype, layout=elem.layout, device=device,
            requires_grad=elem.requires_grad)
        made.elem = elem
        return made

    def __repr__(self) -> str:  # type: ignore[override]
        return f"VirtualTensor(device={self.device}, {self.elem!r})"

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        if func in _HOST_READS:  # read the values: the CPU tensor behind
            args = tree_map(real, args)
        return torch._C._disabled_torch_function_impl(func, types, args, kwargs or {})

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (),  # type: ignore[override]
                           kwargs: Any = None) -> Any:
        with VirtualDevices():
            return func(*args, **(kwargs or {}))


def _is_virtual(device: Any) -> bool:
    return device is not None and torch.device(device).type == VIRTUAL_TYPE


class VirtualDevices(TorchDispatchMode):
    """The dispatch mode behind :func:`virtual_devices`."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        devices: list[tuple[torch.device, bool, int]] = []  # (device, scalar?, position)
        by_elem: dict[int, VirtualTensor] = {}
        position = [0]

        def unwrap(value: Any) -> Any:
            if isinstance(value, VirtualTensor):
                devices.append((value.device, value.dim() == 0, position[0]))
                by_elem[id(value.elem)] = value
                position[0] += 1
                return value.elem
            if isinstance(value, torch.Tensor):
                devices.append((value.device, value.dim() == 0, position[0]))
                position[0] += 1
            return value

        plain_args = tree_map(unwrap, args)
        plain_kwargs = tree_map(unwrap, kwargs)
        target = plain_kwargs.get("device")
        if _is_virtual(target):
            plain_kwargs["device"] = CPU
        result_device = self._result_device(func, devices, target)
        out = func(*plain_args, **plain_kwargs)

        def wrap(value: Any) -> Any:
            if not isinstance(value, torch.Tensor) or isinstance(value, VirtualTensor):
                return value
            if id(value) in by_elem:  # in-place / out= results: the operand itself
                return by_elem[id(value)]
            if result_device is not None and _is_virtual(result_device):
                return VirtualTensor(value, result_device)
            return value

        kept = _CPU_OUTPUTS.get(func, ())
        if kept and isinstance(out, tuple):
            return tuple(value if index in kept else wrap(value)
                         for index, value in enumerate(out))
        return tree_map(wrap, out)

    @staticmethod
    def _result_device(func: Any, devices: list[tuple[torch.device, bool, int]],
                       target: Any) -> torch.device | None:
        if func in _TRANSFERS:
            if target is not None:
                return torch.device(target)
            return devices[0][0] if devices else None  # copy_: the destination's
        if func in _CPU_ARGUMENTS_ALLOWED:
            considered = [d for d in devices if d[0].type != "cpu" or d[2] == 0]
        else:
            considered = [d for d in devices if not (d[1] and d[0].type == "cpu")]
        found = {d[0] for d in considered}
        if target is not None:
            found.add(torch.device(target))
        if len(found) > 1:
            names = ", ".join(sorted(str(d) for d in found))
            raise DeviceMismatch(f"{func} received tensors on different devices: {names}")
        if found:
            return found.pop()
        return devices[0][0] if devices else None


@contextlib.contextmanager
def virtual_devices() -> Iterator[None]:
    """Simulate the devices ``meta:0``, ``meta:1``, ... for the duration of the block."""
    with VirtualDevices():
        yield


def real(tensor: torch.Tensor) -> torch.Tensor:
    """The CPU tensor behind a virtual one (others unchanged), e.g. to compare values."""
    return tensor.elem if isinstance(tensor, VirtualTensor) else tensor
