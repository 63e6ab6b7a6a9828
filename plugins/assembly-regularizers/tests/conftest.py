"""Fixtures of the regulariser tests (helpers live in ``regularizers_testlib``)."""

from __future__ import annotations

from typing import Any

import pytest
from assembly.registry import make_registry

from assembly_regularizers import RegularizersPlugin


@pytest.fixture(scope="session")
def registry() -> Any:
    """Built-ins plus this plugin only (no entry points), strict."""
    return make_registry(plugins=[RegularizersPlugin()], entrypoints=False, strict=True)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """These tiny models run fastest on one thread; several intra-op threads on a busy
    machine slow them down many times over. The setting is restored after each module."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
