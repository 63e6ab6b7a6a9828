"""The plugin host: validation, duplicates, failing entry points, blocking, and a plugin
cell used end to end from a spec file."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

import attrs
import pytest
import torch
from torch import Tensor, nn

import assembly.registry as registry_module
from assembly.build import build_model, count_parameters, module_table
from assembly.errors import PluginError, SpecError
from assembly.plan import plan_model
from assembly.plugin import CellPlugin, CellSpec, SamplerPlugin, SamplerSpec, hookimpl
from assembly.registry import (
    AUTOLOAD_ENV,
    BLOCK_ENV,
    UnknownComponent,
    make_registry,
)
from assembly.spec import loads_spec
from assembly.testing import random_batch

# -- a tiny plugin cell: h' = tanh(W x + b + U h) ----------------------------------------


@attrs.frozen(kw_only=True)
class TinySpec(CellSpec):
    """An Elman cell for the tests."""

    scale: float = 1.0


def _tiny_layer_class() -> type:
    from assembly.plugin import CellLayer

    class TinyLayer(CellLayer):
        def __init__(self, spec: TinySpec, input_size: int, hidden: int) -> None:
            super().__init__()
            self.input_size, self.hidden_size, self.output_size = input_size, hidden, hidden
            self.state_sizes = (hidden,)
            self.input_map = nn.Linear(input_size, hidden, bias=spec.bias)
            self.recurrent = nn.Linear(hidden, hidden, bias=False)
            with torch.no_grad():
                self.recurrent.weight.mul_(spec.scale)

        def project_input(self, x: Tensor) -> Tensor:
            return self.input_map(x)

        def cell(self, projected: Tensor, state: tuple[Tensor, ...]
                 ) -> tuple[Tensor, tuple[Tensor, ...]]:
            h = torch.tanh(projected + self.recurrent(state[0]))
            return h, (h,)

    return TinyLayer


def build_tiny(spec: TinySpec, input_size: int, hidden: int) -> Any:
    return _tiny_layer_class()(spec, input_size, hidden)


def tiny_parameters(spec: TinySpec, input_size: int, hidden: int) -> int:
    return hidden * input_size + hidden * hidden + (hidden if spec.bias else 0)


TINY = CellPlugin(name="tiny", spec=TinySpec, build=build_tiny, parameters=tiny_parameters,
                  summary="an Elman cell")


class TinyPlugin:
    @hookimpl
    def assembly_cells(self) -> list[CellPlugin]:
        return [TINY]


def _cell_plugin(class_name: str, *records: Any) -> Any:
    """A plugin object named ``class_name`` whose assembly_cells returns ``records``."""

    def provide(self: Any) -> list[Any]:
        return list(records)

    return type(class_name, (), {"assembly_cells": hookimpl(provide)})()


@attrs.frozen(kw_only=True)
class TwinSpec(CellSpec):
    """One spec class per test record (the registry rejects a reused spec class)."""


@attrs.frozen(kw_only=True)
class OtherTwinSpec(CellSpec):
    """Another."""


def _twin(spec: type) -> CellPlugin:
    return CellPlugin(name="twin", spec=spec, build=build_tiny, parameters=tiny_parameters)


# -- fake entry points ------------------------------------------------------------------
class FakeDist:
    metadata = {"Name": "broken-dist"}  # noqa: RUF012 - mimics importlib.metadata
    version = "1.2"


class FakeEntryPoint:
    """Enough of importlib.metadata.EntryPoint for the registry."""

    def __init__(self, name: str, load: Callable[[], Any]) -> None:
        self.name = name
        self.group = "assembly"
        self.dist = FakeDist()
        self._load = load

    def load(self) -> Any:
        return self._load()


def _raise_import_error() -> Any:
    raise ImportError("boom: no module named 'broken_cells'")


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Install fake entry points of group ``assembly`` (autoload and blocks cleared)."""
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(BLOCK_ENV, raising=False)

    def install(*points: FakeEntryPoint) -> None:
        def fake(**kwargs: Any) -> list[FakeEntryPoint]:
            return list(points) if kwargs.get("group") == "assembly" else []

        monkeypatch.setattr(registry_module.metadata, "entry_points", fake)

    return install


# -- tests ------------------------------------------------------------------------------
def test_the_registry_patches_importlib_metadata_itself() -> None:
    assert registry_module.metadata is metadata  # so the fixture above reaches it


def test_builtins_come_through_the_hooks() -> None:
    registry = make_registry(entrypoints=False, strict=True)
    assert registry.names("cell") == ["gru", "lstm"]
    assert registry.names("sampler") == ["greedy"]
    assert registry.names("placement") == ["single-device"]
    assert registry.source_of("cell", "lstm") == "builtin-cells"
    assert not registry.failures


def test_an_injected_plugin_is_registered_and_listed() -> None:
    registry = make_registry(plugins=[TinyPlugin()], entrypoints=False, strict=True)
    assert registry.get("cell", "tiny") is TINY
    assert registry.name_of(TinySpec()) == ("cell", "tiny")
    assert registry.record_of(TinySpec()) is TINY
    infos = {info.name: info for info in registry.plugins()}
    assert infos["TinyPlugin"].components == (("cell", "tiny"),)
    assert infos["TinyPlugin"].dist == "injected"


def test_a_plugin_class_is_instantiated() -> None:
    registry = make_registry(plugins=[TinyPlugin], entrypoints=False, strict=True)
    assert "tiny" in registry.names("cell")


def test_registries_share_no_state() -> None:
    with_tiny = make_registry(plugins=[TinyPlugin()], entrypoints=False)
    without = make_registry(entrypoints=False)
    assert "tiny" in with_tiny.names("cell")
    assert "tiny" not in without.names("cell")


def _twins() -> list[Any]:
    return [_cell_plugin("PluginA", _twin(TwinSpec)), _cell_plugin("PluginB", _twin(OtherTwinSpec))]


def test_duplicate_component_from_two_plugins_strict() -> None:
    with pytest.raises(PluginError) as caught:
        make_registry(plugins=_twins(), entrypoints=False, strict=True)
    assert str(caught.value) == ('Error importing plugin "PluginB" (injected): '
                                 "duplicate cell 'twin': provided by both 'PluginA' and "
                                 "'PluginB'")


def test_duplicate_component_from_two_plugins_non_strict() -> None:
    registry = make_registry(plugins=_twins(), entrypoints=False, strict=False)
    (failure,) = registry.failures
    assert registry.get("cell", "twin").spec is TwinSpec
    assert failure.render() == ('Error importing plugin "PluginB" (injected): '
                                "duplicate cell 'twin': provided by both 'PluginA' and "
                                "'PluginB'")
    with pytest.raises(UnknownComponent, match="plugins that failed to load: PluginB"):
        registry.get("cell", "twine")


def test_the_first_registered_plugin_wins_a_duplicate() -> None:
    registry = make_registry(plugins=_twins(), entrypoints=False, strict=False)
    assert registry.source_of("cell", "twin") == "PluginA"
    assert registry.failures[0].name == "PluginB"


def test_a_plugin_cannot_take_over_a_builtin_name() -> None:
    clash = CellPlugin(name="lstm", spec=TwinSpec, build=build_tiny, parameters=tiny_parameters)
    registry = make_registry(plugins=[_cell_plugin("Clash", clash)], entrypoints=False)
    assert registry.source_of("cell", "lstm") == "builtin-cells"
    assert registry.failures[0].render().startswith('Error importing plugin "Clash"')


def test_duplicate_of_a_builtin_names_both() -> None:
    clash = CellPlugin(name="lstm", spec=TwinSpec, build=build_tiny, parameters=tiny_parameters)
    with pytest.raises(PluginError) as caught:
        make_registry(plugins=[_cell_plugin("Clash", clash)], entrypoints=False, strict=True)
    assert "duplicate cell 'lstm': provided by both" in str(caught.value)
    assert "'builtin-cells'" in str(caught.value) and "'Clash'" in str(caught.value)


def test_a_reused_spec_class_is_rejected() -> None:
    again = CellPlugin(name="tiny-again", spec=TinySpec, build=build_tiny,
                       parameters=tiny_parameters)
    registry = make_registry(plugins=[TinyPlugin(), _cell_plugin("Again", again)],
                             entrypoints=False)
    assert "tiny" in registry.names("cell") and "tiny-again" not in registry.names("cell")
    assert "cell 'tiny-again' reuses the spec class of cell 'tiny'" in \
        registry.failures[0].render()


@pytest.mark.parametrize(("record", "message"), [
    ("not a record", "expected CellPlugin records, got str"),
    (SamplerPlugin(name="odd", spec=SamplerSpec, build=print),
     "expected CellPlugin records, got SamplerPlugin"),
    (CellPlugin(name="loose", spec=dict, build=print, parameters=tiny_parameters),  # type: ignore[arg-type]
     "cell 'loose': spec must be an attrs subclass of CellSpec"),
    (CellPlugin(name="inert", spec=TwinSpec, build=3, parameters=tiny_parameters),  # type: ignore[arg-type]
     "cell 'inert': build is not callable"),
])
def test_bad_records_are_named(record: Any, message: str) -> None:
    registry = make_registry(plugins=[_cell_plugin("Bad", record)], entrypoints=False)
    assert registry.failures[0].render() == f'Error importing plugin "Bad" (injected): ' \
        f"assembly_cells(): {message}"
    with pytest.raises(PluginError, match=message):
        make_registry(plugins=[_cell_plugin("Bad", record)], entrypoints=False, strict=True)


def test_a_hook_that_raises_is_recorded() -> None:
    class Exploding:
        @hookimpl
        def assembly_cells(self) -> list[CellPlugin]:
            raise RuntimeError("kaboom")

    registry = make_registry(plugins=[Exploding(), TinyPlugin()], entrypoints=False)
    assert "tiny" in registry.names("cell")  # the others keep working
    assert registry.failures[0].render() == (
        'Error importing plugin "Exploding" (injected): assembly_cells() raised '
        "RuntimeError: kaboom")


def test_a_plugin_that_fails_to_import_strict(entry_points: Callable[..., None]) -> None:
    entry_points(FakeEntryPoint("broken", _raise_import_error))
    with pytest.raises(PluginError) as caught:
        make_registry(strict=True)
    assert str(caught.value) == ('Error importing plugin "broken" (broken-dist 1.2): '
                                 "ImportError: boom: no module named 'broken_cells'")


def test_a_plugin_that_fails_to_import_non_strict(entry_points: Callable[..., None]) -> None:
    entry_points(FakeEntryPoint("broken", _raise_import_error),
                 FakeEntryPoint("tiny-ep", lambda: TinyPlugin))
    registry = make_registry(strict=False)
    (failure,) = registry.failures
    assert failure.render() == ('Error importing plugin "broken" (broken-dist 1.2): '
                                "ImportError: boom: no module named 'broken_cells'")
    assert "tiny" in registry.names("cell")  # the other entry point works
    assert registry.source_of("cell", "tiny") == "tiny-ep"
    with pytest.raises(SpecError) as caught:
        loads_spec('[encoder.cell]\ntype = "jzs1"\n', registry=registry, source="s.toml")
    assert str(caught.value) == (
        "s.toml: unknown cell 'jzs1'; known: gru, lstm, tiny; "
        "plugins that failed to load: broken @ $.encoder.cell.type")


def test_an_entry_point_whose_name_is_taken_names_the_holder(
        entry_points: Callable[..., None]) -> None:
    entry_points(FakeEntryPoint("builtin-cells", lambda: TinyPlugin))
    expected = ('Error registering plugin "builtin-cells" (broken-dist 1.2): the name '
                "'builtin-cells' is already registered by plugin "
                "assembly.builtin.cells.BuiltinCells (assembly (built in) 0.2.0); this one "
                "is not loaded")
    registry = make_registry(strict=False)
    assert [failure.render() for failure in registry.failures] == [expected]
    assert "tiny" not in registry.names("cell")
    assert registry.source_of("cell", "lstm") == "builtin-cells"  # the holder keeps working
    with pytest.raises(PluginError) as caught:
        make_registry(strict=True)
    assert str(caught.value) == expected


def test_two_injected_plugins_of_one_name_name_the_holder() -> None:
    first = _cell_plugin("Same", TINY)
    registry = make_registry(plugins=[first, _cell_plugin("Same", _twin(TwinSpec))],
                             entrypoints=False)
    (failure,) = registry.failures
    holder = f"{type(first).__module__}.Same"
    assert failure.render() == ('Error registering plugin "Same" (injected): the name '
                                f"'Same' is already registered by plugin {holder} "
                                "(injected); this one is not loaded")
    assert "tiny" in registry.names("cell") and "twin" not in registry.names("cell")


def test_a_blocked_entry_point_is_not_loaded(entry_points: Callable[..., None],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []

    def load() -> Any:
        loaded.append("broken")
        return _raise_import_error()

    entry_points(FakeEntryPoint("broken", load))
    registry = make_registry(block=["broken"], strict=True)
    assert not registry.failures and not loaded
    monkeypatch.setenv(BLOCK_ENV, "other, broken")
    make_registry(strict=True)
    assert not loaded
    monkeypatch.delenv(BLOCK_ENV)
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    make_registry(strict=True)
    assert not loaded
    make_registry(entrypoints=False, strict=True)
    assert not loaded


def test_unknown_lookup_suggests() -> None:
    registry = make_registry(entrypoints=False)
    with pytest.raises(UnknownComponent) as caught:
        registry.get("cell", "gur")
    assert str(caught.value) == "unknown cell 'gur'; known: gru, lstm; did you mean 'gru'?"
    with pytest.raises(UnknownComponent, match="TinySpec is not a registered component spec"):
        registry.name_of(TinySpec())


def test_a_plugin_cell_from_a_spec_file_end_to_end() -> None:
    registry = make_registry(plugins=[TinyPlugin()], entrypoints=False, strict=True)
    text = """
        depth = [2, 3]
        [source]
        vocab_size = 10
        embedding = 6
        [target]
        vocab_size = 11
        embedding = 5
        [encoder]
        hidden = [7, 9]
        bidirectional = true
        [encoder.cell]
        type = "tiny"
        scale = 0.5
        [decoder]
        hidden = [9, 8, 8]
        inner_sync = true
        [decoder.cell]
        type = "tiny"
        bias = false
        [decoder.attention]
        score = "general"
        input_feeding = true
    """
    spec = loads_spec(text, registry=registry)
    assert spec.encoder.cell == TinySpec(scale=0.5)
    plan = plan_model(spec, registry)
    assert [row.component for row in plan.rows if row.path.startswith("encoder.")] == \
        ["tiny", "tiny"]
    model = build_model(plan, registry, seed=0)
    assert count_parameters(model) == plan.total
    for planned, built in zip(plan.rows, module_table(model, plan).rows, strict=True):
        assert built.parameters == planned.parameters, planned.path
    batch = random_batch(plan, seed=0)
    out = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    assert out.predictions.shape == (*batch.target.shape, 11)
    total, _ = model.loss(out, batch.target)
    total.backward()
    assert model.encoder.layers[0].forward_layer.recurrent.weight.grad is not None
    model.eval()
    with torch.no_grad():
        memory, encoded = model.encode(batch.source, batch.source_lengths)
        step = model.step(model.first_input(len(batch.source), memory.values),
                          model.start(memory, encoded), memory)
    assert step.scores.shape == (len(batch.source), 11)
