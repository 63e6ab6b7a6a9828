"""The plugin author's test kit: one call checks a component against the host's contracts.

A plugin's own tests import this module::

    from assembly.testing import check_cell_plugin
    from my_package import MyPlugin

    def test_my_cell():
        (record,) = MyPlugin().assembly_cells()
        check_cell_plugin(record)

Every check raises :class:`AssertionError` with a message naming the component and what
disagrees (never a bare ``assert``, so ``python -O`` does not skip them).

- :func:`check_cell_plugin`: the record passes the registry's validation (strict), its
  spec round-trips through TOML and JSON inside a whole :class:`~assembly.spec.Spec`, and
  the torch side holds: the built layer's sizes and parameter count match the record's
  formulas, ``forward`` and ``step`` give the planned shapes and agree with each other,
  padding never changes a sequence's outputs or final state, gradients reach every
  parameter, and a whole model using the cell (bidirectional encoder, attention, two
  layers of different sizes) matches its plan row by row.
- :func:`check_plugin`: a whole plugin object: it registers strictly and every record its
  hooks return passes the check of its kind.
- :func:`check_sampler_plugin`, :func:`check_regularizer_plugin`,
  :func:`check_placement_plugin`: the record and spec round-trip checks only, for now.
  The torch-side contracts of samplers, regularisers and placements are still being
  written; their checks will join these functions without changing their signatures.

Helpers the core's own tests use too: :func:`make_spec` (a small valid token-mode spec,
with nested overrides), :func:`random_batch` (a padded batch for a spec) and
:func:`spec_strategy` (hypothesis strategy of valid random specs; needs ``hypothesis``).

Only the spec and registry parts are imported at module level; torch is imported by the
checks that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from assembly import hookspecs
from assembly.errors import PluginError, SpecError
from assembly.plugin import (
    KINDS,
    CellPlugin,
    ComponentSpec,
    PlacementPlugin,
    RegularizerPlugin,
    SamplerPlugin,
    hookimpl,
)
from assembly.registry import Registry, make_registry
from assembly.spec.io import dumps_spec, loads_spec, spec_hash, spec_to_dict
from assembly.spec.model import (
    DataSpec,
    DecoderSpec,
    EncoderSpec,
    Spec,
    TokenSideSpec,
    TrainingSpec,
)
from assembly.spec.validate import check_spec

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = [
    "Batch",
    "check_cell_plugin",
    "check_placement_plugin",
    "check_plugin",
    "check_regularizer_plugin",
    "check_sampler_plugin",
    "make_spec",
    "random_batch",
    "registry_with",
    "spec_strategy",
]

ATOL = 1e-5
"""Absolute tolerance of the numeric comparisons (float32)."""

RTOL = 1e-4
"""Relative tolerance of the numeric comparisons (float32)."""


# -- small specs ------------------------------------------------------------------------
def _base_spec() -> Spec:
    """The kit's small token-mode spec: 8 symbols + 4 specials, one layer of 8 units."""
    return Spec(
        name="kit",
        mode="tokens",
        depth=1,
        source=TokenSideSpec(vocab_size=12, embedding=8),
        target=TokenSideSpec(vocab_size=12, embedding=8),
        encoder=EncoderSpec(hidden=8),
        decoder=DecoderSpec(hidden=8),
        training=TrainingSpec(epochs=1, batch_size=8),
        data=DataSpec(task="reverse", symbols=8, train_size=64, dev_size=16, test_size=16,
                      min_length=2, max_length=6),
    )


def make_spec(*, registry: Registry | None = None, **overrides: Any) -> Spec:
    """A small, valid token-mode :class:`Spec` (vocabularies of 12, one layer of 8 LSTM
    units per side, the ``reverse`` task with 8 symbols), with ``overrides`` applied.

    A key names a field of :class:`Spec`; ``__`` reaches into nested sections, e.g.
    ``make_spec(depth=(2, 3), encoder__bidirectional=True, decoder__cell=GruSpec())``.
    A nested key under a section that is ``None`` (``decoder__attention__score``) needs
    the section given first (``decoder__attention=AttentionSpec()``). The result passes
    :func:`~assembly.spec.validate.check_spec` (else :class:`SpecError` says why)."""
    spec = _base_spec()
    # shallower keys first, so that a section set to an object can then be refined
    for key in sorted(overrides, key=lambda k: k.count("__")):
        spec = _evolve_path(spec, key.split("__"), overrides[key], key)
    problems = check_spec(spec, registry)
    if problems:
        raise SpecError(problems, "<make_spec>")
    return spec


def _evolve_path(obj: Any, path: list[str], value: Any, key: str) -> Any:
    name, rest = path[0], path[1:]
    if obj is None or not attrs.has(type(obj)):
        raise TypeError(f"make_spec: cannot set {key!r}: the section holding {name!r} is "
                        f"{obj!r}; give the section itself first")
    if name not in attrs.fields_dict(type(obj)):
        allowed = ", ".join(attrs.fields_dict(type(obj)))
        raise TypeError(f"make_spec: {type(obj).__name__} has no field {name!r} "
                        f"(in {key!r}); fields: {allowed}")
    if rest:
        value = _evolve_path(getattr(obj, name), rest, value, key)
    return attrs.evolve(obj, **{name: value})


# -- registries -------------------------------------------------------------------------
_RECORD_KIND: dict[type, str] = {record: kind for kind, (record, _base) in KINDS.items()}


def registry_with(record: Any, *, strict: bool = True) -> Registry:
    """A registry holding the built-ins and ``record`` (no entry points), validated.

    A record equal to a built-in one (the kit run on ``lstm``) is not injected twice.
    Any registry complaint (a bad record, a duplicate name) raises AssertionError."""
    kind = _kind_of(record)
    try:
        base = make_registry(entrypoints=False, strict=strict)
        if record.name in base.names(kind) and base.get(kind, record.name) == record:
            return base
        registry = make_registry(plugins=[_plugin_for(kind, record)], entrypoints=False,
                                 strict=strict)
    except PluginError as error:
        raise AssertionError(f"{kind} {record.name!r}: the registry rejects it: {error}") \
            from error
    _expect(record.name in registry.names(kind),
            f"{kind} {record.name!r}: not registered; registry failures: "
            f"{[f.render() for f in registry.failures]}")
    return registry


def _kind_of(record: Any) -> str:
    kind = _RECORD_KIND.get(type(record))
    if kind is None:
        expected = ", ".join(t.__name__ for t in _RECORD_KIND)
        raise AssertionError(f"expected a component record ({expected}), got "
                             f"{type(record).__name__}")
    return kind


def _plugin_for(kind: str, record: Any) -> Any:
    """A plugin object whose one hook returns ``[record]``."""
    hook = hookspecs.HOOKS[kind]

    def provide(self: Any) -> list[Any]:
        return [record]

    provide.__name__ = hook
    cls = type(f"assembly.testing[{record.name}]", (), {hook: hookimpl(provide)})
    return cls()


# -- record and spec checks -------------------------------------------------------------
def _component_spec(record: Any, spec: ComponentSpec | None) -> ComponentSpec:
    kind = _kind_of(record)
    if spec is None:
        try:
            spec = record.spec()
        except Exception as error:
            raise AssertionError(
                f"{kind} {record.name!r}: {record.spec.__name__}() fails without arguments "
                f"({type(error).__name__}: {error}); pass spec=... to the check") from error
    _expect(isinstance(spec, record.spec),
            f"{kind} {record.name!r}: the spec given is a {type(spec).__name__}, "
            f"not a {record.spec.__name__}")
    return spec


def check_round_trip(spec: Spec, registry: Registry, label: str = "spec") -> None:
    """``spec`` dumps to TOML and JSON and loads back equal, with a stable text and hash."""
    try:
        digest = spec_hash(spec, registry)
    except Exception as error:
        raise AssertionError(f"{label}: the spec cannot be hashed "
                             f"({type(error).__name__}: {error})") from error
    for fmt in ("toml", "json"):
        try:
            text = dumps_spec(spec, fmt, registry)
        except Exception as error:
            raise AssertionError(f"{label}: the spec cannot be written as {fmt.upper()} "
                                 f"({type(error).__name__}: {error}); a None value must "
                                 f"mean the field's default (TOML has no null)") from error
        try:
            back = loads_spec(text, fmt, registry, source=f"<{label} as {fmt}>")
        except SpecError as error:
            raise AssertionError(f"{label}: the dumped {fmt.upper()} does not load back:\n"
                                 f"{error}\n--- dumped text ---\n{text}") from error
        _expect(back == spec, f"{label}: load(dump(spec)) differs from the spec ({fmt}):\n"
                              f"  spec:   {spec!r}\n  loaded: {back!r}")
        _expect(dumps_spec(back, fmt, registry) == text,
                f"{label}: dumping the loaded spec gives a different {fmt.upper()} text")
        _expect(spec_hash(back, registry) == digest,
                f"{label}: the loaded spec hashes differently ({fmt})")


def _check_component(record: Any, spec: ComponentSpec | None,
                     place: Callable[[ComponentSpec], dict[str, Any]],
                     table: Callable[[dict[str, Any]], Any]) -> tuple[Registry, Spec]:
    kind = _kind_of(record)
    registry = registry_with(record)
    component = _component_spec(record, spec)
    try:
        whole = make_spec(registry=registry, **place(component))
    except SpecError as error:
        raise AssertionError(f"{kind} {record.name!r}: a spec using it is invalid:\n{error}") \
            from error
    written = table(spec_to_dict(whole, registry))
    _expect(isinstance(written, dict) and written.get("type") == record.name,
            f"{kind} {record.name!r}: dumped as {written!r}, expected a table with "
            f"type = {record.name!r}")
    check_round_trip(whole, registry, f"{kind} {record.name!r}")
    return registry, whole


def check_sampler_plugin(record: SamplerPlugin, *, spec: ComponentSpec | None = None) -> None:
    """Check a sampler record: registry validation (strict) and the spec round trip as a
    spec's ``[sampler]``. (The decoding contract's checks are still to come.)"""
    _expect(isinstance(record, SamplerPlugin),
            f"expected a SamplerPlugin, got {type(record).__name__}")
    _check_component(record, spec, lambda s: {"sampler": s}, lambda d: d.get("sampler"))


def check_regularizer_plugin(record: RegularizerPlugin, *,
                             spec: ComponentSpec | None = None) -> None:
    """Check a regulariser record: registry validation (strict) and the spec round trip
    as an entry of a spec's ``regularizers``. (The torch-side checks are still to come.)"""
    _expect(isinstance(record, RegularizerPlugin),
            f"expected a RegularizerPlugin, got {type(record).__name__}")
    _check_component(record, spec, lambda s: {"regularizers": (s,)},
                     lambda d: (d.get("regularizers") or [None])[0])


def check_placement_plugin(record: PlacementPlugin, *,
                           spec: ComponentSpec | None = None) -> None:
    """Check a placement record: registry validation (strict) and the spec round trip as a
    spec's ``[placement]``. (The device-side checks are still to come.)"""
    _expect(isinstance(record, PlacementPlugin),
            f"expected a PlacementPlugin, got {type(record).__name__}")
    _check_component(record, spec, lambda s: {"placement": s}, lambda d: d.get("placement"))


def check_plugin(plugin: Any, *, specs: Mapping[type, ComponentSpec] | None = None) -> None:
    """Check a whole plugin object (or class, instantiated without arguments): it registers
    strictly beside the built-ins, provides at least one component, and every record its
    hooks return passes the check of its kind. ``specs`` maps a spec class to the example
    spec to check it with (needed where the class has required fields)."""
    from assembly.builtin import BUILTIN_PLUGINS

    instance = plugin() if isinstance(plugin, type) else plugin
    builtin = any(type(b) is type(instance) for b in BUILTIN_PLUGINS.values())
    try:
        make_registry(plugins=[] if builtin else [instance], entrypoints=False, strict=True)
    except PluginError as error:
        raise AssertionError(f"plugin {type(instance).__name__}: the registry rejects it: "
                             f"{error}") from error
    checks: dict[str, Callable[..., None]] = {
        "cell": check_cell_plugin, "sampler": check_sampler_plugin,
        "regularizer": check_regularizer_plugin, "placement": check_placement_plugin}
    found = 0
    for kind, hook in hookspecs.HOOKS.items():
        method = getattr(instance, hook, None)
        if method is None:
            continue
        for record in method() or ():
            example = (specs or {}).get(getattr(record, "spec", None))  # type: ignore[arg-type]
            checks[kind](record, spec=example)
            found += 1
    _expect(found > 0, f"plugin {type(instance).__name__}: its hooks return no component")


# -- cells ------------------------------------------------------------------------------
def check_cell_plugin(record: CellPlugin, *, input_sizes: Sequence[int] = (3, 8),
                      hidden_sizes: Sequence[int] = (4, 8), seed: int = 0,
                      spec: ComponentSpec | None = None) -> None:
    """Check a cell record against every contract the host relies on.

    ``spec``: the cell spec to check (default: the record's spec class with its
    defaults). Every (input size, hidden size) pair is built and checked; see the module
    docstring for the list of checks."""
    _expect(isinstance(record, CellPlugin), f"expected a CellPlugin, got {type(record).__name__}")
    registry, _whole = _check_component(
        record, spec, lambda s: {"encoder__cell": s, "decoder__cell": s},
        lambda d: d.get("encoder", {}).get("cell"))
    cell = _component_spec(record, spec)
    label = f"cell {record.name!r}"
    for input_size in input_sizes:
        for hidden in hidden_sizes:
            _check_layer(record, cell, input_size, hidden, seed, label)
    _check_cell_model(record, cell, registry, tuple(hidden_sizes), seed, label)


def _check_layer(record: CellPlugin, cell: Any, input_size: int, hidden: int, seed: int,
                 label: str) -> None:
    import torch

    from assembly.build import count_parameters
    from assembly.nn.layers import RecurrentLayer

    where = f"{label} (input {input_size}, hidden {hidden})"
    torch.manual_seed(seed)
    layer = record.build(cell, input_size, hidden)
    _expect(isinstance(layer, RecurrentLayer),
            f"{where}: build returned a {type(layer).__name__}, not a RecurrentLayer")
    output_size = record.output_size(cell, hidden)
    state_sizes = tuple(record.state_sizes(cell, hidden))
    for name, got, want in (("input_size", getattr(layer, "input_size", None), input_size),
                            ("hidden_size", getattr(layer, "hidden_size", None), hidden),
                            ("output_size", getattr(layer, "output_size", None), output_size),
                            ("state_sizes", tuple(getattr(layer, "state_sizes", ())),
                             state_sizes)):
        _expect(got == want, f"{where}: layer.{name} is {got!r}, the record says {want!r}")
    counted = count_parameters(layer)
    formula = record.parameters(cell, input_size, hidden)
    _expect(counted == formula,
            f"{where}: the module has {counted} parameters, the parameters formula says "
            f"{formula}")

    layer.eval()
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 2, 4, 1])
    batch, steps = len(lengths), int(lengths.max())
    x = torch.randn(batch, steps, input_size, generator=generator)
    valid = torch.arange(steps)[None, :] < lengths[:, None]  # (B, T)
    x = x * valid[..., None]
    start = tuple(torch.randn(batch, s, generator=generator) for s in state_sizes)

    with torch.no_grad():
        for initial in (None, start):
            outputs, final = layer(x, lengths, initial)
            _check_shapes(where, outputs, final, batch, steps, output_size, state_sizes)
            _expect(bool((outputs[~valid] == 0).all()),
                    f"{where}: forward's outputs are not zero at padded steps")
            # step by step from the same state
            state = initial if initial is not None else layer.initial_state(batch, x)
            _expect(tuple(tuple(t.shape) for t in state)
                    == tuple((batch, s) for s in state_sizes),
                    f"{where}: initial_state shapes {[tuple(t.shape) for t in state]}")
            finals: list[Any] = [None] * batch
            for t in range(steps):
                out_t, state = layer.step(x[:, t], state)
                _expect(tuple(out_t.shape) == (batch, output_size),
                        f"{where}: step output shape {tuple(out_t.shape)}, expected "
                        f"{(batch, output_size)}")
                _expect(len(state) == len(state_sizes),
                        f"{where}: step returned {len(state)} state tensors, expected "
                        f"{len(state_sizes)}")
                for row in range(batch):
                    if t < lengths[row]:
                        _close(out_t[row], outputs[row, t],
                               f"{where}: step and forward disagree at row {row}, step {t}"
                               f" (initial state {'given' if initial is not None else 'zero'})")
                    if t == lengths[row] - 1:
                        finals[row] = tuple(s[row] for s in state)
            for row in range(batch):
                for index, tensor in enumerate(final):
                    _close(tensor[row], finals[row][index],
                           f"{where}: forward's final state {index} of row {row} is not the "
                           f"state after its last valid step")
            # a sequence alone gives what it gives inside the padded batch
            for row in range(batch):
                n = int(lengths[row])
                alone_init = None if initial is None else tuple(s[row:row + 1] for s in initial)
                alone, alone_final = layer(x[row:row + 1, :n], lengths[row:row + 1], alone_init)
                _close(alone[0], outputs[row, :n],
                       f"{where}: row {row}'s outputs change with the batch it is in (padding)")
                for index, tensor in enumerate(alone_final):
                    _close(tensor[0], final[index][row],
                           f"{where}: row {row}'s final state {index} changes with the batch "
                           f"it is in (padding)")

    layer.train()
    _check_gradients(layer, where, lambda: layer(x, lengths, start), generator)


def _check_shapes(where: str, outputs: Tensor, final: Any, batch: int, steps: int,
                  output_size: int, state_sizes: tuple[int, ...]) -> None:
    _expect(tuple(outputs.shape) == (batch, steps, output_size),
            f"{where}: forward outputs shape {tuple(outputs.shape)}, expected "
            f"{(batch, steps, output_size)}")
    shapes = tuple(tuple(t.shape) for t in final)
    expected = tuple((batch, s) for s in state_sizes)
    _expect(shapes == expected, f"{where}: final state shapes {shapes}, expected {expected}")


def _check_gradients(module: torch.nn.Module, where: str, run: Callable[[], Any],
                     generator: torch.Generator) -> None:
    """Backpropagate a random projection of everything ``run`` returns; every parameter
    must get a finite gradient that is not zero everywhere."""
    import torch

    module.zero_grad(set_to_none=True)
    loss = torch.zeros(())
    for tensor in _tensors(run()):
        if tensor.is_floating_point() and tensor.requires_grad:
            weights = torch.randn(tensor.shape, generator=generator)
            loss = loss + (tensor * weights).sum()
    loss.backward()
    for name, parameter in module.named_parameters():
        grad = parameter.grad
        _expect(grad is not None, f"{where}: no gradient reaches parameter {name!r}")
        assert grad is not None  # for the type checker
        _expect(bool(torch.isfinite(grad).all()), f"{where}: parameter {name!r} has a "
                                                  f"non-finite gradient")
        _expect(bool((grad != 0).any()), f"{where}: parameter {name!r}'s gradient is zero "
                                         f"everywhere")


def _tensors(value: Any) -> Iterable[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)


def _check_cell_model(record: CellPlugin, cell: Any, registry: Registry,
                      hidden_sizes: tuple[int, ...], seed: int, label: str) -> None:
    """A two-layer model with the cell on both sides matches its plan and trains."""
    import torch

    from assembly.build import build_model, count_parameters, module_table
    from assembly.plan import plan_model
    from assembly.spec.model import AttentionSpec, BridgeSpec

    sizes = (hidden_sizes * 2)[:2] if hidden_sizes else (8, 8)
    spec = make_spec(registry=registry, depth=2, encoder__cell=cell, decoder__cell=cell,
                     encoder__hidden=sizes, decoder__hidden=sizes[::-1],
                     encoder__bidirectional=True, bridge=BridgeSpec(type="linear"),
                     decoder__attention=AttentionSpec(score="additive", input_feeding=True))
    plan = plan_model(spec, registry)
    where = f"{label} in a model"
    torch.manual_seed(seed)
    model = build_model(plan, registry)
    counted = count_parameters(model)
    _expect(counted == plan.total,
            f"{where}: the model has {counted} parameters, the plan says {plan.total}\n"
            f"{plan.table()}")
    for planned, built in zip(plan.rows, module_table(model, plan).rows, strict=True):
        _expect(planned.parameters == built.parameters,
                f"{where}: {planned.path} has {built.parameters} parameters, the plan says "
                f"{planned.parameters}")
    batch = random_batch(plan, seed=seed)
    model.eval()
    with torch.no_grad():
        outputs = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    expected = (len(batch.target_lengths), batch.target.shape[1], plan.classes)
    _expect(tuple(outputs.predictions.shape) == expected,
            f"{where}: predictions shape {tuple(outputs.predictions.shape)}, expected "
            f"{expected}")
    model.train()
    generator = torch.Generator().manual_seed(seed)
    _check_gradients(model, where, lambda: model(batch.source, batch.source_lengths,
                                                 batch.target, batch.target_lengths).predictions,
                     generator)


# -- batches ----------------------------------------------------------------------------
@attrs.frozen
class Batch:
    """A padded batch: source (B, S) ids or (B, S, D), target (B, T) ids or (B, T, D),
    lengths (B,) int64. Padding is PAD (0) for ids and zeros for vectors."""

    source: Any
    source_lengths: Any
    target: Any
    target_lengths: Any

    def row(self, index: int) -> Batch:
        """Row ``index`` alone, cut to its own lengths (no padding at all)."""
        s, t = int(self.source_lengths[index]), int(self.target_lengths[index])
        return Batch(self.source[index:index + 1, :s], self.source_lengths[index:index + 1],
                     self.target[index:index + 1, :t], self.target_lengths[index:index + 1])


def random_batch(spec: Any, *, batch: int = 4, source_steps: int = 7, target_steps: int = 6,
                 seed: int = 0, source_lengths: Sequence[int] | None = None,
                 target_lengths: Sequence[int] | None = None, min_length: int = 2,
                 registry: Registry | None = None) -> Batch:
    """A random padded batch for ``spec`` (a :class:`Spec` or a plan of one; a spec is
    planned with ``registry``).

    Lengths default to random values in [``min_length``, steps] with the first row at
    full length; token ids avoid the four specials; padding is PAD / zero vectors."""
    import torch

    from assembly.data.vocab import PAD_ID
    from assembly.plan import Plan, plan_model

    plan = spec if isinstance(spec, Plan) else plan_model(spec, registry)
    spec = plan.spec
    generator = torch.Generator().manual_seed(seed)

    def lengths(given: Sequence[int] | None, steps: int) -> Any:
        if given is not None:
            return torch.tensor(list(given), dtype=torch.long)
        low = max(1, min(min_length, steps))
        drawn = torch.randint(low, steps + 1, (batch,), generator=generator)
        drawn[0] = steps
        return drawn

    src_len = lengths(source_lengths, source_steps)
    tgt_len = lengths(target_lengths, target_steps)
    s_steps, t_steps = int(src_len.max()), int(tgt_len.max())
    rows = len(src_len)
    src_mask = torch.arange(s_steps)[None, :] < src_len[:, None]
    tgt_mask = torch.arange(t_steps)[None, :] < tgt_len[:, None]
    if spec.token_mode:
        assert plan.source_vocab is not None and plan.target_vocab is not None
        source = torch.randint(4, max(plan.source_vocab, 5), (rows, s_steps),
                               generator=generator)
        target = torch.randint(4, max(plan.target_vocab, 5), (rows, t_steps),
                               generator=generator)
        source = source.masked_fill(~src_mask, PAD_ID)
        target = target.masked_fill(~tgt_mask, PAD_ID)
    else:
        assert spec.continuous is not None
        source = torch.randn(rows, s_steps, spec.continuous.input_dim, generator=generator)
        target = torch.randn(rows, t_steps, spec.continuous.output_dim, generator=generator)
        source = source * src_mask[..., None]
        target = target * tgt_mask[..., None]
    return Batch(source, src_len, target, tgt_len)


# -- hypothesis -------------------------------------------------------------------------
def spec_strategy(registry: Registry | None = None, *, cells: Sequence[str] = ("lstm", "gru"),
                  max_depth: int = 6, max_hidden: int = 9,
                  modes: Sequence[str] = ("tokens", "continuous")) -> Any:
    """A hypothesis strategy of valid, small random specs.

    Depths 1–``max_depth`` per side (drawn separately), per-layer hidden sizes, any
    ``cells`` (their spec defaults, ``bias`` drawn), bidirectional / merge, bridges, inner
    sync, dropout (embeddings, between layers, attentional vector), peek modes,
    attention (every score, position, query, input feeding), outputs (linear / maxout /
    tied), token and continuous modes. Every spec drawn passes
    :func:`~assembly.spec.validate.check_spec` and plans. Needs ``hypothesis``."""
    from hypothesis import strategies as st

    from assembly.spec.model import (
        AttentionSpec,
        BridgeSpec,
        ContinuousSpec,
        OutputSpec,
        PeekSpec,
    )

    registry = registry if registry is not None else make_registry(entrypoints=False)
    cell_specs = [registry.get("cell", name).spec for name in cells]

    @st.composite
    def cell(draw: Any) -> Any:
        spec_class = draw(st.sampled_from(cell_specs))
        return spec_class(bias=draw(st.booleans()))

    def hidden(draw: Any, depth: int) -> int | tuple[int, ...]:
        size = st.integers(1, max_hidden)
        form = draw(st.sampled_from(("one", "one-list", "per-layer")))
        if form == "one":
            return draw(size)
        if form == "one-list":
            return (draw(size),)
        return tuple(draw(st.lists(size, min_size=depth, max_size=depth)))

    @st.composite
    def specs(draw: Any) -> Spec:
        mode = draw(st.sampled_from(tuple(modes)))
        token = mode == "tokens"
        encoder_depth = draw(st.integers(1, max_depth))
        decoder_depth = draw(st.integers(1, max_depth))
        depth: int | tuple[int, int] = (encoder_depth if encoder_depth == decoder_depth
                                        and draw(st.booleans())
                                        else (encoder_depth, decoder_depth))
        dropout = st.sampled_from((0.0, 0.0, 0.1, 0.5))
        attention = None
        if draw(st.booleans()):
            position = draw(st.sampled_from(("after", "before")))
            attention = AttentionSpec(
                score=draw(st.sampled_from(("additive", "dot", "general", "concat"))),
                size=draw(st.none() | st.integers(1, max_hidden)),
                query=draw(st.sampled_from(("top", "all"))),
                position=position,
                input_feeding=position == "after" and draw(st.booleans()),
                dropout=draw(dropout))
        peek = None
        if draw(st.integers(0, 2)) == 0:
            peek = PeekSpec(mode=draw(st.sampled_from(("concat", "add", "projected-add"))))
        receives = peek is not None or (attention is not None and (
            attention.position == "before" or attention.input_feeding))
        feed_previous = True
        if receives and (peek is None or peek.mode == "concat"):
            feed_previous = draw(st.integers(0, 3)) > 0
        bridge = draw(st.sampled_from(("zero", "copy", "linear", "linear-tanh")))
        broadcast = True if bridge in ("linear", "linear-tanh") else draw(st.booleans())
        pieces = draw(st.integers(1, 3))
        output = OutputSpec(type=draw(st.sampled_from(("linear", "maxout"))),
                            size=draw(st.none() | st.integers(1, max_hidden)), pieces=pieces,
                            tied=token and draw(st.booleans()), bias=draw(st.booleans()))
        continuous = None
        if not token:
            continuous = ContinuousSpec(
                input_dim=draw(st.integers(1, 5)), output_dim=draw(st.integers(1, 5)),
                output_length=draw(st.none() | st.integers(1, 6)),
                loss=draw(st.sampled_from(("mse", "l1", "huber"))))
        side = st.builds(TokenSideSpec, vocab_size=st.integers(5, 13),
                         embedding=st.integers(1, max_hidden), dropout=dropout)
        spec = Spec(
            name=draw(st.text("abcdefgh-_ 0123", min_size=1, max_size=8)),
            mode=mode,
            depth=depth,
            source=draw(side), target=draw(side), continuous=continuous,
            encoder=EncoderSpec(cell=draw(cell()), hidden=hidden(draw, encoder_depth),
                                bidirectional=draw(st.booleans()),
                                merge=draw(st.sampled_from(("concat", "sum"))),
                                dropout=draw(dropout)),
            bridge=BridgeSpec(type=bridge),
            decoder=DecoderSpec(cell=draw(cell()), hidden=hidden(draw, decoder_depth),
                                dropout=draw(dropout),
                                broadcast_state=broadcast, inner_sync=draw(st.booleans()),
                                feed_previous=feed_previous, peek=peek, attention=attention),
            output=output,
        )
        return spec

    return specs().filter(lambda spec: not check_spec(spec, registry))


# -- helpers ----------------------------------------------------------------------------
def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _close(got: Any, want: Any, message: str) -> None:
    import torch

    if got.shape != want.shape:
        raise AssertionError(f"{message}: shapes {tuple(got.shape)} and {tuple(want.shape)}")
    if not torch.allclose(got, want, atol=ATOL, rtol=RTOL):
        worst = float((got - want).abs().max())
        raise AssertionError(f"{message}: largest difference {worst:.3g} "
                             f"(atol {ATOL}, rtol {RTOL})")
