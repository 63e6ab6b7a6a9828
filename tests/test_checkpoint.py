"""Checkpoint files: data only (safetensors, JSON, a weights-only torch file), the
``latest.json`` pointer moves only after a complete checkpoint, old ones are pruned."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers_train import (
    RESUME,
    checkpoint_folders,
    cli,
    latest_folder,
    make_spec,
    resume,
    trainer,
    uninterrupted_run,
)

import assembly.train.checkpoint as checkpoint_module
from assembly.errors import UserError
from assembly.train.checkpoint import latest_checkpoint, load_training


@pytest.fixture
def finished(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the finished tiny run (2 epochs, checkpoints every 3 updates)."""
    copy = tmp_path / "run"
    shutil.copytree(uninterrupted_run(tmp_path_factory), copy)
    return copy


class Crash(Exception):
    pass


# -- what is on disk -----------------------------------------------------------------------
def test_checkpoints_are_data_and_load_weights_only(finished: Path) -> None:
    folder = latest_folder(finished)
    assert folder.name == "step-00000026"
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.safetensors",
        "state.json",
        "training.pt",
    ]
    training = torch.load(folder / "training.pt", weights_only=True, map_location="cpu")
    assert {"optimizer", "torch_rng", "generator", "python_rng"} <= set(training)
    state = json.loads((folder / "state.json").read_text())
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (26, 2, 0)
    with (folder / "model.safetensors").open("rb") as handle:
        header = int.from_bytes(handle.read(8), "little")
        assert json.loads(handle.read(header))  # a safetensors JSON header, not a pickle
    pickles = [
        p
        for p in finished.rglob("*")
        if p.is_file()
        and p.name != "training.pt"
        and p.read_bytes()[:2] in (b"\x80\x02", b"\x80\x04", b"\x80\x05")
    ]
    assert not pickles


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def test_a_tampered_training_file_is_refused_without_running_code(
    finished: Path, tmp_path: Path
) -> None:
    folder = latest_folder(finished)
    marker = tmp_path / "pwned"
    torch.save({"optimizer": Evil(marker)}, folder / "training.pt")
    with pytest.raises(UserError, match="not a valid training state"):
        load_training(folder)
    with pytest.raises(Exception):  # noqa: B017 - whatever it is, the resume must not go on
        resume(finished)
    assert not marker.exists()


def test_cli_resume_from_a_tampered_checkpoint_exits_2(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = latest_folder(finished)
    marker = tmp_path / "pwned"
    torch.save({"optimizer": Evil(marker)}, folder / "training.pt")
    code, _out, err = cli(["train", "--resume", "--out", finished, "--quiet"], capsys)
    assert not marker.exists()
    assert code == 2 and "training.pt" in err


def test_corrupt_checkpoint_weights_are_a_clear_error(
    finished: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (latest_folder(finished) / "model.safetensors").write_bytes(b"garbage")
    code, _out, err = cli(["train", "--resume", "--out", finished, "--quiet"], capsys)
    assert code == 2
    assert "model.safetensors: cannot load weights" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("pointer", "message"),
    [
        ('{"checkpoint": "checkpoints/step-00000099"}', "incomplete or missing"),
        ("{not json", "unreadable checkpoint pointer"),
    ],
)
def test_a_bad_pointer_is_a_clear_error(
    finished: Path, capsys: pytest.CaptureFixture[str], pointer: str, message: str
) -> None:
    (finished / "latest.json").write_text(pointer)
    with pytest.raises(UserError, match=message):
        latest_checkpoint(finished)
    code, _out, err = cli(["train", "--resume", "--out", finished, "--quiet"], capsys)
    assert code == 2 and message in err


# -- the pointer moves only after a complete checkpoint ------------------------------------
def fail_pointer_write(monkeypatch: pytest.MonkeyPatch, on_call: int) -> None:
    original = checkpoint_module.atomic_json
    calls = {"n": 0}

    def atomic_json(path: Path, data: object) -> None:
        calls["n"] += 1
        if calls["n"] == on_call:
            raise Crash("died between the checkpoint folder and the pointer")
        original(path, data)

    monkeypatch.setattr(checkpoint_module, "atomic_json", atomic_json)


def test_crash_before_the_pointer_moves_resumes_from_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    fail_pointer_write(monkeypatch, on_call=2)  # checkpoint 1 at update 3, 2 at update 6
    with pytest.raises(Crash):
        trainer(make_spec(RESUME), run_dir).fit()
    monkeypatch.undo()
    assert latest_folder(run_dir).name == "step-00000003"
    assert checkpoint_folders(run_dir) == ["step-00000003", "step-00000006"]
    resumed = resume(run_dir)
    assert resumed.step == 3
    resumed.fit()
    assert checkpoint_folders(run_dir) == ["step-00000024", "step-00000026"]
    assert latest_folder(run_dir).name == "step-00000026"


def test_crash_while_writing_a_checkpoint_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    original = checkpoint_module.save_model
    calls = {"n": 0}

    def save_model(model: torch.nn.Module, path: str) -> None:
        calls["n"] += 1
        original(model, path)
        if calls["n"] == 2:
            raise Crash("died half-way through checkpoint 2")

    monkeypatch.setattr(checkpoint_module, "save_model", save_model)
    with pytest.raises(Crash):
        trainer(make_spec(RESUME), run_dir).fit()
    monkeypatch.undo()
    assert checkpoint_folders(run_dir) == ["step-00000003", "step-00000006.tmp"]
    assert latest_folder(run_dir).name == "step-00000003"
    resumed = resume(run_dir)
    assert resumed.step == 3
    resumed.fit()
    assert checkpoint_folders(run_dir) == ["step-00000024", "step-00000026"]


def test_crash_before_the_first_pointer_leaves_a_usable_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    fail_pointer_write(monkeypatch, on_call=1)
    with pytest.raises(Crash):
        trainer(make_spec(RESUME), run_dir).fit()
    monkeypatch.undo()
    assert not (run_dir / "latest.json").exists()
    problems = []
    for attempt in (lambda: resume(run_dir), lambda: trainer(make_spec(RESUME), run_dir)):
        try:
            attempt()
        except UserError as error:
            problems.append(str(error))
    assert len(problems) < 2, problems


# -- pruning -------------------------------------------------------------------------------
def test_old_checkpoints_are_pruned(finished: Path, tmp_path: Path) -> None:
    assert checkpoint_folders(finished) == ["step-00000024", "step-00000026"]
    run_dir = tmp_path / "keep1"
    spec = make_spec(RESUME, {"training": {"keep_checkpoints": 1, "epochs": 1}})
    trainer(spec, run_dir).fit()
    assert checkpoint_folders(run_dir) == ["step-00000013"]
    assert latest_folder(run_dir).name == "step-00000013"
