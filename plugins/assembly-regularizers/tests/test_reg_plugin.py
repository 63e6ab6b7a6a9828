"""The plugin object: its records, spec round trips through a spec file, the parameter
counts it declares, the names the trainer logs under, and a torch-free import."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import attrs
import pytest
from assembly.spec import dumps_spec, loads_spec
from regularizers_testlib import build, small_spec

from assembly_regularizers import (
    ActivationL2Spec,
    DecovSpec,
    MmiAntiLmSpec,
    MmiBidiSpec,
    NormStabilizerSpec,
    ProfessorForcingSpec,
    RegularizersPlugin,
    RelaxationSpec,
    WeightL2Spec,
)

REGULARIZERS = {
    "norm-stabilizer": NormStabilizerSpec(targets=("encoder:0", "logits"), beta=3.0),
    "decov": DecovSpec(layer="decoder:0", factor=0.2),
    "activation-l2": ActivationL2Spec(layers=("encoder",), factor=0.5),
    "weight-l2": WeightL2Spec(factor=1e-3, exclude_biases=False, exclude_embeddings=True),
    "relaxation": RelaxationSpec(sets=3, pull_start=0.01, pull_growth=1.5, pull_every=100,
                                 pull_max=0.2),
    "professor-forcing": ProfessorForcingSpec(factor=0.5, discriminator_hidden=10, lr=3e-4,
                                              free_running="sample", warmup=7),
}
SAMPLERS = {
    "mmi-antilm": MmiAntiLmSpec(lm="runs/lm", lam=0.3, gamma=4, width=6, n_best=2,
                                early_finish=False, max_length=30),
    "mmi-bidi": MmiBidiSpec(reverse="runs/reverse", lam=0.7, length_bonus=0.1, width=8,
                            n_best=5),
}


def test_the_plugin_provides_every_component(registry: Any) -> None:
    for name, spec in REGULARIZERS.items():
        record = registry.get("regularizer", name)
        assert record.spec is type(spec) and record.summary
    for name, spec in SAMPLERS.items():
        record = registry.get("sampler", name)
        assert record.spec is type(spec) and record.summary


def test_specs_round_trip_through_a_spec_file(registry: Any) -> None:
    spec = attrs.evolve(small_spec(), regularizers=tuple(REGULARIZERS.values()),
                        sampler=SAMPLERS["mmi-antilm"])
    for fmt in ("toml", "json"):
        text = dumps_spec(spec, fmt, registry)
        assert loads_spec(text, fmt, registry) == spec
    bidi = attrs.evolve(spec, sampler=SAMPLERS["mmi-bidi"])
    assert loads_spec(dumps_spec(bidi, "toml", registry), "toml", registry) == bidi
    assert 'type = "norm-stabilizer"' in dumps_spec(spec, "toml", registry)


def test_declared_parameter_counts_match_the_built_modules(registry: Any) -> None:
    from regularizers_testlib import context_of

    model_spec = small_spec(depth=2)
    context = context_of(model_spec, registry)
    for name, spec in REGULARIZERS.items():
        record = registry.get("regularizer", name)
        built = build(registry, spec, model_spec)
        counted = sum(p.numel() for p in built.parameters())
        assert record.parameters(spec, context) == counted, name
        assert built.name == name  # the trainer logs the value under this name


def test_the_test_kit_accepts_the_records(registry: Any) -> None:
    testing = pytest.importorskip("assembly.testing")
    for name, spec in REGULARIZERS.items():
        testing.check_regularizer_plugin(registry.get("regularizer", name))
        testing.check_regularizer_plugin(registry.get("regularizer", name), spec=spec)
    for name, spec in SAMPLERS.items():  # they need a run directory: no default spec
        testing.check_sampler_plugin(registry.get("sampler", name), spec=spec)


def test_importing_the_package_imports_no_torch() -> None:
    code = ("import sys, assembly_regularizers, assembly_regularizers.specs, "
            "assembly_regularizers.mmi; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_the_entry_point_names_the_plugin_object() -> None:
    from importlib import metadata

    points = [e for e in metadata.entry_points(group="assembly") if e.name == "regularizers"]
    if not points:
        pytest.skip("assembly-regularizers is not installed (pip install -e)")
    assert points[0].value == "assembly_regularizers:RegularizersPlugin"
    assert isinstance(points[0].load()(), RegularizersPlugin)
