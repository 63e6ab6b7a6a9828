"""Fixtures of the sampler tests (helpers live in ``samplers_testlib``)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from assembly.build import build_model
from assembly.registry import make_registry
from samplers_testlib import MODEL_KINDS, make_batch, small_spec
from torch import Tensor

from assembly_samplers import SamplersPlugin


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """These models are tiny: one intra-op thread is fastest, and much faster than two
    on a loaded machine. Restored after each test (other suites may share the process)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def registry() -> Any:
    return make_registry(plugins=[SamplersPlugin()], entrypoints=False, strict=True)


@pytest.fixture(params=sorted(MODEL_KINDS))
def model(request: pytest.FixtureRequest, registry: Any) -> Any:
    """Random models of two shapes (attention with input feeding; plain 2-layer GRU)."""
    return build_model(small_spec(**MODEL_KINDS[request.param]), registry, seed=0).eval()


@pytest.fixture
def attention_model(registry: Any) -> Any:
    return build_model(small_spec(), registry, seed=0).eval()


@pytest.fixture
def batch() -> tuple[Tensor, Tensor]:
    return make_batch([3, 7, 1, 5, 9, 4])


