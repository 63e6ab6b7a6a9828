"""Every hook is documented with a runnable example, and the examples run."""

from __future__ import annotations

import doctest

import assembly.hookspecs as hookspecs
from assembly.plugin import KINDS


def test_every_kind_has_a_hook() -> None:
    assert set(hookspecs.HOOKS) == set(KINDS)


def test_every_hook_has_a_runnable_example() -> None:
    for hook_name in hookspecs.HOOKS.values():
        doc = getattr(hookspecs, hook_name).__doc__ or ""
        assert ">>>" in doc, f"{hook_name} has no example"


def test_the_examples_run() -> None:
    result = doctest.testmod(hookspecs, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 * len(hookspecs.HOOKS) // 2
    assert result.failed == 0
