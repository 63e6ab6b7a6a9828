"""Shared helpers for the training, decoding, checkpoint and CLI tests: tiny specs (8-d
embeddings, 16 hidden units, 200 training pairs), quiet trainers, a trained run shared by
the whole session, weight comparison, in-process and subprocess CLI calls.

Torch runs single-threaded here: on the two shared cores of the test machines intra-op
threads make these tiny models an order of magnitude slower, and a fixed thread count
keeps float results reproducible between processes.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

BASE: dict[str, Any] = {
    "name": "tiny",
    "source": {"embedding": 8, "dropout": 0.1},
    "target": {"embedding": 8, "dropout": 0.1},
    "encoder": {"hidden": 16},
    "decoder": {"hidden": 16, "attention": {"score": "dot", "dropout": 0.1}},
    "training": {"epochs": 2, "batch_size": 16, "metric": "loss", "optimizer": {"lr": 0.01}},
    "data": {
        "task": "reverse",
        "train_size": 200,
        "dev_size": 20,
        "test_size": 20,
        "min_length": 2,
        "max_length": 6,
        "symbols": 6,
    },
}
"""The tiny reverse model: 200 pairs of 2-6 symbols over 6 symbols, 13 batches an epoch."""

RESUME: dict[str, Any] = {
    "training": {"scheduled_sampling": 0.3, "checkpoint_every": 3, "keep_checkpoints": 2},
}
"""Overrides for the exact-resume tests: dropout (BASE) and scheduled sampling draw random
numbers, so a resume that restores the RNG state wrongly changes the weights."""


def merged(base: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with nested ``overrides`` applied; a ``None`` value removes
    the key (TOML has no null)."""
    out = copy.deepcopy(base)
    for override in overrides:
        for key, value in override.items():
            if value is None:
                out.pop(key, None)
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def spec_data(*overrides: dict[str, Any]) -> dict[str, Any]:
    return merged(BASE, *overrides)


def make_spec(*overrides: dict[str, Any]) -> Any:
    """A validated Spec from BASE plus overrides."""
    from assembly.spec.io import spec_from_dict

    return spec_from_dict(spec_data(*overrides), source="<test spec>")


def write_spec(path: Path, data: dict[str, Any]) -> Path:
    import tomli_w

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def with_training(spec: Any, **changes: Any) -> Any:
    import attrs

    return attrs.evolve(spec, training=attrs.evolve(spec.training, **changes))


def trainer(spec: Any, run_dir: Path, *, logs: list[str] | None = None, **kwargs: Any) -> Any:
    """A Trainer with no progress bars; log lines go to ``logs`` (or nowhere)."""
    from assembly.train.trainer import Trainer

    log: Callable[[str], None] = logs.append if logs is not None else (lambda _line: None)
    return Trainer(spec, run_dir, progress=False, log=log, **kwargs)


def resume(run_dir: Path, *, logs: list[str] | None = None) -> Any:
    return trainer(None, run_dir, resume=True, logs=logs)


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = weights(a), weights(b)
    assert left.keys() == right.keys()
    differ = [k for k in left if not torch.equal(left[k], right[k])]
    assert not differ, f"{a} and {b} differ in {differ}"


def checkpoint_folders(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))


def latest_folder(run_dir: Path) -> Path:
    import json

    return run_dir / json.loads((run_dir / "latest.json").read_text())["checkpoint"]


def records(run_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    import json

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    found = [json.loads(line) for line in lines if line.strip()]
    return [r for r in found if kind is None or r.get("kind") == kind]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > len(PNG_SIGNATURE), f"{path} is empty"
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"


# -- runs shared by the session ------------------------------------------------------------
_RUNS: dict[str, Path] = {}


def cached_run(name: str, factory: Any, make: Callable[[Path], None]) -> Path:
    """Train once per session: ``make(run_dir)`` fills a fresh folder from the pytest
    ``tmp_path_factory``; later calls with the same ``name`` get the same folder."""
    if name not in _RUNS:
        run_dir = factory.mktemp(name) / "run"
        make(run_dir)
        _RUNS[name] = run_dir
    return _RUNS[name]


REVERSE: dict[str, Any] = {
    "encoder": {"bidirectional": True, "hidden": 8},
    "decoder": {"attention": {"score": "additive", "dropout": 0.0}},
    "training": {"epochs": 10},
}
"""The shared trained run: a bidirectional encoder with additive attention, ~130 updates
(it gets most of the reverse task right: short outputs end with EOS)."""


def reverse_run(factory: Any) -> Path:
    """A trained reverse model (run directory), shared by every test of the session."""

    def make(run_dir: Path) -> None:
        trainer(make_spec(REVERSE), run_dir).fit()

    return cached_run("reverse", factory, make)


def uninterrupted_run(factory: Any) -> Path:
    """The tiny spec with RESUME overrides trained without interruption (2 epochs, 26
    updates, checkpoints every 3): the reference for the resume tests."""

    def make(run_dir: Path) -> None:
        trainer(make_spec(RESUME), run_dir).fit()

    return cached_run("uninterrupted", factory, make)


# -- command line --------------------------------------------------------------------------
def cli(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """Run ``assemble ARGV`` in this process: (exit status, stdout, stderr)."""
    from assembly.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code if isinstance(exit_.code, int) else 2
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def assemble(args: list[str], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``python -m assembly ARGS`` in a subprocess (single-threaded torch)."""
    return subprocess.run(
        [sys.executable, "-m", "assembly", *map(str, args)],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def regulariser_penalty(outputs: Any, seed: int = 11) -> torch.Tensor:
    """What regularisers add to a loss, for tests of hand-written backwards: a random
    linear function of the attention weights, the top decoder outputs and every layer's
    outputs, masked to the valid steps (as every regulariser is), so that a gradient
    reaches each of them. The weights are drawn in float32 from ``seed`` and cast, so a
    float32 and a float64 model get the same function."""
    generator = torch.Generator().manual_seed(seed)
    mask = outputs.mask.view(*outputs.mask.shape, 1)

    def weigh(t: torch.Tensor) -> torch.Tensor:
        weights = torch.randn(t.shape, generator=generator).to(t.dtype)
        return (t * weights * mask).sum()

    total = weigh(outputs.attention) + weigh(outputs.decoder_outputs)
    for layer in outputs.decoder_layer_outputs:
        total = total + weigh(layer)
    return total


def update_gradients(model: Any, batch: Any, *, inject: bool, seed: int = 3
                     ) -> tuple[Any, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One forward + backward of ``model`` on ``batch`` from fresh gradients, dropout
    seeded by ``seed``; the loss per token plus, with ``inject``, :func:`regulariser_penalty`.
    Returns (outputs, parameter gradients, input gradients (source/target, where the
    inputs require them))."""
    model.zero_grad(set_to_none=True)
    for tensor in (batch.source, batch.target):
        if tensor.requires_grad:
            tensor.grad = None
    torch.manual_seed(seed)
    outputs = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    total, count = model.loss(outputs, batch.target)
    loss = total / count
    if inject:  # what regularisers add: penalties on attention, top and layer outputs
        loss = loss + regulariser_penalty(outputs)
    loss.backward()
    params = {name: p.grad.clone() for name, p in model.named_parameters()
              if p.grad is not None}
    inputs = {name: t.grad.clone() for name, t in
              (("source", batch.source), ("target", batch.target)) if t.grad is not None}
    return outputs, params, inputs
