"""Fixtures of the placement tests (helpers live in ``placement_testlib``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from placement_testlib import registry as make_test_registry


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and do not fight a busy machine's other
    processes); the previous setting is restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def registry() -> Any:
    """The built-ins and the placement plugin, nothing else installed."""
    return make_test_registry()
