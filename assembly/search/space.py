"""Search spaces over specs: choices, integer and real ranges, conditional parts. No torch.

A :class:`Space` varies fields of a base :class:`~assembly.spec.Spec` by their dotted paths
(``encoder.hidden``, ``training.optimizer.lr``, ``decoder.attention.score``) and yields
validated specs. Parameters:

- :class:`Choice`: one of a list of values. A value may be a whole component or part
  (``encoder.cell``: ``"gru"`` or ``{type = "gru", update = "cho"}``; ``decoder.attention``:
  ``true`` for the default attention, ``false`` for none, or a table of its fields).
- :class:`IntRange` / :class:`FloatRange`: a number in ``[low, high]``, optionally
  log-uniform and/or on a ``step`` grid.
- :class:`When`: parameters that exist only while a condition holds on the spec chosen so
  far (e.g. attention options only when attention is on).

Every value is checked when the space is made (the path exists, the value has the field's
type and passes its validator) and every yielded spec is validated like a loaded one
(field validators, cross-field rules, planning), so a space yields valid specs or a
:class:`~assembly.errors.SpecError` that names the paths.

>>> from assembly.spec import Spec
>>> space = Space(Spec(), [Choice(path="encoder.hidden", values=(64, 128)),
...                        FloatRange(path="training.optimizer.lr", low=1e-4, high=1e-2, log=True)])
>>> spec = space.build({"encoder.hidden": 64, "training.optimizer.lr": 0.001})
>>> spec.encoder.hidden, spec.training.optimizer.lr
(64, 0.001)

The same space from a TOML file (:func:`load_space`)::

    [[choice]]
    path = "encoder.hidden"
    values = [64, 128]

    [[range]]
    path = "training.optimizer.lr"
    low = 1e-4
    high = 1e-2
    log = true

    [[choice]]
    path = "decoder.attention"
    values = [false, true]

    [[when]]                       # attention options only when attention is on
    path = "decoder.attention"
    equals = true
      [[when.choice]]
      path = "decoder.attention.score"
      values = ["dot", "general", "additive"]

Within one level, choices and ranges come first (in their order), then the ``when``
blocks; a condition sees the base spec with every parameter of its own and the enclosing
levels applied.
"""

from __future__ import annotations

import difflib
import json
import math
import random
import typing
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from assembly.errors import Problem, SpecError
from assembly.plugin import KINDS, ComponentSpec
from assembly.spec.model import Spec

__all__ = [
    "Choice",
    "Drawer",
    "FloatRange",
    "IntRange",
    "Param",
    "RandomDrawer",
    "Space",
    "When",
    "load_space",
    "space_from_dict",
]

_COMPONENT_BASES = {spec_base: kind for kind, (_record, spec_base) in KINDS.items()}
_PRIMITIVE = (type(None), bool, int, float, str)


def _items(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class Choice:
    """One of ``values`` at ``path`` (see the module docstring for component values)."""

    path: str
    values: tuple[Any, ...] = attrs.field(converter=_items)


@attrs.frozen(kw_only=True)
class IntRange:
    """An integer in ``[low, high]`` on the grid ``low + k·step``; ``log``: log-uniform."""

    path: str
    low: int
    high: int
    step: int = 1
    log: bool = False


@attrs.frozen(kw_only=True)
class FloatRange:
    """A real number in ``[low, high]``; ``log``: log-uniform; ``step``: on a grid."""

    path: str
    low: float
    high: float
    step: float | None = None
    log: bool = False


@attrs.frozen(kw_only=True)
class When:
    """``params`` exist only while the spec's value at ``path`` is one of ``values``.

    Optional parts (``decoder.attention``, ``decoder.peek``, ...) compare as ``true`` when
    present and ``false`` when absent; components (``encoder.cell``) by their type name."""

    path: str
    values: tuple[Any, ...] = attrs.field(converter=_items)
    params: tuple[Param, ...] = attrs.field(converter=_items)


Param = Choice | IntRange | FloatRange | When


class Drawer(Protocol):
    """Where a space's values come from: a random generator, an Optuna trial, a test."""

    def choice(self, key: str, labels: Sequence[Any]) -> Any: ...

    def integer(self, key: str, low: int, high: int, step: int, log: bool) -> int: ...

    def real(self, key: str, low: float, high: float, step: float | None, log: bool
             ) -> float: ...


class RandomDrawer:
    """Uniform choices and ranges (log-uniform where asked) from ``random.Random(seed)``."""

    def __init__(self, seed: int | random.Random | None = None) -> None:
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)

    def choice(self, key: str, labels: Sequence[Any]) -> Any:
        return labels[self.rng.randrange(len(labels))]

    def integer(self, key: str, low: int, high: int, step: int, log: bool) -> int:
        if log:
            value = math.exp(self.rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))
            return min(max(round(value), low), high)
        return low + step * self.rng.randrange((high - low) // step + 1)

    def real(self, key: str, low: float, high: float, step: float | None, log: bool) -> float:
        if log:
            return math.exp(self.rng.uniform(math.log(low), math.log(high)))
        if step is not None:
            return min(low + step * self.rng.randrange(round((high - low) / step) + 1), high)
        return self.rng.uniform(low, high)


# -- the compiled form -----------------------------------------------------------------------
@attrs.frozen
class _Node:
    """A validated parameter: ``key`` names it for Optuna (the path, ``#2``... when a path is
    used again in another branch); choices keep ``labels`` (what a drawer picks: the value
    itself, or its JSON text for lists and tables) and the prepared ``values``."""

    kind: str  # "choice", "int", "float", "when"
    key: str
    path: str
    labels: tuple[Any, ...] = ()
    values: tuple[Any, ...] = ()
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False
    children: tuple[_Node, ...] = ()

    def draw(self, drawer: Drawer) -> Any:
        """The prepared value a drawer picks for this parameter."""
        if self.kind == "choice":
            label = drawer.choice(self.key, self.labels)
            return self.values[self.labels.index(label)]
        if self.kind == "int":
            return drawer.integer(self.key, int(self.low), int(self.high), int(self.step or 1),
                                  self.log)
        return drawer.real(self.key, self.low, self.high, self.step, self.log)


class Space:
    """A search space over ``base`` (see the module docstring).

    ``registry`` resolves component names (default: a registry with the installed
    plugins). Raises :class:`SpecError` listing every problem of the parameters, each at
    its place (``$.choice[1].values[0]`` for files, ``$.params[1]...`` for Python)."""

    def __init__(self, base: Spec, params: Sequence[Param], registry: Any = None, *,
                 source: str = "<space>", _where: Sequence[Any] | None = None) -> None:
        if registry is None:
            from assembly.registry import make_registry

            registry = make_registry()
        self.base = base
        self.registry = registry
        self.params = tuple(params)
        self._converter = registry.converter
        self._keys: dict[str, int] = {}
        problems: list[Problem] = []
        where = list(_where) if _where is not None else [f"$.params[{i}]"
                                                       for i in range(len(self.params))]
        self.nodes = tuple(self._compile(list(self.params), where, problems))
        self.plans = PlanCache(registry)
        if problems:
            raise SpecError(problems, source)

    # -- compiling ---------------------------------------------------------------------------
    def _compile(self, params: list[Param], where: list[Any],
                 problems: list[Problem]) -> Iterator[_Node]:
        """``where``: each parameter's place for messages; a ``when`` block's place is a
        pair (its place, its parameters' places) where a file gave them."""
        for param, place in zip(params, where, strict=True):
            at, inner = place if isinstance(place, tuple) else (place, None)
            try:
                yield self._node(param, at, inner, problems)
            except _Reported:
                continue
            except _Invalid as invalid:
                problems.append(Problem(f"{param.path}: {invalid}", invalid.at or at))

    def _key(self, path: str) -> str:
        count = self._keys.get(path, 0) + 1
        self._keys[path] = count
        return path if count == 1 else f"{path}#{count}"

    def _node(self, param: Param, at: str, inner: list[Any] | None,
              problems: list[Problem]) -> _Node:
        field, field_type = self._field(param.path, at)
        if isinstance(param, When):
            if not param.values:
                raise _Invalid("a condition needs at least one value", f"{at}.values")
            children_where = inner or [f"{at}.params[{i}]" for i in range(len(param.params))]
            children = tuple(self._compile(list(param.params), children_where, problems))
            return _Node("when", param.path, param.path, values=param.values,
                         children=children)
        if isinstance(param, Choice):
            if not param.values:
                raise _Invalid("a choice needs at least one value", f"{at}.values")
            labels, values, failed = [], [], False
            for index, raw in enumerate(param.values):
                try:  # every bad value is reported
                    values.append(self._prepare(field, field_type, raw,
                                                f"{at}.values[{index}]"))
                except _Invalid as invalid:
                    problems.append(Problem(f"{param.path}: {invalid}", invalid.at or at))
                    failed = True
                labels.append(raw if isinstance(raw, _PRIMITIVE) else
                              json.dumps(raw, sort_keys=True))
            if failed:
                raise _Reported
            if len(set(map(_hashable, labels))) != len(labels):
                raise _Invalid("a choice lists the same value twice", f"{at}.values")
            return _Node("choice", self._key(param.path), param.path, tuple(labels),
                         tuple(values))
        return self._range(param, field, field_type, at)

    def _range(self, param: IntRange | FloatRange, field: attrs.Attribute, field_type: Any,
               at: str) -> _Node:
        target = _unoptional(field_type)
        integer = isinstance(param, IntRange) and not (
            _accepts(target, float) and not _accepts(target, int))  # whole bounds, real field
        if integer and not _accepts(target, int):
            raise _Invalid(f"a range needs a numeric field; this one holds "
                           f"{_type_name(target)}", at)
        if not integer and not _accepts(target, float):
            if not _accepts(target, int):
                raise _Invalid(f"a range needs a numeric field; this one holds "
                               f"{_type_name(target)}", at)
            for name in ("low", "high", "step"):  # an integer field: whole bounds
                value = getattr(param, name)
                if value is not None and not float(value).is_integer():
                    raise _Invalid(f"{name} must be an integer (the field holds integers); "
                                   f"got {value!r}", f"{at}.{name}")
            param = IntRange(path=param.path, low=int(param.low), high=int(param.high),
                             step=int(param.step or 1), log=param.log)
            integer = True
        kind = int if integer else (int | float)
        for name in ("low", "high"):
            value = getattr(param, name)
            if isinstance(value, bool) or not isinstance(value, kind):
                wanted = "an integer" if integer else "a number"
                raise _Invalid(f"{name} must be {wanted}; got {value!r}", f"{at}.{name}")
            self._prepare(field, field_type, value if integer else float(value),
                          f"{at}.{name}")
        low, high = param.low, param.high
        if low > high or (not integer and low == high):
            raise _Invalid(f"low ({low}) must be below high ({high})", f"{at}.low")
        if param.log and low <= 0:
            raise _Invalid(f"a log range needs low > 0; got {low}", f"{at}.low")
        step = param.step
        if step is not None and (isinstance(step, bool) or step <= 0
                                 or (integer and not isinstance(step, int))):
            raise _Invalid(f"step must be a positive {'integer' if integer else 'number'}; "
                           f"got {step!r}", f"{at}.step")
        if param.log and step is not None and step != 1:
            raise _Invalid("a log range takes no step", f"{at}.step")
        return _Node("int" if integer else "float", self._key(param.path), param.path,
                     low=low if integer else float(low), high=high if integer else float(high),
                     step=step, log=param.log)

    def _field(self, path: str, at: str) -> tuple[attrs.Attribute, Any]:
        """The attrs field at ``path`` and its declared type."""
        classes: list[type] = [Spec]
        field: attrs.Attribute | None = None
        field_type: Any = None
        done: list[str] = []
        for segment in path.split("."):
            found = [(cls, f) for cls in classes if (f := _fields(cls).get(segment)) is not None]
            if not found:
                names = sorted({n for cls in classes for n in _fields(cls)})
                where = ".".join(done) or "the spec"
                close = difflib.get_close_matches(segment, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise _Invalid(f"{where} has no field {segment!r} (fields: "
                               f"{', '.join(names)}){hint}", f"{at}.path")
            cls, field = found[0]
            field_type = _resolved(cls)[field.name]
            done.append(segment)
            classes = self._classes(field_type)
        assert field is not None
        return field, field_type

    def _classes(self, field_type: Any) -> list[type]:
        """The attrs classes a value of this type may be (registered component classes
        for an open component base)."""
        inner = _unoptional(field_type)
        if inner in _COMPONENT_BASES:
            kind = _COMPONENT_BASES[inner]
            return [self.registry.get(kind, name).spec for name in self.registry.names(kind)]
        return [inner] if isinstance(inner, type) and attrs.has(inner) else []

    def _prepare(self, field: attrs.Attribute, field_type: Any, raw: Any, at: str) -> Any:
        """A raw (file or Python) value as the field holds it, type- and validator-checked."""
        optional = _is_optional(field_type)
        inner = _unoptional(field_type)
        structured_types = isinstance(inner, type) and attrs.has(inner)
        if raw is False and optional and (structured_types or inner is not bool):
            return None
        try:
            if structured_types:
                if inner in _COMPONENT_BASES and isinstance(raw, str):
                    raw = {"type": raw}
                if raw is True and inner not in _COMPONENT_BASES:
                    raw = {}
                # a Python-made value as it is; file data structured
                value = raw if attrs.has(type(raw)) else self._converter.structure(raw, inner)
            elif attrs.has(type(raw)):
                raise ValueError(f"expected a plain value, got {type(raw).__name__}")
            else:
                value = self._converter.structure(raw, field_type)
        except Exception as error:
            raise _Invalid(_message(error), at) from None
        if field.validator is not None:
            try:
                field.validator(None, field, value)
            except (ValueError, TypeError) as error:
                raise _Invalid(str(error), at) from None
            except AttributeError:  # a validator comparing with other fields of its object
                pass
        return value

    # -- drawing and building ----------------------------------------------------------------
    def draw(self, drawer: Drawer) -> dict[str, Any]:
        """An assignment ``{path: value}`` of every active parameter, in order (the
        values as the spec holds them; see :meth:`build`)."""
        assignment: dict[str, Any] = {}
        self._draw(self.nodes, drawer, assignment)
        return assignment

    def _draw(self, nodes: Sequence[_Node], drawer: Drawer, assignment: dict[str, Any]
              ) -> None:
        whens = []
        for node in nodes:
            if node.kind == "when":
                whens.append(node)
            else:
                assignment[node.path] = node.draw(drawer)
        for node in whens:
            if self._holds(node, assignment):
                self._draw(node.children, drawer, assignment)

    def sample(self, seed: int | random.Random | None = None) -> dict[str, Any]:
        """A random assignment (:class:`RandomDrawer`)."""
        return self.draw(RandomDrawer(seed))

    def _holds(self, node: _Node, assignment: dict[str, Any]) -> bool:
        value = self.current(node.path, assignment)
        return any(self._matches(value, expected) for expected in node.values)

    def _matches(self, value: Any, expected: Any) -> bool:
        if isinstance(expected, bool) and (value is None or attrs.has(type(value))):
            return (value is not None) == expected
        if isinstance(value, ComponentSpec) and isinstance(expected, str):
            return self.registry.name_of(value)[1] == expected
        return bool(value == expected)

    def current(self, path: str, assignment: dict[str, Any]) -> Any:
        """The value at ``path`` of the base spec with ``assignment`` applied."""
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in assignment:
                value, rest = assignment[prefix], parts[cut:]
                break
        else:
            value, rest = self.base, parts
        for name in rest:
            value = getattr(value, name, None)
        return value

    def build(self, assignment: dict[str, Any]) -> Spec:
        """The base spec with ``assignment`` applied (values as :meth:`draw` gives them),
        checked like a loaded spec; a :class:`SpecError` names every problem's path."""
        tree: dict[str, Any] = {}
        for path, value in assignment.items():
            node = tree
            parts = path.split(".")
            for name in parts[:-1]:
                child = node.get(name)
                if child is None:
                    child = node[name] = {}
                elif isinstance(child, _Set):  # a part replaced earlier, changed below
                    if child.below is None:
                        child.below = {}
                    child = child.below
                node = child
            node[parts[-1]] = _Set(value)  # replacing a part drops earlier changes below
        try:
            spec = self._apply(self.base, tree, [])
        except _Invalid as invalid:
            raise SpecError([Problem(str(invalid), invalid.at or "$")]) from None
        from assembly.spec.validate import check_spec

        problems = check_spec(spec, self.registry)
        if problems:
            raise SpecError(problems)
        return spec

    def _apply(self, obj: Any, changes: dict[str, Any], done: list[str]) -> Any:
        """``obj`` with the change tree applied: one ``attrs.evolve`` per changed object."""
        if obj is None:
            where = ".".join(done)
            raise _Invalid(f"{where} is off (None) in this spec, so "
                           f"{where}.{next(iter(changes))} cannot be set; put the parameter "
                           f"in a [[when]] block on {where}", f"$.{where}")
        updates = {}
        for name, change in changes.items():
            if not hasattr(obj, name) or not attrs.has(type(obj)):
                where = ".".join(done) or "the spec"
                raise _Invalid(f"{where} ({type(obj).__name__}) has no field {name!r}",
                               "$." + ".".join([*done, name]))
            if isinstance(change, _Set):
                value = change.value
                if change.below:
                    value = self._apply(value, change.below, [*done, name])
            else:
                value = self._apply(getattr(obj, name), change, [*done, name])
            updates[name] = value
        try:
            return attrs.evolve(obj, **updates)
        except (ValueError, TypeError) as error:
            raise _Invalid(str(error), "$." + ".".join(done)) from None

    def specs(self, count: int | None = None, *, seed: int | None = None,
              max_parameters: int | None = None, min_parameters: int | None = None,
              unique: bool = True, skip_invalid: bool = True, tries: int | None = None
              ) -> Iterator[tuple[Spec, Any]]:
        """Random ``(spec, plan)`` pairs: ``count`` of them (None: without end), distinct
        (``unique``: equal specs count once), planned without torch and kept only within
        ``[min_parameters, max_parameters]``. Invalid combinations are skipped (or raise,
        with ``skip_invalid=False``). Stops after ``tries`` draws (default: 100·count)."""
        plan_model = self.plans
        drawer = RandomDrawer(seed)
        seen: set[Spec] = set()
        made = 0
        limit = tries if tries is not None else (None if count is None else 100 * count)
        drawn = 0
        while (count is None or made < count) and (limit is None or drawn < limit):
            drawn += 1
            try:
                spec = self.build(self.draw(drawer))
                if unique:
                    before = len(seen)
                    seen.add(spec)  # one hash of the whole spec
                    if len(seen) == before:
                        continue
                plan = plan_model(spec, self.registry)
            except SpecError:
                if not skip_invalid:
                    raise
                continue
            total = plan.total
            if (max_parameters is not None and total > max_parameters) or (
                    min_parameters is not None and total < min_parameters):
                continue
            made += 1
            yield spec, plan


@attrs.define
class _Set:
    """A replaced value in the change tree, with changes below it if any."""

    value: Any
    below: dict[str, Any] | None = None


_MEMORY = 100_000
"""How many plans a :class:`PlanCache` remembers before it starts afresh."""


class _Key:
    """A tuple key whose hash is computed once (dictionary look-up and insertion)."""

    __slots__ = ("hash", "parts")

    def __init__(self, parts: tuple[Any, ...]) -> None:
        self.parts = parts
        self.hash = hash(parts)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self.hash == other.hash and self.parts == other.parts


class PlanCache:
    """:func:`~assembly.plan.plan_model` by model architecture.

    ``plan_model`` reads only the model's fields (mode, depth, sides, encoder, bridge,
    decoder, output, continuous, data for the vocabulary sizes), so specs that differ in
    ``name``, ``training``, ``sampler``, ``placement`` or ``regularizers`` share one plan
    (returned with its ``spec`` set to the spec asked about). Errors are remembered too."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._plans: dict[Any, Any] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(spec: Spec) -> tuple[Any, ...]:
        return (spec.mode, spec.depth, spec.source, spec.target, spec.continuous,
                spec.encoder, spec.bridge, spec.decoder, spec.output, spec.data)

    def __call__(self, spec: Spec, registry: Any = None) -> Any:
        from assembly.plan import plan_model

        key = _Key(self.key(spec))
        found = self._plans.get(key)
        if found is None:
            self.misses += 1
            try:
                found = plan_model(spec, self.registry)
            except SpecError as error:
                found = error
            if len(self._plans) > _MEMORY:
                self._plans.clear()
            self._plans[key] = found
        else:
            self.hits += 1
        if isinstance(found, SpecError):
            raise found
        return found if found.spec is spec else attrs.evolve(found, spec=spec)


class _Reported(Exception):
    """A parameter whose problems are already listed."""


class _Invalid(Exception):
    def __init__(self, message: str, at: str | None = None) -> None:
        super().__init__(message)
        self.at = at


def _fields(cls: type) -> dict[str, attrs.Attribute]:
    return attrs.fields_dict(cls) if attrs.has(cls) else {}


_RESOLVED: dict[type, dict[str, Any]] = {}


def _resolved(cls: type) -> dict[str, Any]:
    """The field types of an attrs class with string annotations resolved."""
    if cls not in _RESOLVED:
        import sys

        module = sys.modules[cls.__module__].__dict__
        hints = typing.get_type_hints(cls, globalns=module)
        _RESOLVED[cls] = {f.name: hints.get(f.name, f.type) for f in attrs.fields(cls)}
    return _RESOLVED[cls]


def _is_optional(tp: Any) -> bool:
    return type(None) in typing.get_args(tp)


def _unoptional(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if _is_optional(tp) and len(args) == 1:
        return args[0]
    return tp


def _accepts(tp: Any, kind: type) -> bool:
    """Whether a field of type ``tp`` holds numbers of ``kind`` (int fields also accept
    ``int | tuple[int, ...]``; float fields are reals)."""
    if tp is kind:
        return True
    return kind is int and int in typing.get_args(tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _hashable(label: Any) -> Any:
    return (type(label).__name__, label)


def _message(error: Exception) -> str:
    from assembly.spec.convert import problems_from

    try:
        problems = problems_from(error)
    except Exception:  # not a structuring error
        return str(error)
    return "; ".join(p.message + ("" if p.path == "$" else f" (at {p.path[2:]})")
                     for p in problems) or str(error)


# -- files -------------------------------------------------------------------------------------
_KEYS = {
    "choice": {"path", "values"},
    "range": {"path", "low", "high", "step", "log"},
    "when": {"path", "equals", "in", "choice", "range", "when"},
}


def space_from_dict(data: dict[str, Any], base: Spec, registry: Any = None, *,
                    source: str = "<space>") -> Space:
    """A :class:`Space` from a parsed space file (see the module docstring); every problem
    is reported at once, at its place in the file (``$.when[0].choice[1].values``)."""
    problems: list[Problem] = []
    params, where = _level(data, "$", problems, top=True)
    try:
        space = Space(base, params, registry, source=source, _where=where)
    except SpecError as error:  # the well-formed entries' problems, with the others
        raise SpecError(problems + error.problems, source) from None
    if problems:
        raise SpecError(problems, source)
    return space


def _level(data: Any, at: str, problems: list[Problem], top: bool = False
           ) -> tuple[list[Param], list[Any]]:
    allowed = {"choice", "range", "when"}
    if not isinstance(data, dict):
        problems.append(Problem("expected a table", at))
        return [], []
    extra = set(data) - allowed - (set() if top else _KEYS["when"])
    for key in sorted(extra):
        close = difflib.get_close_matches(key, sorted(allowed), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(Problem(f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})"
                                f"{hint}", f"{at}.{key}" if at != "$" else f"$.{key}"))
    params: list[Param] = []
    where: list[Any] = []
    for kind in ("choice", "range", "when"):
        entries = data.get(kind, [])
        if not isinstance(entries, list):
            problems.append(Problem(f"{kind} must be an array of tables ([[{kind}]])",
                                    f"{at}.{kind}"))
            continue
        for index, entry in enumerate(entries):
            place = f"{at}.{kind}[{index}]"
            param, inner = _entry(kind, entry, place, problems)
            if param is not None:
                params.append(param)
                where.append((place, inner) if inner is not None else place)
    return params, where


def _entry(kind: str, entry: Any, at: str, problems: list[Problem]
           ) -> tuple[Param | None, list[Any] | None]:
    """One parameter of a file, and (``when``) its parameters' places."""
    param, inner = None, None
    if not isinstance(entry, dict):
        problems.append(Problem("expected a table", at))
        return param, inner
    bad = False
    for key in sorted(set(entry) - _KEYS[kind]):
        close = difflib.get_close_matches(key, sorted(_KEYS[kind]), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(Problem(f"unknown key {key!r} in a {kind} (allowed: "
                                f"{', '.join(sorted(_KEYS[kind]))}){hint}", f"{at}.{key}"))
        bad = True
    path = entry.get("path")
    if not isinstance(path, str) or not path:
        problems.append(Problem("path must be a dotted spec path such as \"encoder.hidden\"",
                                f"{at}.path"))
        return param, inner
    if kind == "choice":
        values = entry.get("values")
        if not isinstance(values, list) or not values:
            problems.append(Problem(f"{path}: values must be a non-empty list", f"{at}.values"))
            return param, inner
        return (None if bad else Choice(path=path, values=tuple(values))), inner
    if kind == "range":
        missing = [k for k in ("low", "high") if k not in entry]
        if missing:
            problems.append(Problem(f"{path}: a range needs {' and '.join(missing)}",
                                    f"{at}.{missing[0]}"))
            return param, inner
        low, high, log = entry["low"], entry["high"], entry.get("log", False)
        if not isinstance(log, bool):
            problems.append(Problem(f"{path}: log must be true or false", f"{at}.log"))
            return param, inner
        step = entry.get("step")
        integer = all(isinstance(v, int) and not isinstance(v, bool)
                      for v in (low, high, step if step is not None else 1))
        if bad:
            return param, inner
        if integer:
            return IntRange(path=path, low=low, high=high, step=step or 1, log=log), inner
        return FloatRange(path=path, low=low, high=high, step=step, log=log), inner
    # when
    conditions = [k for k in ("equals", "in") if k in entry]
    if len(conditions) != 1:
        problems.append(Problem(f"{path}: a when block needs exactly one of 'equals' "
                                f"(a value) or 'in' (a list of values)", at))
        return param, inner
    values = [entry["equals"]] if "equals" in entry else entry["in"]
    if not isinstance(values, list) or not values:
        problems.append(Problem(f"{path}: 'in' must be a non-empty list", f"{at}.in"))
        return param, inner
    params, where = _level({k: v for k, v in entry.items() if k in ("choice", "range", "when")},
                           at, problems)
    if bad:
        return param, inner
    return When(path=path, values=tuple(values), params=tuple(params)), where


def load_space(path: str | Path, base: Spec, registry: Any = None) -> Space:
    """Load a space file (TOML, or JSON by suffix) over ``base``."""
    from assembly.spec.io import format_of, parse_text, read_file

    path = Path(path)
    text = read_file(path, "space")
    try:
        data = parse_text(text, format_of(path))
    except SpecError as error:
        raise error.with_source(str(path)) from None
    return space_from_dict(data, base, registry, source=str(path))
