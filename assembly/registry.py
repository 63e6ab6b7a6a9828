"""The plugin host: a pluggy manager made on demand, and the validated component tables.

There is no global manager. :func:`make_registry` builds one from the built-in plugin,
the installed entry points (group ``assembly``, loaded one at a time) and any plugin
objects passed in. A plugin that fails to import is recorded and named; the rest work.
``strict=True`` (CI, the plugin test kit) raises instead.

Environment switches: ``ASSEMBLY_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry points;
``ASSEMBLY_BLOCK_PLUGINS=a,b`` skips the entry points (or plugin names) listed.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from importlib import metadata
from types import ModuleType
from typing import Any

import attrs
import pluggy

from assembly import hookspecs
from assembly.errors import PluginError, UserError
from assembly.plugin import KINDS, PROJECT

AUTOLOAD_ENV = "ASSEMBLY_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "ASSEMBLY_BLOCK_PLUGINS"


@attrs.frozen
class PluginFailure:
    """A plugin that could not be used, and why. ``action``: what failed — ``importing``
    (it raised, or its records were refused) or ``registering`` (its name is taken)."""

    name: str
    dist: str
    message: str
    action: str = "importing"

    def render(self) -> str:
        return f'Error {self.action} plugin "{self.name}" ({self.dist}): {self.message}'


@attrs.frozen
class PluginInfo:
    """One registered plugin: its name, distribution and the components it provides."""

    name: str
    dist: str
    components: tuple[tuple[str, str], ...]  # (kind, component name)


class UnknownComponent(UserError):
    """A spec names a component that no plugin provides."""


class Registry:
    """Validated component records by kind and name, plus what failed to load."""

    def __init__(
        self,
        manager: pluggy.PluginManager,
        failures: list[PluginFailure],
        dists: dict[str, str],
        strict: bool,
    ) -> None:
        self.manager = manager
        self.failures = failures
        self.strict = strict
        self._dists = dists
        self._records: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self._sources: dict[tuple[str, str], str] = {}
        self._by_spec: dict[type, tuple[str, str]] = {}
        self._collect()
        self._converter: Any = None

    # -- collection -------------------------------------------------------------------
    def _collect(self) -> None:
        for kind, hook_name in hookspecs.HOOKS.items():
            record_type, spec_base = KINDS[kind]
            caller = getattr(self.manager.hook, hook_name)
            # Registration order: built-ins first, then entry points, then injected objects.
            for impl in caller.get_hookimpls():
                source = impl.plugin_name
                try:
                    records = impl.function()
                except Exception as error:  # a plugin's own bug must not take the host down
                    self._fail(source, f"{hook_name}() raised {type(error).__name__}: {error}")
                    continue
                for record in records or ():
                    problem = self._check(record, record_type, spec_base, kind)
                    if problem:
                        self._fail(source, f"{hook_name}(): {problem}")
                        continue
                    key = (kind, record.name)
                    if key in self._sources:
                        self._fail(
                            source,
                            f"duplicate {kind} {record.name!r}: provided by both "
                            f"{self._sources[key]!r} and {source!r}",
                        )
                        continue
                    if record.spec in self._by_spec:
                        other = self._by_spec[record.spec]
                        self._fail(
                            source,
                            f"{kind} {record.name!r} reuses the spec class of "
                            f"{other[0]} {other[1]!r}",
                        )
                        continue
                    self._records[kind][record.name] = record
                    self._sources[key] = source
                    self._by_spec[record.spec] = key

    @staticmethod
    def _check(record: Any, record_type: type, spec_base: type, kind: str) -> str | None:
        if not isinstance(record, record_type):
            return f"expected {record_type.__name__} records, got {type(record).__name__}"
        if not (
            isinstance(record.spec, type)
            and issubclass(record.spec, spec_base)
            and attrs.has(record.spec)
        ):
            return f"{kind} {record.name!r}: spec must be an attrs subclass of {spec_base.__name__}"
        if not callable(record.build):
            return f"{kind} {record.name!r}: build is not callable"
        return None

    def _fail(self, source: str, message: str) -> None:
        failure = PluginFailure(source, self._dists.get(source, "?"), message)
        if self.strict:
            raise PluginError(failure.render())
        self.failures.append(failure)

    # -- lookup -----------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self._records[kind])

    def get(self, kind: str, name: str) -> Any:
        """The record of ``kind`` named ``name``; :class:`UnknownComponent` says what exists."""
        try:
            return self._records[kind][name]
        except KeyError:
            raise UnknownComponent(self.unknown_message(kind, name)) from None

    def known(self, kind: str) -> str:
        """``known: a, b`` — the registered names of ``kind``, for messages (or that
        there are none)."""
        names = self.names(kind)
        return f"known: {', '.join(names)}" if names else "none are registered"

    def unknown_message(self, kind: str, name: Any) -> str:
        known = self.names(kind)
        message = f"unknown {kind} {name!r}; {self.known(kind)}"
        close = difflib.get_close_matches(str(name), known, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        if self.failures:
            message += "; plugins that failed to load: " + ", ".join(
                sorted({f.name for f in self.failures})
            )
        return message

    def name_of(self, spec: Any) -> tuple[str, str]:
        """(kind, name) of a component spec instance."""
        try:
            return self._by_spec[type(spec)]
        except KeyError:
            raise UnknownComponent(
                f"{type(spec).__name__} is not a registered component spec"
            ) from None

    def source_of(self, kind: str, name: str) -> str:
        return self._sources[(kind, name)]

    def record_of(self, spec: Any) -> Any:
        kind, name = self.name_of(spec)
        return self._records[kind][name]

    def plugins(self) -> list[PluginInfo]:
        by_source: dict[str, list[tuple[str, str]]] = {}
        for (kind, name), source in sorted(self._sources.items()):
            by_source.setdefault(source, []).append((kind, name))
        infos = []
        for plugin_name in self.manager.list_name_plugin():
            name = plugin_name[0]
            infos.append(
                PluginInfo(name, self._dists.get(name, "?"), tuple(by_source.get(name, ())))
            )
        return infos

    @property
    def converter(self) -> Any:
        """The cattrs converter for specs with this registry's components (built once)."""
        if self._converter is None:
            from assembly.spec.convert import make_converter

            self._converter = make_converter(self)
        return self._converter


def _dist_label(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    if dist is None:
        return "unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def make_registry(
    *,
    plugins: Iterable[Any] = (),
    entrypoints: bool = True,
    block: Iterable[str] = (),
    strict: bool = False,
) -> Registry:
    """Make a plugin manager and its validated registry.

    ``plugins``: plugin objects (modules, classes — instantiated without arguments — or
    instances with ``@hookimpl`` methods) registered after the built-ins and entry points.
    ``entrypoints``: load the installed entry points of group ``assembly`` (also off when
    ``ASSEMBLY_DISABLE_PLUGIN_AUTOLOAD`` is set). ``block``: entry-point names not to load
    (added to ``ASSEMBLY_BLOCK_PLUGINS``).
    ``strict``: raise :class:`PluginError` on any plugin failure instead of recording it.
    """
    from assembly.builtin import BUILTIN_PLUGINS

    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    blocked = set(block) | {b.strip() for b in os.environ.get(BLOCK_ENV, "").split(",") if b}
    for name in blocked:
        manager.set_blocked(name)
    failures: list[PluginFailure] = []
    dists: dict[str, str] = {}
    for name, plugin in BUILTIN_PLUGINS.items():
        manager.register(plugin, name=name)
        dists[name] = f"assembly (built in) {_core_version()}"

    def fail(failure: PluginFailure, error: Exception | None = None) -> None:
        if strict:
            raise PluginError(failure.render()) from error
        failures.append(failure)

    if entrypoints and not os.environ.get(AUTOLOAD_ENV):
        for entry_point in sorted(metadata.entry_points(group=PROJECT), key=lambda e: e.name):
            if entry_point.name in blocked:
                continue
            dist = _dist_label(entry_point)
            if manager.has_plugin(entry_point.name):
                fail(_name_taken(manager, entry_point.name, dist, dists))
                continue
            dists[entry_point.name] = dist
            try:
                plugin = _instance(entry_point.load())
                manager.register(plugin, name=entry_point.name)
            except Exception as error:
                fail(PluginFailure(entry_point.name, dist, f"{type(error).__name__}: {error}"),
                     error)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        plugin = _instance(plugin)
        if manager.is_blocked(name):
            continue
        if manager.has_plugin(name):
            fail(_name_taken(manager, name, "injected", dists))
            continue
        try:
            manager.register(plugin, name=name)
        except ValueError as error:  # pluggy: this very object is already registered
            fail(PluginFailure(name, "injected", str(error), "registering"), error)
            continue
        dists.setdefault(name, "injected")
    return Registry(manager, failures, dists, strict)


def _name_taken(manager: pluggy.PluginManager, name: str, dist: str,
                dists: dict[str, str]) -> PluginFailure:
    """The failure of a plugin whose name another plugin already holds: it names that
    plugin and its distribution."""
    holder = manager.get_plugin(name)
    label = getattr(holder, "__name__", None) if isinstance(holder, ModuleType) else None
    label = label or f"{type(holder).__module__}.{type(holder).__qualname__}"
    return PluginFailure(name, dist, f"the name {name!r} is already registered by plugin "
                                     f"{label} ({dists.get(name, '?')}); this one is not "
                                     f"loaded", "registering")


def _instance(plugin: Any) -> Any:
    """A plugin named by its class (the usual entry-point form) is instantiated; modules
    and instances are used as they are."""
    return plugin() if isinstance(plugin, type) else plugin


def _core_version() -> str:
    from assembly import __version__

    return __version__
