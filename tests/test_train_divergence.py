"""A non-finite loss stops training with a clear message (TrainingDiverged; the CLI exits
with 3 and names the update) and keeps the last good checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers_train import (
    cli,
    latest_folder,
    make_spec,
    spec_data,
    trainer,
    weights,
    write_spec,
)

from assembly.nn.seq2seq import Seq2Seq
from assembly.run import load_run
from assembly.train.trainer import TrainingDiverged

CHECKPOINTS = {"training": {"checkpoint_every": 2, "epochs": 1}}


def poison_loss(
    monkeypatch: pytest.MonkeyPatch, after: int, *, gradient_only: bool = False
) -> None:
    """From training update ``after + 1`` on, the loss is NaN — or, with
    ``gradient_only``, finite with NaN gradients (d sqrt(x)/dx at 0 is inf, times 0)."""
    original = Seq2Seq.loss
    calls = {"train": 0}

    def loss(self: Seq2Seq, outputs, target, label_smoothing=0.0):
        total, count = original(self, outputs, target, label_smoothing)
        if not self.training:
            return total, count
        calls["train"] += 1
        if calls["train"] > after:
            if gradient_only:
                total = total + torch.sqrt(outputs.predictions.sum() * 0.0)
            else:
                total = total * float("nan")
        return total, count

    monkeypatch.setattr(Seq2Seq, "loss", loss)


def assert_finite(path: Path) -> None:
    bad = [k for k, v in weights(path).items() if not torch.isfinite(v).all()]
    assert not bad, f"{path}: non-finite {bad}"


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    poison_loss(monkeypatch, after=4)
    made = trainer(make_spec(CHECKPOINTS), run_dir)
    with pytest.raises(TrainingDiverged) as caught:
        made.fit()
    message = str(caught.value)
    assert "nan" in message and "update 5" in message
    assert str(run_dir) in message
    assert made.step == 4  # the bad update was not applied
    folder = latest_folder(run_dir)
    assert folder.name == "step-00000004"
    assert_finite(folder / "model.safetensors")
    assert not (run_dir / "model.safetensors").exists()
    monkeypatch.undo()
    run = load_run(run_dir)  # falls back to the latest checkpoint
    loaded = {k: v for k, v in run.model.state_dict().items()}
    for key, value in weights(folder / "model.safetensors").items():
        assert torch.equal(loaded[key], value)


def test_infinite_loss_stops_training_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Seq2Seq.loss

    def loss(self: Seq2Seq, outputs, target, label_smoothing=0.0):
        total, count = original(self, outputs, target, label_smoothing)
        return (total + float("inf"), count) if self.training else (total, count)

    monkeypatch.setattr(Seq2Seq, "loss", loss)
    with pytest.raises(TrainingDiverged, match="inf at update 1"):
        trainer(make_spec(CHECKPOINTS), tmp_path / "run").fit()


def test_cli_exits_3_naming_the_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "spec.toml", spec_data(CHECKPOINTS))
    run_dir = tmp_path / "run"
    poison_loss(monkeypatch, after=2)
    code, _out, err = cli(["train", spec, "--out", run_dir, "--quiet"], capsys)
    assert code == 3
    assert "update 3" in err and "error:" in err
    assert "Traceback" not in err
    assert latest_folder(run_dir).name == "step-00000002"
    assert_finite(latest_folder(run_dir) / "model.safetensors")


def test_non_finite_gradients_never_reach_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    poison_loss(monkeypatch, after=3, gradient_only=True)
    made = trainer(make_spec({"training": {"checkpoint_every": 1, "epochs": 1}}), run_dir)
    with pytest.raises(TrainingDiverged):
        made.fit()
    assert_finite(latest_folder(run_dir) / "model.safetensors")
