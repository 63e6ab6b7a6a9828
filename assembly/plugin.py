"""The public plugin API: the one module a plugin imports from.

Everything a plugin needs is here: the ``hookimpl`` marker, the record types it returns
from its hooks, the spec base classes its components derive from, the error types
(``UserError``; ``SpecError`` made of ``Problem`` lines, each with its ``$.path``), and
(imported lazily, so that this module itself imports no torch) the torch base classes of
recurrent layers and the host's functions a plugin's own tools may need: ``load_spec``,
``dump_spec``, ``make_registry`` and ``load_pairs`` (every data split a spec names).

A minimal cell plugin::

    import attrs
    from assembly.plugin import CellPlugin, CellSpec, hookimpl

    @attrs.frozen(kw_only=True)
    class MyCellSpec(CellSpec):
        scale: float = 1.0

    class MyPlugin:
        @hookimpl
        def assembly_cells(self):
            return [CellPlugin(name="my-cell", spec=MyCellSpec, build=build_my_cell,
                               parameters=lambda spec, input_size, hidden: ...)]

and in the plugin distribution's pyproject.toml::

    [project.entry-points.assembly]
    my-cell = "my_package:MyPlugin"

Everything not named in ``__all__`` here is internal and may change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pluggy

from assembly.errors import Problem, SpecError, UserError

PROJECT = "assembly"
"""Names the pluggy project, the hook prefix and the entry-point group."""

hookimpl = pluggy.HookimplMarker(PROJECT)

INITIALIZERS = ("default", "uniform", "orthogonal", "identity")


class _OneOf:
    """An attrs validator: the value must be one of ``allowed`` (kept as an attribute so
    the JSON Schema and ``assemble components`` can list the choices)."""

    def __init__(self, *allowed: str) -> None:
        self.allowed = allowed

    def __call__(self, _instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in self.allowed:
            raise ValueError(f"{attribute.name} must be one of {', '.join(self.allowed)}; "
                             f"got {value!r}")


def _one_of(*allowed: str) -> _OneOf:
    return _OneOf(*allowed)


def _positive(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive; got {value!r}")


def _probability(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must lie in [0, 1]; got {value!r}")


# What each allows, as JSON Schema (``assemble schema`` merges it into the field's schema;
# a plugin's own validator may carry a ``json_schema`` fragment the same way).
_positive.json_schema = {"exclusiveMinimum": 0}  # type: ignore[attr-defined]
_probability.json_schema = {"minimum": 0, "maximum": 1}  # type: ignore[attr-defined]


one_of = _one_of
positive = _positive
probability = _probability


@attrs.frozen(kw_only=True)
class ComponentSpec:
    """Base of every pluggable component's spec.

    In a spec file a component is a table with a ``type`` key naming the plugin component
    and its own typed parameters beside it. The ``type`` is not a field: the registry maps
    it to the spec class and back.
    """


@attrs.frozen(kw_only=True)
class CellSpec(ComponentSpec):
    """Parameters every recurrent cell accepts.

    - ``bias``: ``false`` removes every bias vector of the cell.
    - ``init``: ``default`` (the cell's own), ``uniform`` (±``init_scale``/√hidden),
      ``orthogonal`` (recurrent matrices orthogonal times ``init_scale``) or ``identity``
      (square recurrent matrices set to ``init_scale`` · I).
    - ``gate_bias``: initial value of gate biases (``None``: the cell's default).
    """

    bias: bool = True
    init: str = attrs.field(default="default", validator=_one_of(*INITIALIZERS))
    init_scale: float = attrs.field(default=1.0, validator=_positive)
    gate_bias: float | None = None


@attrs.frozen(kw_only=True)
class RegularizerSpec(ComponentSpec):
    """Base of regulariser / training-objective specs."""


@attrs.frozen(kw_only=True)
class SamplerSpec(ComponentSpec):
    """Base of sampler (decoding strategy) specs. ``max_length`` caps the output length
    (``None``: the model's ``max_output_length`` rule)."""

    max_length: int | None = attrs.field(default=None, validator=_positive)


@attrs.frozen(kw_only=True)
class PlacementSpec(ComponentSpec):
    """Base of placement strategy specs."""


def _hidden_state(spec: Any, hidden: int) -> tuple[int, ...]:
    return (hidden,)


def _same_as_hidden(spec: Any, hidden: int) -> int:
    return hidden


def _check_name(_instance: Any, _attribute: attrs.Attribute, value: str) -> None:
    if not value or not all(c.isalnum() or c in "-_" for c in value) or value != value.lower():
        raise ValueError(
            f"component name must be lower-case letters, digits, '-' or '_': {value!r}"
        )


@attrs.frozen(kw_only=True)
class CellPlugin:
    """A recurrent cell.

    - ``spec``: a subclass of :class:`CellSpec`.
    - ``build(spec, input_size, hidden) -> RecurrentLayer``: one unidirectional layer.
    - ``parameters(spec, input_size, hidden) -> int``: the exact parameter count of what
      ``build`` returns (the planner uses it without torch; the test kit holds them equal).
    - ``state_sizes(spec, hidden) -> tuple[int, ...]``: sizes of the state tensors
      (LSTM: ``(hidden, hidden)`` for h and c). The first one is the "hidden" state.
    - ``output_size(spec, hidden) -> int``: size of the per-step output.
    """

    name: str = attrs.field(validator=_check_name)
    spec: type[CellSpec]
    build: Callable[..., Any]
    parameters: Callable[[Any, int, int], int]
    state_sizes: Callable[[Any, int], tuple[int, ...]] = _hidden_state
    output_size: Callable[[Any, int], int] = _same_as_hidden
    summary: str = ""


@attrs.frozen(kw_only=True)
class RegularizerPlugin:
    """A regulariser or training objective.

    ``build(spec, context: RegularizerContext) -> Regularizer`` (a torch module; see
    :class:`assembly.train.objectives.Regularizer` for the contract).
    ``parameters(spec, context) -> int`` counts any parameters it adds (default 0).
    """

    name: str = attrs.field(validator=_check_name)
    spec: type[RegularizerSpec]
    build: Callable[..., Any]
    parameters: Callable[[Any, Any], int] = lambda spec, context: 0
    summary: str = ""


@attrs.frozen(kw_only=True)
class SamplerPlugin:
    """A decoding strategy: ``build(spec) -> Sampler`` (see
    :class:`assembly.decode.sampler.Sampler`)."""

    name: str = attrs.field(validator=_check_name)
    spec: type[SamplerSpec]
    build: Callable[..., Any]
    summary: str = ""


@attrs.frozen(kw_only=True)
class PlacementPlugin:
    """A device placement strategy: ``build(spec) -> Placement`` (see
    :class:`assembly.placement.Placement`); ``describe(spec, plan) -> list[str]`` gives
    the lines ``assemble check`` prints."""

    name: str = attrs.field(validator=_check_name)
    spec: type[PlacementSpec]
    build: Callable[..., Any]
    describe: Callable[[Any, Any], list[str]] = lambda spec, plan: []
    summary: str = ""


@attrs.frozen(kw_only=True)
class RegularizerContext:
    """What a regulariser is told when it is built: the model's planned sizes."""

    encoder_sizes: tuple[int, ...]
    decoder_sizes: tuple[int, ...]
    output_size: int
    token_mode: bool


KINDS: dict[str, tuple[type, type]] = {
    "cell": (CellPlugin, CellSpec),
    "regularizer": (RegularizerPlugin, RegularizerSpec),
    "sampler": (SamplerPlugin, SamplerSpec),
    "placement": (PlacementPlugin, PlacementSpec),
}
"""Component kind -> (record type, spec base class)."""

_LAZY = {
    "RecurrentLayer": "assembly.nn.layers",
    "CellLayer": "assembly.nn.layers",
    "init_recurrent": "assembly.nn.layers",
    "Sampler": "assembly.decode.sampler",
    "Hypotheses": "assembly.decode.sampler",
    "DecodeModel": "assembly.decode.sampler",
    "Regularizer": "assembly.train.objectives",
    "ForwardOutputs": "assembly.nn.seq2seq",
    "Placement": "assembly.placement",
    "resolve_device": "assembly.placement",
    "DecodeStart": "assembly.decode.memory",
    "row_seeds": "assembly.decode.sampler",
    "trim": "assembly.decode.sampler",
    "Memory": "assembly.nn.decoder",
    "DecoderState": "assembly.nn.decoder",
    "StepResult": "assembly.nn.seq2seq",
    "Seq2Seq": "assembly.nn.seq2seq",
    "PAD_ID": "assembly.data.vocab",
    "BOS_ID": "assembly.data.vocab",
    "EOS_ID": "assembly.data.vocab",
    "UNK_ID": "assembly.data.vocab",
    "load_run": "assembly.run",
    "LoadedRun": "assembly.run",
    # the spec files and the registry import this module: they come on first use
    "load_spec": "assembly.spec.io",
    "dump_spec": "assembly.spec.io",
    "make_registry": "assembly.registry",
    "load_pairs": "assembly.train.data_setup",
}


def __getattr__(name: str) -> Any:
    """Torch-side base classes and the host's functions, imported on first use so this
    module stays torch-free (and free of import cycles)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = [
    "INITIALIZERS",
    "KINDS",
    "PROJECT",
    "CellPlugin",
    "CellSpec",
    "ComponentSpec",
    "PlacementPlugin",
    "PlacementSpec",
    "Problem",
    "RegularizerContext",
    "RegularizerPlugin",
    "RegularizerSpec",
    "SamplerPlugin",
    "SamplerSpec",
    "SpecError",
    "UserError",
    "hookimpl",
    "one_of",
    "positive",
    "probability",
    *_LAZY,
]
