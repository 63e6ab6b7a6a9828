"""Errors a user can cause. The CLI prints them without a traceback and exits with 2."""

from __future__ import annotations

import attrs


@attrs.frozen
class Problem:
    """One problem in a spec: a message and the JSON path where it was found."""

    message: str
    path: str = "$"

    def render(self, source: str) -> str:
        return f"{source}: {self.message} @ {self.path}"


class UserError(Exception):
    """An error in what the user gave us (spec, data, command line). Has a clear message."""


class SpecError(UserError):
    """Every problem found in one spec, each with its path."""

    def __init__(self, problems: list[Problem], source: str = "<spec>") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(p.render(self.source) for p in self.problems)

    def with_source(self, source: str) -> SpecError:
        return SpecError(self.problems, source)


class PluginError(UserError):
    """A plugin is broken: it failed to import, returned a bad record, or clashes."""
