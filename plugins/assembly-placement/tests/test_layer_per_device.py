"""``layer-per-device``: where every parameter goes, what ``assemble check`` prints, and
that a model spread over several devices trains and decodes exactly like the same model
on one device.

Several devices are simulated on the CPU with :mod:`assembly_placement.virtual`: the
placement names ``meta:0`` ... ``meta:3`` and every operation checks its operands' devices
as an accelerator would, while computing real values; the core moves states, memory and
fed inputs to each layer's device itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from assembly.build import build_model
from assembly.spec import dumps_spec, loads_spec
from placement_testlib import VARIANTS, model_toml, token_batch

from assembly_placement import LayerPerDeviceSpec, assign
from assembly_placement.virtual import real, virtual_devices

SPREAD = LayerPerDeviceSpec(default="meta:0", embeddings="cpu", encoder=("meta:0", "meta:1"),
                            decoder=("meta:1", "meta:2", "meta:0"), output="meta:3")
"""Embeddings on the CPU, the other parts over four simulated accelerators."""



def _spec(registry: Any, variant: str, placement: LayerPerDeviceSpec | None = None) -> Any:
    spec = loads_spec(model_toml(variant), registry=registry)
    return spec if placement is None else attrs.evolve(spec, placement=placement)


def _placed(registry: Any, spec: Any) -> tuple[Any, Any]:
    placement = registry.record_of(spec.placement).build(spec.placement)
    return placement, placement.apply(build_model(spec, registry, seed=0))


# -- the spec ---------------------------------------------------------------------------------
def test_spec_round_trips_and_rejects_bad_names(registry: Any) -> None:
    from assembly.errors import SpecError

    spec = _spec(registry, "plain", SPREAD)
    assert loads_spec(dumps_spec(spec, registry=registry), registry=registry) == spec
    for table, path, message in (
            ('encoder = ["cuda:0", "GPU 1"]', "encoder", "encoder[1] must be a device name"),
            ("default = 3", "default", "expected a string"),
            ('output = "cuda:x"', "output", "output must be a device name")):
        text = model_toml("plain") + f'[placement]\ntype = "layer-per-device"\n{table}\n'
        with pytest.raises(SpecError) as caught:
            loads_spec(text, registry=registry)
        rendered = caught.value.render()
        assert message in rendered and f"@ $.placement.{path}" in rendered, rendered


def test_list_lengths_are_checked_against_the_depths(registry: Any) -> None:
    from assembly.errors import SpecError
    from assembly.plan import plan_model

    wrong = LayerPerDeviceSpec(encoder=("cpu", "cpu", "cpu"), decoder=("cpu", "cpu"))
    spec = _spec(registry, "plain", wrong)
    record = registry.record_of(wrong)
    with pytest.raises(SpecError) as caught:
        record.describe(wrong, plan_model(spec, registry))
    paths = [problem.path for problem in caught.value.problems]
    assert paths == ["$.placement.encoder", "$.placement.decoder"]
    assert "3 devices given for the 2 encoder layers" in caught.value.render()
    with pytest.raises(SpecError):
        record.build(wrong).apply(build_model(spec, registry, seed=0))


def test_describe_lists_every_layer_and_its_device(registry: Any) -> None:
    from assembly.plan import plan_model

    spec = _spec(registry, "plain", SPREAD)
    lines = registry.record_of(SPREAD).describe(SPREAD, plan_model(spec, registry))
    assert lines == [
        "source embedding on cpu",
        "encoder layer 0 on meta:0", "encoder layer 1 on meta:1",
        "decoder layer 0 on meta:1", "decoder layer 1 on meta:2", "decoder layer 2 on meta:0",
        "target embedding on cpu",
        "attention, bridge and output layer on meta:3",
    ]


def test_defaults_a_single_name_and_tied_output() -> None:
    one = assign(LayerPerDeviceSpec(default="cuda:1", encoder=("cuda:0",)), 3, 2)
    assert one.encoder == ("cuda:0",) * 3 and one.decoder == ("cuda:1",) * 2
    assert one.output == "cuda:0"  # the encoder's top layer: its outputs are already there
    assert one.embeddings == one.target_embedding == "cuda:1"
    tied = assign(LayerPerDeviceSpec(embeddings="cpu", output="cuda:2"), 1, 1, tied=True)
    assert (tied.embeddings, tied.target_embedding) == ("cpu", "cuda:2")


def test_assemble_check_prints_the_placement(tmp_path: Path) -> None:
    from importlib import metadata

    if not [e for e in metadata.entry_points(group="assembly") if e.name == "placement"]:
        pytest.skip("assembly-placement is not installed (pip install -e plugins/assembly-"
                    "placement)")
    path = tmp_path / "spread.toml"
    path.write_text(model_toml("plain") + '[placement]\ntype = "layer-per-device"\n'
                    'encoder = ["cuda:0", "cuda:1"]\ndecoder = ["cuda:1"]\n')
    done = subprocess.run([sys.executable, "-m", "assembly", "check", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "encoder layer 1 on cuda:1" in done.stdout
    assert "decoder layer 2 on cuda:1" in done.stdout


# -- where the parameters go --------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_parameter_and_buffer_sits_where_the_spec_says(registry: Any,
                                                             variant: str) -> None:
    spec = _spec(registry, variant, SPREAD)
    expected = {"source_embedding": "cpu", "target_embedding": "cpu",
                "encoder.layers.0": "meta:0", "encoder.layers.1": "meta:1",
                "decoder.layers.0": "meta:1", "decoder.layers.1": "meta:2",
                "decoder.layers.2": "meta:0", "decoder.sync_maps.0": "meta:1",
                "decoder.sync_maps.1": "meta:2"}
    if spec.output.tied:
        expected["target_embedding"] = "meta:3"
    with virtual_devices():
        placement, model = _placed(registry, spec)
        tensors = [*model.named_parameters(), *model.named_buffers()]
        assert tensors
        for name, tensor in tensors:
            prefix = next((p for p in expected if name.startswith(p + ".")), None)
            assert str(tensor.device) == expected.get(prefix, "meta:3"), name  # type: ignore[arg-type]
        assert str(placement.input_device(model)) == "cpu"


# -- running spread over devices -----------------------------------------------------------------
def _train_and_decode(registry: Any, spec: Any, placed: bool,
                      sampling: float = 0.0) -> dict[str, Any]:
    """Loss, gradients and greedy (plus beam, where installed) decodes of one step."""
    from assembly.builtin.samplers import GreedySpec

    source, source_lengths, target, target_lengths = token_batch()
    if placed:
        placement, model = _placed(registry, spec)
        device = placement.input_device(model)
    else:
        model, device = build_model(spec, registry, seed=0), torch.device("cpu")
    inputs = [t.to(device) for t in (source, source_lengths, target, target_lengths)]
    outputs = model(*inputs, sampling, torch.Generator().manual_seed(5))
    total, count = model.loss(outputs, inputs[2])
    (total / count).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is None or parameter.grad.device == parameter.device, name
    model.eval()
    greedy = GreedySpec(max_length=7)
    hypotheses = registry.record_of(greedy).build(greedy).decode(model, inputs[0], inputs[1])
    return {"loss": real(total / count).item(),
            "grads": {n: real(p.grad).clone() for n, p in model.named_parameters()
                      if p.grad is not None},
            "greedy": hypotheses.tokens}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_spread_model_trains_and_decodes_like_one_device(registry: Any, variant: str) -> None:
    single = _train_and_decode(registry, _spec(registry, variant), placed=False)
    with virtual_devices():
        spread = _train_and_decode(registry, _spec(registry, variant, SPREAD), placed=True)
    assert spread["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert spread["greedy"] == single["greedy"]
    assert spread["grads"].keys() == single["grads"].keys()
    for name, grad in single["grads"].items():
        torch.testing.assert_close(spread["grads"][name], grad, atol=1e-6, rtol=1e-5,
                                   msg=name)


def test_scheduled_sampling_and_dropout_cross_devices(registry: Any) -> None:
    spec = _spec(registry, "input-feeding-query-all", SPREAD)
    spec = attrs.evolve(spec, encoder=attrs.evolve(spec.encoder, dropout=0.3),
                        decoder=attrs.evolve(spec.decoder, dropout=0.3))
    with virtual_devices():
        result = _train_and_decode(registry, spec, placed=True, sampling=0.5)
    assert result["grads"]


def test_samplers_of_the_samplers_plugin_cross_devices(registry: Any) -> None:
    samplers = pytest.importorskip("assembly_samplers")
    from assembly.registry import make_registry

    from assembly_placement import PlacementPlugin

    both = make_registry(plugins=[PlacementPlugin(), samplers.SamplersPlugin()],
                         entrypoints=False, strict=True)
    source, source_lengths, _, _ = token_batch()
    specs = [samplers.BeamSpec(width=3, n_best=2, max_length=7),
             samplers.HiddenAverageSpec(average_hidden_state_influence=0.5, max_length=7)]
    single = build_model(_spec(both, "attention-after"), both, seed=0).eval()
    expected = [both.record_of(s).build(s).decode(single, source, source_lengths).tokens
                for s in specs]
    with virtual_devices():
        placement, model = _placed(both, _spec(both, "attention-after", SPREAD))
        model.eval()
        device = placement.input_device(model)
        found = [both.record_of(s).build(s).decode(model, source.to(device),
                                                   source_lengths.to(device)).tokens
                 for s in specs]
    assert found == expected


def test_trainer_runs_a_spread_model(registry: Any, tmp_path: Path) -> None:
    from assembly.train.trainer import Trainer

    text = model_toml("attention-after") + (
        "[training]\nmax_updates = 3\nepochs = 1\nbatch_size = 4\n"
        '[data]\ntask = "reverse"\ntrain_size = 24\ndev_size = 4\ntest_size = 4\n'
        "symbols = 5\nmax_length = 6\n")
    spec = attrs.evolve(loads_spec(text, registry=registry), placement=SPREAD)
    spec = attrs.evolve(spec, source=attrs.evolve(spec.source, vocab_size=None),
                        target=attrs.evolve(spec.target, vocab_size=None))
    with virtual_devices():
        trainer = Trainer(spec, tmp_path / "run", registry=registry, progress=False,
                          log=lambda line: None)
        result = trainer.fit()
    assert result.updates == 3 and "loss" in result.dev


def test_real_cpu_device_names_train_and_decode(registry: Any) -> None:
    """On this machine's real devices: ``cpu`` and ``cpu:0`` name the same device."""
    names = LayerPerDeviceSpec(default="cpu", encoder=("cpu:0", "cpu"),
                               decoder=("cpu", "cpu:0", "cpu"), embeddings="cpu:0")
    single = _train_and_decode(registry, _spec(registry, "attention-after"), placed=False)
    placed = _train_and_decode(registry, _spec(registry, "attention-after", names), placed=True)
    assert placed["loss"] == pytest.approx(single["loss"], rel=1e-6)
    assert placed["greedy"] == single["greedy"]
