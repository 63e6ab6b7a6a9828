"""Built-in placement ``single-device``: the whole model on one device."""

from __future__ import annotations

from typing import Any

import attrs

from assembly.plugin import PlacementPlugin, PlacementSpec, hookimpl


@attrs.frozen(kw_only=True)
class SingleDeviceSpec(PlacementSpec):
    """Everything on ``device`` (``"auto"``: the first CUDA device if any, else the CPU)."""

    device: str = "auto"


def build_single_device(spec: SingleDeviceSpec) -> Any:
    from assembly.placement import SingleDevice

    return SingleDevice(spec)


def describe_single_device(spec: SingleDeviceSpec, plan: Any) -> list[str]:
    return [f"all layers on {spec.device}"]


class BuiltinPlacements:
    @hookimpl
    def assembly_placements(self) -> list[PlacementPlugin]:
        return [
            PlacementPlugin(
                name="single-device",
                spec=SingleDeviceSpec,
                build=build_single_device,
                describe=describe_single_device,
                summary="the whole model on one device",
            )
        ]
