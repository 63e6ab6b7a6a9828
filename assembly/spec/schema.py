"""A JSON Schema (draft 2020-12) of the spec format, generated from the attrs classes.

Nothing here is written by hand per field: every property comes from an attrs field of
:class:`~assembly.spec.model.Spec` or of a registered component's spec class, with

- its JSON type from the field's annotation (``int`` → ``integer``, ``X | None`` → ``X``
  or ``null``, ``tuple[int, ...]`` → an array, nested attrs classes → ``$ref``);
- its default from the attrs default (factories are called and dumped the way
  :func:`~assembly.spec.io.dumps_spec` writes them);
- allowed values from the validators: :func:`assembly.plugin.one_of` keeps its choices in
  ``allowed`` (→ ``enum``); every other validator that says what it allows carries a JSON
  Schema fragment as its ``json_schema`` attribute (a dict merged into the field's
  schema): :func:`~assembly.plugin.positive` and :func:`~assembly.plugin.probability`
  (bounds), the spec module's range and size validators, and any plugin's own. The
  generator knows no validator by name.

Open component slots (``encoder.cell``, ``sampler``, ``regularizers[]``, ...) become a
``oneOf`` over the registry's records of that kind, each keyed by ``"type": {"const": name}``.
Like the loader, the schema forbids unknown keys (``additionalProperties: false``).

The schema describes one field at a time; rules between fields (hidden sizes per depth,
input feeding only with position ``after``, ...) are checked by
:func:`assembly.spec.validate.check_spec` and are not expressed here. No torch here.
"""

from __future__ import annotations

import copy
import inspect
import json
import types
import typing
from typing import Any

import attrs

from assembly.plugin import KINDS, ComponentSpec
from assembly.spec import model

DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The ``$schema`` of the generated document."""

_BASE_KIND: dict[type, str] = {base: kind for kind, (_record, base) in KINDS.items()}


def spec_schema(registry: Any = None) -> dict[str, Any]:
    """The JSON Schema of a spec file whose components come from ``registry``.

    ``registry`` defaults to :func:`assembly.registry.make_registry`'s. The result is
    plain JSON data (``json.dumps`` writes it as is)."""
    if registry is None:
        from assembly.registry import make_registry

        registry = make_registry()
    return _Generator(registry).document()


class _Generator:
    """Walks the attrs classes once, collecting a ``$defs`` entry per class."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.defs: dict[str, dict[str, Any]] = {}

    def document(self) -> dict[str, Any]:
        root = self.class_schema(model.Spec)
        return {
            "$schema": DIALECT,
            "$id": "https://assembly.invalid/spec.schema.json",
            "title": "assembly spec",
            **root,
            "$defs": dict(sorted(self.defs.items())),
        }

    # -- classes ------------------------------------------------------------------------
    def ref(self, cls: type) -> dict[str, Any]:
        """A ``$ref`` to the definition of attrs class ``cls`` (made on first use)."""
        name = self.def_name(cls)
        if name not in self.defs:
            self.defs[name] = {}  # reserve the name first: classes may nest themselves
            self.defs[name] = self.class_schema(cls)
        return {"$ref": f"#/$defs/{name}"}

    def def_name(self, cls: type) -> str:
        if issubclass(cls, ComponentSpec):
            kind, name = self._name_by_class(cls)
            return f"{kind}.{name}"
        return cls.__name__

    def _name_by_class(self, cls: type) -> tuple[str, str]:
        for kind in KINDS:
            for name in self.registry.names(kind):
                if self.registry.get(kind, name).spec is cls:
                    return kind, name
        raise LookupError(f"{cls.__name__} is not a registered component spec")

    def class_schema(self, cls: type, const_type: str | None = None) -> dict[str, Any]:
        """An object schema with one property per attrs field of ``cls``."""
        hints = _type_hints(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        if const_type is not None:
            properties["type"] = {"const": const_type}
            required.append("type")
        for field in attrs.fields(cls):
            schema = self.type_schema(hints.get(field.name, field.type))
            schema = _merge(schema, _validator_schema(field.validator))
            if field.default is attrs.NOTHING:
                required.append(field.name)
            else:
                default = self.default_of(field.default, hints.get(field.name, field.type))
                if default is not _NO_DEFAULT:
                    schema = {**schema, "default": default}
            properties[field.name] = schema
        result: dict[str, Any] = {"type": "object"}
        doc = inspect.getdoc(cls)
        if doc and cls.__doc__ is not None:
            result["description"] = doc
        result["properties"] = properties
        if required:
            result["required"] = required
        result["additionalProperties"] = False
        return result

    def default_of(self, default: Any, tp: Any) -> Any:
        """The default as the dumped file would write it (``None`` is left out there)."""
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            if default.takes_self:
                return _NO_DEFAULT
            default = default.factory()
        if default is None:
            return _NO_DEFAULT
        value = self.registry.converter.unstructure(default)
        try:
            return json.loads(json.dumps(value, allow_nan=False))  # tuples → lists
        except (TypeError, ValueError):
            return _NO_DEFAULT

    # -- components ---------------------------------------------------------------------
    def component_schema(self, base: type) -> dict[str, Any]:
        """``oneOf`` over the registry's records of ``base``'s kind, keyed by ``type``."""
        kind = _BASE_KIND[base]
        name = f"{kind}-component"
        if name not in self.defs:
            self.defs[name] = {}
            choices = []
            for component in self.registry.names(kind):
                record = self.registry.get(kind, component)
                key = f"{kind}.{component}"
                if key not in self.defs:
                    self.defs[key] = {}
                    self.defs[key] = self.class_schema(record.spec, const_type=component)
                choices.append({"$ref": f"#/$defs/{key}"})
            names = ", ".join(self.registry.names(kind)) or "none registered"
            description = f"A {kind}: a table whose 'type' names one ({names})."
            if choices:
                self.defs[name] = {
                    "description": description,
                    "type": "object",
                    "required": ["type"],
                    "oneOf": choices,
                }
            else:  # no component of this kind: nothing can match
                self.defs[name] = {"description": description, "not": {}}
        return {"$ref": f"#/$defs/{name}"}

    # -- types --------------------------------------------------------------------------
    def type_schema(self, tp: Any) -> dict[str, Any]:
        """The schema of a value of annotation ``tp``."""
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if tp is type(None):
            return {"type": "null"}
        if tp in _BASE_KIND:
            return self.component_schema(tp)
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(tp)
            if tp == (int | tuple[int, ...]):
                return {"oneOf": [{"type": "integer"},
                                  {"type": "array", "items": {"type": "integer"}}]}
            options = [self.type_schema(arg) for arg in args]
            return {"anyOf": options}
        if origin is tuple:
            args = typing.get_args(tp)
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.type_schema(args[0])}
            return {
                "type": "array",
                "prefixItems": [self.type_schema(arg) for arg in args],
                "items": False,
                "minItems": len(args),
            }
        if isinstance(tp, type) and attrs.has(tp):
            return self.ref(tp)
        return {}


class _NoDefault:
    """Marks a field whose default is not written in a file (``None``, a self factory)."""


_NO_DEFAULT = _NoDefault()


def _type_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of ``cls`` (string annotations under ``from __future__``)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation naming something local: fall back to attrs' own
        try:
            attrs.resolve_types(cls)
        except Exception:
            return {}
        return {f.name: f.type for f in attrs.fields(cls)}


def _validator_schema(validator: Any) -> dict[str, Any]:
    """What a field validator allows, as schema keywords (empty when unknown)."""
    if validator is None:
        return {}
    inner = getattr(validator, "_validators", None)  # attrs.validators.and_ / a list
    if inner is not None:
        result: dict[str, Any] = {}
        for part in inner:
            result = _merge(result, _validator_schema(part))
        return result
    own = getattr(validator, "json_schema", None)
    if isinstance(own, dict):
        return copy.deepcopy(own)  # the generated document shares nothing with it
    allowed = getattr(validator, "allowed", None)
    if isinstance(allowed, tuple | list) and allowed:
        return {"enum": list(allowed)}
    return {}


def _merge(schema: dict[str, Any], constraint: dict[str, Any]) -> dict[str, Any]:
    """Apply validator keywords to a type schema.

    A ``oneOf`` constraint (sizes) replaces the type; bounds and enums apply to the
    non-null branch of an optional type (``None`` always passes the core's validators)."""
    if not constraint:
        return schema
    if "oneOf" in constraint:
        return {k: v for k, v in constraint.items()}
    if "anyOf" in schema:
        branches = [
            branch if branch.get("type") == "null" else {**branch, **constraint}
            for branch in schema["anyOf"]
        ]
        return {**schema, "anyOf": branches}
    return {**schema, **constraint}
