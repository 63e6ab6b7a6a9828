"""A trained run loaded for decoding (``assembly.run.load_run``, hence ``assemble generate``
and ``evaluate``) is placed as its spec says, like the trainer placed it; ``device``
still puts the whole model on one device. Devices are simulated on the CPU with
:mod:`assembly_placement.virtual`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from assembly.decode.generate import generate
from assembly.run import load_run
from assembly.spec import loads_spec
from assembly.train.trainer import Trainer
from placement_testlib import model_toml

from assembly_placement import LayerPerDeviceSpec
from assembly_placement.virtual import virtual_devices

SPREAD = LayerPerDeviceSpec(default="meta:0", embeddings="cpu", encoder=("meta:0", "meta:1"),
                            decoder=("meta:1", "meta:2", "meta:0"), output="meta:3")

TRAINING = ("[training]\nmax_updates = 2\nepochs = 1\nbatch_size = 4\n"
            '[data]\ntask = "reverse"\ntrain_size = 16\ndev_size = 4\ntest_size = 4\n'
            "symbols = 5\nmax_length = 6\n")


def _trained(registry: Any, run_dir: Path) -> Path:
    spec = loads_spec(model_toml("attention-after") + TRAINING, registry=registry)
    spec = attrs.evolve(spec, placement=SPREAD,
                        source=attrs.evolve(spec.source, vocab_size=None),
                        target=attrs.evolve(spec.target, vocab_size=None))
    with virtual_devices():
        Trainer(spec, run_dir, registry=registry, progress=False, log=lambda line: None).fit()
    return run_dir


def test_load_run_places_the_model_as_its_spec_says(registry: Any, tmp_path: Path) -> None:
    run_dir = _trained(registry, tmp_path / "run")
    inputs = ["a b c", "d e", "b"]
    on_cpu = load_run(run_dir, registry, device="cpu")
    assert {str(p.device) for p in on_cpu.model.parameters()} == {"cpu"}
    expected = [result.texts for result in generate(on_cpu, inputs)]
    with virtual_devices():
        run = load_run(run_dir, registry)
        devices = {name: str(p.device) for name, p in run.model.named_parameters()}
        found = [result.texts for result in generate(run, inputs)]
    assert run.spec.placement == SPREAD
    assert devices["source_embedding.weight"] == "cpu"
    assert {d for n, d in devices.items() if n.startswith("encoder.layers.1.")} == {"meta:1"}
    assert {d for n, d in devices.items() if n.startswith("decoder.layers.1.")} == {"meta:2"}
    assert {d for n, d in devices.items() if n.startswith("output.")} == {"meta:3"}
    assert found == expected
