"""Device placement for ``assembly``: ``layer-per-device`` and ``data-parallel``.

========================  ================================================================
``layer-per-device``      a device per encoder / decoder layer, the embeddings and the
                          output side (old ``gpu_for_layer``)
``data-parallel``         one replica per process, DDP via ``assemble train --nproc N`` or
                          ``torchrun``; gloo on the CPU, NCCL on GPUs
========================  ================================================================

Importing this package imports no torch (``assemble check`` stays instant); the
placements load torch when they are built. Installed, the entry point ``placement``
(group ``assembly``) makes them available to every spec::

    [placement]
    type = "layer-per-device"
    encoder = ["cuda:0", "cuda:1"]
    decoder = ["cuda:1", "cuda:2"]

From Python, pass the plugin in::

    from assembly.registry import make_registry
    registry = make_registry(plugins=[PlacementPlugin()], entrypoints=False)
"""

from __future__ import annotations

from typing import Any

from assembly.plugin import PlacementPlugin as PlacementRecord
from assembly.plugin import hookimpl

from assembly_placement.specs import (
    Assignment,
    DataParallelSpec,
    LayerPerDeviceSpec,
    assign,
    assign_for,
    describe_data_parallel,
    describe_layer_per_device,
)

__version__ = "0.1.0"


def build_layer_per_device(spec: LayerPerDeviceSpec) -> Any:
    """The :class:`~assembly_placement.layer_per_device.LayerPerDevice` for ``spec``."""
    from assembly_placement.layer_per_device import LayerPerDevice

    return LayerPerDevice(spec)


def build_data_parallel(spec: DataParallelSpec) -> Any:
    """The :class:`~assembly_placement.data_parallel.DataParallel` for ``spec``."""
    from assembly_placement.data_parallel import DataParallel

    return DataParallel(spec)


class PlacementPlugin:
    """The plugin object the entry point names; stateless."""

    @hookimpl
    def assembly_placements(self) -> list[PlacementRecord]:
        return [
            PlacementRecord(name="layer-per-device", spec=LayerPerDeviceSpec,
                            build=build_layer_per_device, describe=describe_layer_per_device,
                            summary="a device per encoder/decoder layer, embeddings and output"),
            PlacementRecord(name="data-parallel", spec=DataParallelSpec,
                            build=build_data_parallel, describe=describe_data_parallel,
                            summary="one replica per process (DDP; gloo on CPU, NCCL on GPU)"),
        ]


__all__ = [
    "Assignment",
    "DataParallelSpec",
    "LayerPerDeviceSpec",
    "PlacementPlugin",
    "assign",
    "assign_for",
    "build_data_parallel",
    "build_layer_per_device",
]
