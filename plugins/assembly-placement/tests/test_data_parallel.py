"""Data-parallel training on this machine with gloo.

- Two processes follow a single process that takes the union of their batches (same
  logged losses, same weights): the trainer normalises by the global token count.
- A data-parallel run interrupted after a checkpoint and resumed ends with exactly the
  weights of an uninterrupted one; rank 0 alone writes the run.
- Rank 0 alone decodes the dev set; every rank acts on its results (best value, plateau
  schedule, early stopping) and stops at the same update.
- ``assemble train --nproc 2`` launches torchrun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from placement_testlib import (
    DDP_TOML,
    ddp_worker,
    parameters,
    registry,
    train_steps,
    union_batches,
)

WORLD = 2
UPDATES = 4
LOSS_TOLERANCE = 1e-5  # relative, per update
PARAMETER_TOLERANCE = 1e-5  # absolute, after UPDATES Adam updates

pytestmark = pytest.mark.skipif(not torch.distributed.is_available()
                                or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three runs of :func:`placement_testlib.ddp_worker`, started once."""
    base = tmp_path_factory.mktemp("ddp")
    mp.spawn(ddp_worker, args=(WORLD, str(base / "rendezvous"), str(base), UPDATES),
             nprocs=WORLD, join=True)
    return base


def test_two_processes_follow_one_process_on_the_union_of_their_batches(
        ddp_runs: Path, tmp_path: Path) -> None:
    from assembly.spec import loads_spec
    from assembly.train.trainer import Trainer

    distributed = torch.load(ddp_runs / "trajectory.pt", weights_only=True)
    reg = registry()
    single = Trainer(loads_spec(DDP_TOML, registry=reg), tmp_path / "single", registry=reg,
                     progress=False, log=lambda line: None)
    assert single.world == 1
    losses = train_steps(single, union_batches(single, WORLD)[:UPDATES])

    assert distributed["losses"] == pytest.approx(losses, rel=LOSS_TOLERANCE)
    for name, value in parameters(single.model).items():
        torch.testing.assert_close(distributed["parameters"][name], value,
                                   atol=PARAMETER_TOLERANCE, rtol=0, msg=name)


def test_resumed_data_parallel_run_ends_like_an_uninterrupted_one(ddp_runs: Path) -> None:
    from safetensors.torch import load_file

    straight = load_file(ddp_runs / "straight" / "model.safetensors")
    resumed = load_file(ddp_runs / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], atol=0, rtol=0, msg=name)
    for run in ("straight", "resumed"):
        steps = [r["step"] for r in _records(ddp_runs / run) if r["kind"] == "train"]
        assert steps == sorted(set(steps))  # rank 0 alone logged; nothing twice


def test_rank_0_alone_evaluates_and_every_rank_takes_the_same_decisions(
        ddp_runs: Path) -> None:
    ranks = [torch.load(ddp_runs / f"early-{rank}.pt", weights_only=True)
             for rank in range(WORLD)]
    main = ranks[0]
    assert main["evaluations"] == len(main["seen"]) >= 2
    for other in ranks[1:]:
        assert other["evaluations"] == 0  # waited for rank 0's results
        assert {k: v for k, v in other.items() if k != "evaluations"} == \
            {k: v for k, v in main.items() if k != "evaluations"}
    dev = [r for r in _records(ddp_runs / "early") if r["kind"] == "dev"]
    assert [r["loss"] for r in dev] == [seen["loss"] for seen in main["seen"]]


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_assemble_train_nproc_launches_torchrun(tmp_path: Path) -> None:
    spec = tmp_path / "ddp.toml"
    spec.write_text(DDP_TOML.replace("max_updates = 6", "max_updates = 4"))
    run = tmp_path / "run"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "assembly", "train", str(spec), "--out", str(run), "--nproc",
         str(WORLD), "--quiet"], capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("trained 4 updates") == 1  # rank 0 alone reports
    assert (run / "model.safetensors").exists() and (run / "spec.toml").exists()
    assert any(p.name.startswith("step-") for p in (run / "checkpoints").iterdir())
    assert len([r for r in _records(run) if r["kind"] == "dev"]) == 1  # written once
