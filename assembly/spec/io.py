"""Reading, writing and hashing specs. No torch.

A spec is data: TOML or JSON, never code. Loading reports every problem at once as a
:class:`~assembly.errors.SpecError` whose lines read ``file: message @ $.path``.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from assembly.errors import Problem, SpecError
from assembly.spec.model import Spec
from assembly.spec.validate import check_spec


def _registry(registry: Any) -> Any:
    if registry is None:
        from assembly.registry import make_registry

        registry = make_registry()
    return registry


def parse_text(text: str, fmt: str) -> dict[str, Any]:
    """Parse TOML or JSON text into a table; a syntax error becomes a SpecError."""
    try:
        data = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except RecursionError:
        raise SpecError([Problem(f"invalid {fmt.upper()}: nested too deeply")]) from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError([Problem(f"invalid TOML: {error}")]) from None
    except json.JSONDecodeError as error:
        raise SpecError(
            [Problem(f"invalid JSON: {error.msg} (line {error.lineno}, column {error.colno})")]
        ) from None
    if not isinstance(data, dict):
        raise SpecError([Problem("the spec must be a table (a JSON object)")])
    return data


def spec_from_dict(data: dict[str, Any], registry: Any = None, *, source: str = "<spec>") -> Spec:
    """Structure a parsed table into a validated :class:`Spec`."""
    from assembly.spec.convert import problems_from

    registry = _registry(registry)
    try:
        spec = registry.converter.structure(data, Spec)
    except Exception as error:  # every structuring failure becomes located problems
        raise SpecError(problems_from(error), source) from None
    problems = check_spec(spec, registry)
    if problems:
        raise SpecError(problems, source)
    return spec


def loads_spec(
    text: str, fmt: str = "toml", registry: Any = None, *, source: str = "<spec>"
) -> Spec:
    """Load a spec from TOML (``fmt="toml"``) or JSON text."""
    try:
        data = parse_text(text, fmt)
    except SpecError as error:
        raise error.with_source(source) from None
    return spec_from_dict(data, registry, source=source)


def format_of(path: Path) -> str:
    """A spec-like file's format from its suffix: ``json`` for ``.json``, else ``toml``."""
    return "json" if path.suffix.lower() == ".json" else "toml"


def read_file(path: Path, what: str) -> str:
    """The text of a spec-like file; unreadable → a :class:`SpecError` naming ``what``."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError([Problem(f"cannot read the {what} file: {error}")], str(path)) from None


def load_spec(path: str | Path, registry: Any = None) -> Spec:
    """Load a spec file; the format follows the suffix (``.json``, else TOML)."""
    path = Path(path)
    return loads_spec(read_file(path, "spec"), format_of(path), registry, source=str(path))


def spec_to_dict(spec: Spec, registry: Any = None) -> dict[str, Any]:
    """The plain-data form of a spec (every field, ``None`` values left out)."""
    return _registry(registry).converter.unstructure(spec)


def dumps_spec(spec: Spec, fmt: str = "toml", registry: Any = None) -> str:
    """Write a spec as TOML or JSON text; loading it back gives an equal spec."""
    data = spec_to_dict(spec, registry)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return tomli_w.dumps(data)


def dump_spec(spec: Spec, path: str | Path, registry: Any = None) -> None:
    """Write a spec file (format from the suffix), atomically."""
    path = Path(path)
    text = dumps_spec(spec, format_of(path), registry)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def spec_hash(spec: Spec, registry: Any = None) -> str:
    """Canonical SHA-256 of a spec: equal specs hash equal, whatever the file's key order
    or which defaults it spelled out."""
    data = spec_to_dict(spec, registry)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
