"""Run directories and checkpoints. Everything on disk is data, never pickled code.

A *model directory* (``assemble build --out``, a finished run) holds ``spec.toml``,
``model.safetensors`` and, in token mode, ``vocab.source.json`` / ``vocab.target.json``.
A *run directory* is a model directory plus ``checkpoints/step-N/`` folders (weights,
``training.pt`` with optimiser/schedule/RNG/regulariser tensors loaded with
``weights_only=True``, and ``state.json``), ``latest.json`` naming the newest complete
checkpoint, and the metric logs. Every file is written to a temporary name and renamed,
and ``latest.json`` moves only after a checkpoint is complete, so a run killed at any
moment resumes from its last complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from assembly.errors import UserError

LATEST = "latest.json"


def atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """safetensors weights, written to a temporary file and renamed."""
    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp))
    os.replace(tmp, path)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except Exception as error:  # safetensors raises several types for corrupt files
        raise UserError(f"{path}: cannot load weights: {error}") from None
    if missing or unexpected:
        raise UserError(f"{path}: weights do not fit the spec's model (missing: "
                        f"{sorted(missing)[:5]}, unexpected: {sorted(unexpected)[:5]})")


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module,
                    training: dict[str, Any], state: dict[str, Any], keep: int) -> Path:
    """Write checkpoint ``step`` completely, then point ``latest.json`` at it."""
    folder = run_dir / "checkpoints" / f"step-{step:08d}"
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(training, tmp / "training.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    atomic_json(run_dir / LATEST, {"checkpoint": str(folder.relative_to(run_dir))})
    _prune(run_dir, keep)
    return folder


def _prune(run_dir: Path, keep: int) -> None:
    folders = sorted(p for p in (run_dir / "checkpoints").glob("step-*") if p.suffix != ".tmp")
    for old in folders[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / LATEST
    if not pointer.exists():
        return None
    try:
        folder = run_dir / json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
    except (ValueError, KeyError) as error:
        raise UserError(f"{pointer}: unreadable checkpoint pointer ({error})") from None
    if not (folder / "state.json").exists():
        raise UserError(f"{pointer} names {folder}, which is incomplete or missing")
    return folder


def load_training(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensor state from training.pt, plain state from state.json) of a checkpoint."""
    try:
        training = torch.load(folder / "training.pt", weights_only=True, map_location="cpu")
    except Exception as error:  # a tampered or corrupt file: never retried unsafely
        raise UserError(f"{folder / 'training.pt'}: not a valid training state "
                        f"({type(error).__name__}); the checkpoint is corrupt") from None
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{folder / 'state.json'}: unreadable ({error})") from None
    return training, state
