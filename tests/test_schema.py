"""The generated JSON Schema: valid draft 2020-12, accepts every spec the loader accepts
(the files in specs/ and random dumped specs), rejects what the loader rejects field by
field, and lists the registry's components."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
from hypothesis import given

from assembly.errors import SpecError
from assembly.plugin import CellPlugin, CellSpec, hookimpl, one_of, positive
from assembly.registry import make_registry
from assembly.spec import Spec, loads_spec, spec_to_dict
from assembly.spec.schema import DIALECT, spec_schema
from assembly.testing import spec_strategy

REGISTRY = make_registry(entrypoints=False, strict=True)
SCHEMA = spec_schema(REGISTRY)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"


def _read(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return tomllib.loads(path.read_text())


def _errors(data: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATOR.iter_errors(data)]


def test_the_schema_is_valid_draft_2020_12_json() -> None:
    assert SCHEMA["$schema"] == DIALECT
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert json.loads(json.dumps(SCHEMA, allow_nan=False)) == SCHEMA


SPEC_FILES = sorted(p for p in SPECS_DIR.iterdir() if p.suffix in (".toml", ".json"))


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.name for p in SPEC_FILES])
def test_every_example_spec_validates(path: Path) -> None:
    assert _errors(_read(path)) == []


@given(spec_strategy(REGISTRY))
def test_every_dumped_spec_validates(spec: Spec) -> None:
    assert _errors(spec_to_dict(spec, REGISTRY)) == []


@pytest.mark.parametrize("text", [
    "dept = 2\n",
    "depth = 0\n",
    "depth = [1, 2, 3]\n",
    'depth = "3"\n',
    'mode = "x"\n',
    "[encoder]\nhiden = 3\n",
    "[encoder]\nhidden = []\n",
    "[encoder]\nbidirectional = 1\n",
    '[encoder.cell]\ntype = "lstn"\n',
    "[encoder.cell]\nbias = false\n",
    '[encoder.cell]\ntype = "gru"\nupdate = "x"\n',
    '[encoder.cell]\ntype = "gru"\nforget_bias = 1.0\n',
    '[decoder.attention]\nscore = "dott"\n',
    "[decoder]\ndropout = 1.0\n",
    "[source]\nvocab_size = 1.5\n",
    "[source]\nvocab_size = 0\n",
    "[training.optimizer]\nbetas = [0.9]\n",
    "[training]\nscheduled_sampling = 1.5\n",
    '[[regularizers]]\ntype = "l2"\n',
    '[sampler]\ntype = "greedy"\nmax_length = 0\n',
    'mode = "continuous"\n[continuous]\ninput_dim = 3\n',
])
def test_what_the_loader_rejects_field_by_field_the_schema_rejects(text: str) -> None:
    with pytest.raises(SpecError):
        loads_spec(text, registry=REGISTRY)
    assert _errors(tomllib.loads(text)), text


def test_components_are_one_of_the_registry_records_keyed_by_type() -> None:
    defs = SCHEMA["$defs"]
    cell = defs["cell-component"]
    assert cell["required"] == ["type"]
    assert [choice["$ref"] for choice in cell["oneOf"]] == ["#/$defs/cell.gru",
                                                            "#/$defs/cell.lstm"]
    lstm = defs["cell.lstm"]
    assert lstm["properties"]["type"] == {"const": "lstm"}
    assert lstm["properties"]["forget_bias"] == {"type": "number", "default": 1.0}
    assert lstm["additionalProperties"] is False
    assert defs["cell.gru"]["properties"]["update"]["enum"] == ["torch", "cho"]
    assert SCHEMA["properties"]["sampler"]["$ref"] == "#/$defs/sampler-component"
    assert SCHEMA["properties"]["regularizers"]["items"]["$ref"] == \
        "#/$defs/regularizer-component"
    assert defs["EncoderSpec"]["properties"]["cell"]["$ref"] == "#/$defs/cell-component"


def test_types_defaults_and_allowed_values_come_from_the_attrs_classes() -> None:
    properties = SCHEMA["properties"]
    assert properties["mode"] == {"type": "string", "enum": ["tokens", "continuous"],
                                  "default": "tokens"}
    assert properties["name"] == {"type": "string", "default": "model"}
    assert properties["depth"]["default"] == 1
    assert properties["encoder"]["default"]["hidden"] == 128
    assert properties["encoder"]["default"]["cell"]["type"] == "lstm"
    defs = SCHEMA["$defs"]
    attention = defs["AttentionSpec"]["properties"]
    assert attention["score"]["enum"] == ["additive", "dot", "general", "concat"]
    assert attention["size"] == {"anyOf": [{"type": "integer", "exclusiveMinimum": 0},
                                           {"type": "null"}]}
    assert attention["dropout"] == {"type": "number", "minimum": 0, "exclusiveMaximum": 1,
                                    "default": 0.0}
    continuous = defs["ContinuousSpec"]
    assert continuous["required"] == ["input_dim", "output_dim"]
    betas = defs["OptimizerSpec"]["properties"]["betas"]
    assert betas["prefixItems"] == [{"type": "number"}, {"type": "number"}]
    assert betas["default"] == [0.9, 0.999]
    assert "train" in defs["DataSpec"]["properties"]
    assert "default" not in defs["DataSpec"]["properties"]["task"]  # derived from train


def test_a_plugin_component_appears_with_its_own_fields() -> None:
    @attrs.frozen(kw_only=True)
    class ShinySpec(CellSpec):
        """A cell with its own parameters."""

        flavour: str = attrs.field(default="plain", validator=one_of("plain", "fancy"))
        rank: int = attrs.field(default=2, validator=positive)

    class Shiny:
        @hookimpl
        def assembly_cells(self) -> list[CellPlugin]:
            return [CellPlugin(name="shiny", spec=ShinySpec, build=print,
                               parameters=lambda spec, i, h: 0)]

    registry = make_registry(plugins=[Shiny()], entrypoints=False, strict=True)
    schema = spec_schema(registry)
    shiny = schema["$defs"]["cell.shiny"]
    assert shiny["description"] == "A cell with its own parameters."
    assert shiny["properties"]["flavour"] == {"type": "string", "enum": ["plain", "fancy"],
                                              "default": "plain"}
    assert shiny["properties"]["rank"] == {"type": "integer", "exclusiveMinimum": 0,
                                           "default": 2}
    assert shiny["properties"]["bias"] == {"type": "boolean", "default": True}
    validator = jsonschema.Draft202012Validator(schema)
    good = {"encoder": {"cell": {"type": "shiny", "flavour": "fancy"}}}
    assert not list(validator.iter_errors(good))
    bad = {"encoder": {"cell": {"type": "shiny", "flavour": "odd"}}}
    assert list(validator.iter_errors(bad))


def test_a_validator_may_describe_itself() -> None:
    class Even:
        json_schema = {"multipleOf": 2}  # noqa: RUF012

        def __call__(self, _instance: Any, attribute: Any, value: int) -> None:
            if value % 2:
                raise ValueError(f"{attribute.name} must be even")

    @attrs.frozen(kw_only=True)
    class EvenSpec(CellSpec):
        width: int = attrs.field(default=2, validator=Even())

    class Plugin:
        @hookimpl
        def assembly_cells(self) -> list[CellPlugin]:
            return [CellPlugin(name="even", spec=EvenSpec, build=print,
                               parameters=lambda spec, i, h: 0)]

    schema = spec_schema(make_registry(plugins=[Plugin()], entrypoints=False))
    assert schema["$defs"]["cell.even"]["properties"]["width"] == {
        "type": "integer", "multipleOf": 2, "default": 2}


def test_no_regularizers_registered_means_an_empty_list_only() -> None:
    assert not REGISTRY.names("regularizer")
    assert _errors({"regularizers": []}) == []
    assert _errors({"regularizers": [{"type": "anything"}]})


def test_generating_the_schema_imports_no_torch() -> None:
    code = ("import sys\n"
            "from assembly.registry import make_registry\n"
            "from assembly.spec.schema import spec_schema\n"
            "spec_schema(make_registry(entrypoints=False))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_core_validators_describe_their_own_bounds() -> None:
    """Every range the core's validators check reaches the schema through the validators'
    own ``json_schema`` fragments: the generator knows no validator by name."""
    from assembly.spec import schema

    assert not [name for name in vars(schema) if "VALIDATORS" in name]
    at_least_one = {"type": "integer", "minimum": 1}
    assert SCHEMA["properties"]["depth"] == {"oneOf": [at_least_one, {
        "type": "array", "items": at_least_one, "minItems": 2, "maxItems": 2,
        "description": "[encoder depth, decoder depth]"}], "default": 1}
    defs = SCHEMA["$defs"]
    assert defs["EncoderSpec"]["properties"]["hidden"] == {"oneOf": [at_least_one, {
        "type": "array", "items": at_least_one, "minItems": 1}], "default": 128}
    training = defs["TrainingSpec"]["properties"]
    assert training["threads"] == {"type": "integer", "minimum": 0, "default": 0}
    assert training["label_smoothing"] == {"type": "number", "minimum": 0,
                                           "exclusiveMaximum": 1, "default": 0.0}
    assert training["scheduled_sampling"] == {"type": "number", "minimum": 0, "maximum": 1,
                                              "default": 0.0}
    assert defs["OptimizerSpec"]["properties"]["lr"] == {"type": "number",
                                                         "exclusiveMinimum": 0,
                                                         "default": 0.001}
    assert _errors({"training": {"threads": -1}})
    assert _errors({"depth": [1, 2, 3]})


def test_the_document_shares_nothing_with_the_validators() -> None:
    schema = spec_schema(REGISTRY)
    schema["properties"]["depth"]["oneOf"][0]["minimum"] = 99
    assert spec_schema(REGISTRY)["properties"]["depth"]["oneOf"][0]["minimum"] == 1
