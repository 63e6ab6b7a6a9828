"""Shared fixtures and settings of the core's tests.

- torch runs on one thread: the tests' tensors are tiny, and several intra-op threads
  only contend (ten times slower on a busy two-core machine);
- hypothesis runs a modest number of examples with no deadline (profile ``assembly``;
  ``HYPOTHESIS_PROFILE=thorough`` runs more);
- ``registry``: the built-in components only (no entry points), made once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from assembly.registry import Registry, make_registry

torch.set_num_threads(1)

settings.register_profile(
    "assembly",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "assembly"))

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The built-in components, no entry points, strict."""
    return make_registry(entrypoints=False, strict=True)


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    """The repository's ``specs/`` folder of example spec files."""
    return SPECS
