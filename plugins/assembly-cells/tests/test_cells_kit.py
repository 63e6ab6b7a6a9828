"""The core's plugin test kit (``assembly.testing``), run on every cell when it exists, and
the distribution's entry point."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from assembly_cells import RECORDS, CellsPlugin


def kit_function(name: str) -> Any:
    testing = pytest.importorskip("assembly.testing")
    function = getattr(testing, name, None)
    if function is None:
        pytest.skip(f"assembly.testing has no {name}")
    return function


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("record", RECORDS, ids=lambda record: record.name)
def test_plugin_kit_accepts_every_cell(record: Any, bias: bool) -> None:
    check = kit_function("check_cell_plugin")
    if bias:
        check(record)
    else:
        check(record, spec=record.spec(bias=False))


def test_plugin_kit_accepts_the_plugin_object() -> None:
    kit_function("check_plugin")(CellsPlugin())


def test_entry_point_names_the_plugin() -> None:
    """The installed distribution's entry point (group ``assembly``) loads this plugin."""
    from importlib import metadata

    points = [p for p in metadata.entry_points(group="assembly") if p.name == "cells"]
    if not points:
        pytest.skip("assembly-cells is not installed (no entry point)")
    assert points[0].load() is importlib.import_module("assembly_cells").CellsPlugin
