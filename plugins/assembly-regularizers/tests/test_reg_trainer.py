"""Through the real trainer: every regulariser from a spec, each logged on its own, and a
run resumed from a checkpoint ends with the same weights (relaxation sets, discriminator
and its Adam included)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from assembly.spec import DataSpec, TrainingSpec, dump_spec, load_spec
from assembly.train.trainer import Trainer
from regularizers_testlib import VOCAB, small_spec
from safetensors.torch import load_file

from assembly_regularizers import (
    ActivationL2Spec,
    DecovSpec,
    NormStabilizerSpec,
    ProfessorForcingSpec,
    RelaxationSpec,
    WeightL2Spec,
)

NAMES = ("norm-stabilizer", "decov", "activation-l2", "weight-l2", "relaxation",
         "professor-forcing")


def _spec() -> Any:
    regularizers = (
        NormStabilizerSpec(targets=("encoder", "decoder", "logits"), beta=1.0),
        DecovSpec(layer="decoder", factor=0.1),
        ActivationL2Spec(layers=("decoder:0",), factor=0.1),
        WeightL2Spec(factor=1e-4),
        RelaxationSpec(sets=2, pull_start=0.01, pull_every=5),
        ProfessorForcingSpec(factor=0.5, discriminator_hidden=8),
    )
    return attrs.evolve(
        small_spec(regularizers=regularizers),
        training=TrainingSpec(epochs=2, batch_size=16, seed=3, keep_checkpoints=2),
        data=DataSpec(task="reverse", train_size=160, dev_size=16, test_size=16,
                      symbols=VOCAB - 4, min_length=2, max_length=6))


def _train(spec: Any, folder: Path, registry: Any, resume: bool = False) -> Any:
    trainer = Trainer(spec, folder, registry=registry, progress=False, log=lambda _: None,
                      resume=resume, device="cpu")
    return trainer, trainer.fit()


def test_every_regularizer_trains_logs_and_resumes_exactly(registry: Any,
                                                            tmp_path: Path) -> None:
    spec = _spec()
    dump_spec(spec, tmp_path / "spec.toml", registry)
    assert load_spec(tmp_path / "spec.toml", registry).regularizers == spec.regularizers
    folder = tmp_path / "run"
    trainer, result = _train(spec, folder, registry)
    assert result.updates == 20
    assert [r.name for r in trainer.regularizers] == list(NAMES)
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train and all(name in r and r[name] == r[name] for r in train for name in NAMES)
    assert all(train[-1][name] > 0 for name in NAMES)
    relaxation, professor = trainer.regularizers[4], trainer.regularizers[5]
    assert relaxation.updates == 20 and professor.discriminator_updates == 20
    final = load_file(folder / "model.safetensors")  # the averaged sets (final_weights)
    for name, parameter in trainer.model.state_dict().items():
        assert torch.equal(final[name], parameter)

    # resume from the first epoch's checkpoint: the same end, bit for bit
    checkpoints = sorted((folder / "checkpoints").glob("step-*"))
    assert [c.name for c in checkpoints] == ["step-00000010", "step-00000020"]
    (folder / "latest.json").write_text(json.dumps({"checkpoint": "checkpoints/step-00000010"}))
    for path in checkpoints[1:]:
        for file in path.iterdir():
            file.unlink()
        path.rmdir()
    resumed, again = _train(spec, folder, registry, resume=True)
    assert again.updates == 20
    assert resumed.regularizers[4].updates == 20
    repeated = load_file(folder / "model.safetensors")
    for name, tensor in final.items():
        assert torch.equal(repeated[name], tensor), name


def test_an_unknown_layer_fails_when_the_trainer_builds_it(registry: Any,
                                                           tmp_path: Path) -> None:
    spec = attrs.evolve(_spec(), regularizers=(DecovSpec(layer="encoder:5"),))
    with pytest.raises(ValueError, match="encoder has 1 layer"):
        Trainer(spec, tmp_path / "bad", registry=registry, progress=False, log=lambda _: None)
