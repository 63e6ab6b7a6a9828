"""What every sampler of the package must do: register, validate its options, decode a row
the same alone as in a mixed-length batch, stop at EOS, and respect the length limit."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import attrs
import pytest
import torch
from assembly.plugin import EOS_ID
from samplers_testlib import alone

from assembly_samplers import (
    BeamSpec,
    DiverseBeamSpec,
    HiddenAverageSpec,
    SamplersPlugin,
    SampleSpec,
)

SPECS: dict[str, Any] = {
    "sample": SampleSpec(n=3, temperature=1.3, top_k=6, top_p=0.9, max_length=14),
    "beam": BeamSpec(width=4, n_best=3, length_penalty=0.6, max_length=14),
    "beam-exhaustive": BeamSpec(width=3, n_best=2, early_finish=False, max_length=14),
    "diverse-beam": DiverseBeamSpec(width=4, groups=2, diversity=0.7, n_best=4, max_length=14),
    "hidden-average": HiddenAverageSpec(average_hidden_state_influence=0.6, max_length=14),
}


def build(registry: Any, spec: Any) -> Any:
    return registry.record_of(spec).build(spec)


def test_registered_with_summaries(registry: Any) -> None:
    names = {"sample", "beam", "diverse-beam", "hidden-average"}
    assert names <= set(registry.names("sampler"))
    for name in names:
        record = registry.get("sampler", name)
        assert record.summary and registry.source_of("sampler", name) == "SamplersPlugin"


def test_plugin_test_kit() -> None:
    from assembly.testing import check_sampler_plugin

    examples = {type(spec): spec for spec in SPECS.values()}
    for record in SamplersPlugin().assembly_samplers():
        check_sampler_plugin(record)  # the default spec
        check_sampler_plugin(record, spec=examples[record.spec])  # non-default options


def test_entry_point_declared() -> None:
    from importlib import metadata

    points = [e for e in metadata.entry_points(group="assembly") if e.name == "samplers"]
    if not points:
        pytest.skip("assembly-samplers is not installed (pip install -e plugins/assembly-samplers)")
    assert points[0].value == "assembly_samplers:SamplersPlugin"
    assert points[0].load() is SamplersPlugin
    from assembly.registry import make_registry

    installed = make_registry(entrypoints=True)
    assert installed.get("sampler", "beam").spec is BeamSpec
    assert installed.source_of("sampler", "beam") == "samplers"


def test_import_is_torch_free() -> None:
    code = "import sys, assembly_samplers; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("spec", list(SPECS.values()), ids=list(SPECS))
def test_spec_round_trips_through_a_spec_file(registry: Any, spec: Any) -> None:
    from assembly.spec import Spec, spec_from_dict, spec_to_dict

    whole = Spec(sampler=spec)
    data = spec_to_dict(whole, registry)
    assert data["sampler"]["type"] == registry.name_of(spec)[1]
    assert spec_from_dict(data, registry) == whole


@pytest.mark.parametrize(("make", "message"), [
    (lambda: SampleSpec(temperature=0.0), "temperature"),
    (lambda: SampleSpec(top_k=-1), "top_k"),
    (lambda: SampleSpec(top_p=0.0), "top_p"),
    (lambda: SampleSpec(top_p=1.5), "top_p"),
    (lambda: SampleSpec(n=0), "n"),
    (lambda: BeamSpec(width=0), "width"),
    (lambda: BeamSpec(width=2, n_best=3), "n_best"),
    (lambda: BeamSpec(length_penalty=-0.1), "length_penalty"),
    (lambda: DiverseBeamSpec(width=5, groups=2), "multiple of groups"),
    (lambda: DiverseBeamSpec(diversity=-1.0), "diversity"),
    (lambda: HiddenAverageSpec(average_hidden_state_influence=1.5), "average_hidden"),
    (lambda: HiddenAverageSpec(average_hidden_state_influence=-0.1), "average_hidden"),
])
def test_invalid_options_say_what_is_wrong(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("name", list(SPECS))
def test_row_alone_equals_row_in_mixed_batch(registry: Any, model: Any, batch: Any,
                                             name: str) -> None:
    source, lengths = batch
    sampler = build(registry, SPECS[name])
    together = sampler.decode(model, source, lengths, seed=11)
    for row in range(len(lengths)):
        single = alone(sampler, model, source, lengths, row, seed=11)
        assert single.tokens[0] == together.tokens[row], (name, row)
        assert single.scores[0] == pytest.approx(together.scores[row], abs=1e-4)
        for a, b in zip(single.attention[0], together.attention[row], strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                assert a.shape == b.shape
                assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", list(SPECS))
def test_hypotheses_shape_and_order(registry: Any, attention_model: Any, batch: Any,
                                    name: str) -> None:
    source, lengths = batch
    spec = SPECS[name]
    hyps = build(registry, spec).decode(attention_model, source, lengths, seed=2)
    per_input = getattr(spec, "n", None) or getattr(spec, "n_best", 1)
    assert len(hyps.tokens) == len(hyps.scores) == len(hyps.attention) == len(lengths)
    for row, length in enumerate(lengths.tolist()):
        assert len(hyps.tokens[row]) == per_input
        assert hyps.scores[row] == sorted(hyps.scores[row], reverse=True)
        for tokens, weights in zip(hyps.tokens[row], hyps.attention[row], strict=True):
            assert EOS_ID not in tokens
            assert len(tokens) <= spec.max_length
            # one attention row per step: the tokens, plus EOS when it ended the output
            ended = len(tokens) < spec.max_length
            assert weights.shape == (len(tokens) + ended, length)
            assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[0]), atol=1e-5)


def _bias_eos(model: Any, value: float) -> Any:
    with torch.no_grad():
        model.output.proj.bias[EOS_ID] = value
    return model


@pytest.mark.parametrize("name", list(SPECS))
def test_eos_stops_a_row_at_once(registry: Any, attention_model: Any, batch: Any,
                                 name: str) -> None:
    source, lengths = batch
    hyps = build(registry, SPECS[name]).decode(_bias_eos(attention_model, 50.0), source,
                                               lengths, seed=0)
    for tokens, weights in zip(hyps.tokens, hyps.attention, strict=True):
        # beams: only the best can end at the first step (one live beam per group there)
        assert tokens[0] == [] and weights[0].shape[0] == 1
        if name in ("sample", "hidden-average"):
            assert all(t == [] for t in tokens)


@pytest.mark.parametrize("name", list(SPECS))
def test_length_limit(registry: Any, attention_model: Any, batch: Any, name: str) -> None:
    source, lengths = batch
    model = _bias_eos(attention_model, -50.0)  # never ends by itself
    spec = attrs.evolve(SPECS[name], max_length=5)
    hyps = build(registry, spec).decode(model, source, lengths, seed=0)
    for row in hyps.tokens:
        assert all(len(tokens) == 5 for tokens in row)
    unlimited = attrs.evolve(SPECS[name], max_length=None)  # the model's rule: 2·|S| + 10
    hyps = build(registry, unlimited).decode(model, source, lengths, seed=0)
    for row, length in zip(hyps.tokens, lengths.tolist(), strict=True):
        assert all(len(tokens) == 2 * length + 10 for tokens in row)
