"""Fixtures: the registry with this package's plugin (strict, no entry points)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from assembly.registry import make_registry

from assembly_cells import CellsPlugin


@pytest.fixture(scope="session")
def registry() -> Any:
    return make_registry(plugins=[CellsPlugin()], entrypoints=False, strict=True)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These tests use tiny tensors: intra-op threads only add synchronisation (which costs
    seconds on a busy 2-core machine). The previous setting is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
