"""Fuzzing the loader: whatever a spec file holds — wrong types, unknown keys, nested junk,
mutated valid specs, broken TOML or JSON text — loading either succeeds or raises a
:class:`SpecError` every line of which reads ``<source>: message @ $path``."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from assembly.errors import SpecError
from assembly.registry import make_registry
from assembly.spec import Spec, loads_spec, spec_to_dict
from assembly.testing import spec_strategy

REGISTRY = make_registry(entrypoints=False, strict=True)
SOURCE = "fuzz.spec"
LINE = re.compile(rf"^{re.escape(SOURCE)}: .+ @ \$")

SPEC_WORDS = ["name", "mode", "depth", "source", "target", "continuous", "encoder", "bridge",
              "decoder", "output", "regularizers", "sampler", "placement", "training", "data",
              "cell", "type", "hidden", "bidirectional", "merge", "dropout", "attention",
              "peek", "score", "position", "query", "input_feeding", "vocab_size",
              "embedding", "optimizer", "betas", "lr", "schedule", "curriculum", "train",
              "task", "format", "lstm", "gru", "greedy", "single-device", "tokens",
              "concat", "additive", "before", "maxout", "input_dim", "output_dim"]
keys = st.sampled_from(SPEC_WORDS) | st.text(max_size=6)
scalars = (st.none() | st.booleans() | st.integers(-3, 3) | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
           | st.sampled_from(SPEC_WORDS))
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(keys, inner, max_size=5), max_leaves=25)
tables = st.dictionaries(keys, junk, max_size=6)


def load_or_spec_error(text: str, fmt: str) -> Spec | None:
    """Load ``text``; a SpecError must be well formed (then None is returned)."""
    try:
        return loads_spec(text, fmt, REGISTRY, source=SOURCE)
    except SpecError as error:
        lines = str(error).split("\n")
        assert lines and len(lines) == len(error.problems)
        for line in lines:
            assert LINE.match(line), repr(line)
        return None


@given(tables)
def test_junk_tables_as_json(data: dict[str, Any]) -> None:
    load_or_spec_error(json.dumps(data), "json")


@given(tables)
def test_junk_tables_as_toml(data: dict[str, Any]) -> None:
    try:
        text = tomli_w.dumps(data)
    except (TypeError, ValueError):  # TOML cannot write null or mixed nesting
        return
    load_or_spec_error(text, "toml")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


@st.composite
def mutated_specs(draw: Any) -> Any:
    """A valid spec's data with 1–3 random edits: a value replaced by junk, a key added
    or removed, a value wrapped in a list or a table."""
    data = spec_to_dict(draw(spec_strategy(REGISTRY)), REGISTRY)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        edit = draw(st.sampled_from(("junk", "add", "remove", "wrap-list", "wrap-table")))
        target: Any = data
        for step in path:
            target = target[step]
        if edit == "junk":
            data = _replace(data, path, draw(junk))
        elif edit == "add" and isinstance(target, dict):
            data = _replace(data, path, {**target, draw(keys): draw(junk)})
        elif edit == "remove" and isinstance(target, dict) and target:
            gone = draw(st.sampled_from(sorted(target)))
            data = _replace(data, path, {k: v for k, v in target.items() if k != gone})
        elif edit == "wrap-list":
            data = _replace(data, path, [target])
        elif edit == "wrap-table":
            data = _replace(data, path, {"type": target} if path else {"x": target})
    return data


@given(mutated_specs(), st.sampled_from(("json", "toml")))
def test_mutated_valid_specs(data: Any, fmt: str) -> None:
    if fmt == "json":
        text = json.dumps(data)
    else:
        try:
            text = tomli_w.dumps(data)
        except (TypeError, ValueError, AttributeError):
            return
    load_or_spec_error(text, fmt)


@given(st.text(max_size=200), st.sampled_from(("json", "toml")))
def test_random_text(text: str, fmt: str) -> None:
    load_or_spec_error(text, fmt)


@st.composite
def broken_texts(draw: Any) -> tuple[str, str]:
    """A valid spec's text with characters deleted, inserted or swapped."""
    fmt = draw(st.sampled_from(("json", "toml")))
    data = spec_to_dict(draw(spec_strategy(REGISTRY)), REGISTRY)
    text = json.dumps(data) if fmt == "json" else tomli_w.dumps(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(text) - 1)))
        edit = draw(st.sampled_from(("delete", "insert", "swap")))
        piece = draw(st.sampled_from([*'{}[]",=:\n #.\\', "true", "1e9", "'", "nan"]))
        if edit == "delete":
            text = text[:at] + text[at + 1:]
        elif edit == "insert":
            text = text[:at] + piece + text[at:]
        else:
            text = text[:at] + piece + text[at + len(piece):]
    return text, fmt


@given(broken_texts())
def test_broken_text(case: tuple[str, str]) -> None:
    load_or_spec_error(*case)


@pytest.mark.parametrize(("text", "fmt"), [
    ("", "toml"), ("", "json"), ("null", "json"), ('"spec"', "json"), ("[]", "json"),
    ("\x00", "toml"), ("\ufeffdepth = 1", "toml"), ('{"depth": 1e999}', "json"),
    ('{"depth": -0}', "json"), ('{"encoder": {"hidden": [1, true]}}', "json"),
    ('{"encoder": {"cell": {"type": ["lstm"]}}}', "json"),
    ('{"encoder": {"cell": {"type": {"a": 1}}}}', "json"),
    ('{"regularizers": [null, 3, []]}', "json"),
    ('[encoder]\ncell = "lstm"\n', "toml"),
    ("depth = 2024-01-01\n", "toml"),
    ("name = 1979-05-27T07:32:00Z\n", "toml"),
])
def test_odd_inputs(text: str, fmt: str) -> None:
    load_or_spec_error(text, fmt)


@pytest.mark.parametrize(("text", "fmt"), [("[" * 100_000, "json"),
                                           ('{"a":' * 5000 + "1" + "}" * 5000, "json"),
                                           ("x = " + "[" * 100_000, "toml")])
def test_deeply_nested_text(text: str, fmt: str) -> None:
    load_or_spec_error(text, fmt)
