"""One cattrs converter per registry: strict primitives, component hooks, exact round trip.

- Primitives are strict: ``"3"`` is not an int, ``3.5`` is not an int, ``true`` is no number.
- An open component base (``CellSpec``, ``SamplerSpec``, ...) is structured by popping its
  ``type`` key, looking the record up in the registry and structuring the rest into that
  record's spec class; unstructuring writes ``type`` back.
- Extra keys are forbidden. Field validators run one by one so that every bad field is
  reported, each with its path.
- ``None`` values are left out when unstructuring (TOML has no null; every optional field
  defaults to ``None``), so load → dump → load is exact.
"""

from __future__ import annotations

import difflib
import json
import math
import types
import typing
from typing import Any

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError, ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from assembly.errors import Problem
from assembly.plugin import KINDS, ComponentSpec

_BASE_KIND = {spec_base: kind for kind, (_record, spec_base) in KINDS.items()}


class SpecValueError(ValueError):
    """A value is wrong; the message says what and what is allowed."""


def _strict_int(value: Any, _type: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecValueError(f"expected an integer, got {_describe(value)}")
    return value


def _strict_float(value: Any, _type: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecValueError(f"expected a number, got {_describe(value)}")
    if not math.isfinite(value):
        raise SpecValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _strict_str(value: Any, _type: Any) -> str:
    if not isinstance(value, str):
        raise SpecValueError(f"expected a string, got {_describe(value)}")
    return value


def _strict_bool(value: Any, _type: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecValueError(f"expected true or false, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    """A value as the user wrote it, with its kind: ``a boolean (true)``, ``null``,
    ``a string ('3')``; booleans and null in TOML/JSON spelling, not Python's."""
    if value is None:
        return "null"
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        tuple: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    text = repr(value) if isinstance(value, str) else _as_data(value)
    return f"{kind} ({text if len(text) < 40 else text[:37] + '...'})"


def _as_data(value: Any) -> str:
    """``value`` written as JSON (``true``, ``null``, ``[1, "a"]``), else its repr."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # a TOML date, say
        return repr(value)


def _is_sizes(tp: Any) -> bool:
    return tp == (int | tuple[int, ...])


def _is_union_with_none(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def make_converter(registry: Any) -> cattrs.Converter:
    """The converter for specs whose components come from ``registry``."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(bool, _strict_bool)

    def structure_optional(value: Any, tp: Any) -> Any:
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return converter.structure(value, inner)

    converter.register_structure_hook_func(_is_union_with_none, structure_optional)

    def structure_tuple(value: Any, tp: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise SpecValueError(f"expected a list, got {_describe(value)}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item_types = [args[0]] * len(value)
        else:
            if len(value) != len(args):
                raise SpecValueError(f"expected a list of {len(args)} items, got {len(value)}")
            item_types = list(args)
        items, errors = [], []
        for index, (item, item_type) in enumerate(zip(value, item_types, strict=True)):
            try:
                items.append(converter.structure(item, item_type))
            except Exception as error:
                error.__notes__ = [
                    *getattr(error, "__notes__", []),
                    cattrs.errors.IterableValidationNote(
                        f"Structuring item {index}", index, item_type
                    ),
                ]
                errors.append(error)
        if errors:
            raise cattrs.errors.IterableValidationError("list items", errors, tp)
        return tuple(items)

    converter.register_structure_hook_func(
        lambda tp: typing.get_origin(tp) is tuple, structure_tuple
    )

    def structure_sizes(value: Any, _type: Any) -> int | tuple[int, ...]:
        if isinstance(value, list | tuple):  # each bad item reported with its index
            return structure_tuple(value, tuple[int, ...])
        return _strict_int(value, int)

    converter.register_structure_hook_func(_is_sizes, structure_sizes)

    def is_spec_class(tp: Any) -> bool:
        return isinstance(tp, type) and attrs.has(tp)

    def structure_attrs_factory(cls: type) -> Any:
        base = make_dict_structure_fn(
            cls, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
        )
        names = [f.name for f in attrs.fields(cls)]

        def structure(value: Any, tp: Any) -> Any:
            if not isinstance(value, dict):
                raise SpecValueError(f"expected a table, got {_describe(value)}")
            extra = sorted(set(value) - set(names))
            errors: list[Exception] = []
            if extra:
                errors.append(ForbiddenExtraKeysError("", cls, set(extra)))
                value = {k: v for k, v in value.items() if k in names}
            try:
                with attrs.validators.disabled():
                    obj = base(value, tp)
            except ClassValidationError as group:
                failed = {note.name for error in group.exceptions
                          for note in getattr(error, "__notes__", [])
                          if isinstance(note, AttributeValidationNote)}
                more = _validate_raw(cls, value, failed)
                raise ClassValidationError(group.message, [*errors, *group.exceptions, *more],
                                           cls) from None
            for field in attrs.fields(cls):
                if field.validator is None:
                    continue
                try:
                    field.validator(obj, field, getattr(obj, field.name))
                except (ValueError, TypeError) as error:
                    _note(error, field.name, field.type)
                    errors.append(error)
            if errors:
                raise ClassValidationError(f"While structuring {cls.__name__}", errors, cls)
            return obj

        return structure

    converter.register_structure_hook_factory(is_spec_class, structure_attrs_factory)

    # after the attrs factory, so that it wins for the open base classes
    def is_component_base(tp: Any) -> bool:
        return tp in _BASE_KIND

    def structure_component(value: Any, tp: Any) -> Any:
        kind = _BASE_KIND[tp]
        if not isinstance(value, dict):
            raise SpecValueError(
                f"expected a table with a 'type' key naming a {kind}, got {_describe(value)}"
            )
        if "type" not in value:
            error = SpecValueError(f"missing 'type' (a {kind} name; {registry.known(kind)})")
            raise _in_class("type", tp, [error])
        name = value["type"]
        if not isinstance(name, str) or name not in registry.names(kind):
            raise _in_class("type", tp, [SpecValueError(registry.unknown_message(kind, name))])
        record = registry.get(kind, name)
        rest = {k: v for k, v in value.items() if k != "type"}
        return converter.structure(rest, record.spec)

    converter.register_structure_hook_func(is_component_base, structure_component)


    def unstructure_attrs_factory(cls: type) -> Any:
        base = make_dict_unstructure_fn(cls, converter)
        # None is written by leaving the key out, which is exact only where a missing key
        # means None again: a None default, or a factory that derives it.
        omissible = {f.name for f in attrs.fields(cls)
                     if f.default is None or isinstance(f.default, attrs.Factory)}

        def unstructure(obj: Any) -> dict[str, Any]:
            data = {k: v for k, v in base(obj).items() if v is not None or k not in omissible}
            if isinstance(obj, ComponentSpec):
                _kind, name = registry.name_of(obj)
                data = {"type": name, **data}
            return data

        return unstructure

    converter.register_unstructure_hook_factory(is_spec_class, unstructure_attrs_factory)

    def unstructure_component(obj: Any) -> Any:
        return converter.unstructure(obj, unstructure_as=type(obj))

    converter.register_unstructure_hook_func(is_component_base, unstructure_component)
    converter.register_unstructure_hook_func(
        lambda tp: typing.get_origin(tp) is tuple,
        lambda obj: [converter.unstructure(item, unstructure_as=type(item)) for item in obj],
    )
    return converter


def _validate_raw(cls: type, value: dict[str, Any], failed: set[str]) -> list[Exception]:
    """Run the field validators on the raw scalar values that did structure, so a table
    whose nested part failed still reports its own bad values too."""
    errors: list[Exception] = []
    for field in attrs.fields(cls):
        if field.validator is None or field.name in failed or field.name not in value:
            continue
        raw = value[field.name]
        if isinstance(raw, dict | list):
            continue
        try:
            field.validator(None, field, raw)
        except (ValueError, TypeError) as error:
            _note(error, field.name, field.type)
            errors.append(error)
    return errors


def _note(error: Exception, name: str, tp: Any) -> None:
    error.__notes__ = [
        *getattr(error, "__notes__", []),
        AttributeValidationNote(f"Structuring @ attribute {name}", name, tp),
    ]


def _in_class(name: str, tp: Any, errors: list[Exception]) -> ClassValidationError:
    for error in errors:
        _note(error, name, tp)
    return ClassValidationError(f"While structuring {getattr(tp, '__name__', tp)}", errors, tp)


def _format(error: BaseException, tp: Any) -> str:
    if (
        isinstance(error, SpecValueError | ValueError)
        and not isinstance(error, ForbiddenExtraKeysError)
        and str(error)
    ):
        return str(error)
    if isinstance(error, ForbiddenExtraKeysError):
        allowed = [f.name for f in attrs.fields(error.cl)] if attrs.has(error.cl) else []
        parts = []
        for key in sorted(error.extra_fields):
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            parts.append(f"unknown key {key!r}{hint}")
        return "; ".join(parts) + f" (allowed: {', '.join(allowed)})"
    if isinstance(error, KeyError):
        return "required key missing"
    return cattrs.v.format_exception(error, tp)


def problems_from(error: Exception) -> list[Problem]:
    """Flatten a cattrs structuring error into one :class:`Problem` per leaf, with paths."""
    if isinstance(error, ClassValidationError | cattrs.errors.IterableValidationError):
        lines = cattrs.transform_error(error, path="$", format_exception=_format)
    else:
        lines = [f"{_format(error, None)} @ $"]
    problems = []
    for line in lines:
        message, _, path = line.rpartition(" @ ")
        problems.append(Problem(message or line, path or "$"))
    return problems
