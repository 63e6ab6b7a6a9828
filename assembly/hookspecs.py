"""The hooks a plugin may implement. Each returns a list of component records.

Every hook takes no arguments. The host calls each hook of every registered plugin,
validates every record, and rejects two records of the same kind and name, naming both
sources.
"""

from __future__ import annotations

import pluggy

from assembly.plugin import (
    PROJECT,
    CellPlugin,
    PlacementPlugin,
    RegularizerPlugin,
    SamplerPlugin,
)

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def assembly_cells() -> list[CellPlugin]:
    """Recurrent cells this plugin provides.

    Example::

        >>> import attrs
        >>> from assembly.plugin import CellPlugin, CellSpec, hookimpl
        >>> @attrs.frozen(kw_only=True)
        ... class ScaledSpec(CellSpec):
        ...     scale: float = 1.0
        >>> class Plugin:
        ...     @hookimpl
        ...     def assembly_cells(self):
        ...         return [CellPlugin(name="scaled", spec=ScaledSpec, build=print,
        ...                            parameters=lambda spec, i, h: 4 * h * (i + h + 2))]
        >>> from assembly.registry import make_registry
        >>> "scaled" in make_registry(plugins=[Plugin()], entrypoints=False).names("cell")
        True
    """


@hookspec
def assembly_regularizers() -> list[RegularizerPlugin]:
    """Regularisers and training objectives this plugin provides.

    Example::

        >>> import attrs
        >>> from assembly.plugin import RegularizerPlugin, RegularizerSpec, hookimpl
        >>> @attrs.frozen(kw_only=True)
        ... class L2Spec(RegularizerSpec):
        ...     factor: float = 1e-4
        >>> class Plugin:
        ...     @hookimpl
        ...     def assembly_regularizers(self):
        ...         return [RegularizerPlugin(name="my-l2", spec=L2Spec, build=print)]
        >>> from assembly.registry import make_registry
        >>> "my-l2" in make_registry(plugins=[Plugin()], entrypoints=False).names("regularizer")
        True
    """


@hookspec
def assembly_samplers() -> list[SamplerPlugin]:
    """Decoding strategies this plugin provides.

    Example::

        >>> import attrs
        >>> from assembly.plugin import SamplerPlugin, SamplerSpec, hookimpl
        >>> @attrs.frozen(kw_only=True)
        ... class FirstSpec(SamplerSpec):
        ...     pass
        >>> class Plugin:
        ...     @hookimpl
        ...     def assembly_samplers(self):
        ...         return [SamplerPlugin(name="first", spec=FirstSpec, build=print)]
        >>> from assembly.registry import make_registry
        >>> "first" in make_registry(plugins=[Plugin()], entrypoints=False).names("sampler")
        True
    """


@hookspec
def assembly_placements() -> list[PlacementPlugin]:
    """Device placement strategies this plugin provides.

    Example::

        >>> import attrs
        >>> from assembly.plugin import PlacementPlugin, PlacementSpec, hookimpl
        >>> @attrs.frozen(kw_only=True)
        ... class CpuSpec(PlacementSpec):
        ...     pass
        >>> class Plugin:
        ...     @hookimpl
        ...     def assembly_placements(self):
        ...         return [PlacementPlugin(name="all-cpu", spec=CpuSpec, build=print)]
        >>> from assembly.registry import make_registry
        >>> "all-cpu" in make_registry(plugins=[Plugin()], entrypoints=False).names("placement")
        True
    """


HOOKS = {
    "cell": "assembly_cells",
    "regularizer": "assembly_regularizers",
    "sampler": "assembly_samplers",
    "placement": "assembly_placements",
}
"""Component kind -> hook name."""
