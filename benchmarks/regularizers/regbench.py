"""Shared pieces of the regulariser reproductions: the registry, a quiet training run with
the normal trainer, teacher-forced passes over a dataset, and the JSON result file."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def registry() -> Any:
    """Built-ins plus the regulariser plugin (and any installed plugins)."""
    from assembly_regularizers import RegularizersPlugin

    from assembly.registry import make_registry

    made = make_registry(block=("regularizers",), plugins=[RegularizersPlugin()])
    return made


def train(spec: Any, run_dir: Path, reg: Any) -> tuple[Any, Any, float]:
    """Train ``spec`` into ``run_dir`` (replaced) with the normal trainer; returns the
    trainer, its result and the wall seconds."""
    import shutil

    from assembly.train.trainer import Trainer

    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    trainer = Trainer(spec, run_dir, registry=reg, progress=False, log=lambda _: None,
                      device="cpu")
    result = trainer.fit()
    return trainer, result, time.perf_counter() - started


def batches(dataset: Any, batch_size: int = 256) -> Iterator[Any]:
    """Evaluation batches of a token dataset (dataset order)."""
    from assembly.data.batching import BucketBatchSampler, collate_tokens, make_loader

    sampler = BucketBatchSampler(dataset.target_lengths, batch_size, shuffle=False,
                                 source_lengths=dataset.source_lengths)
    yield from make_loader(dataset, sampler, collate_tokens)


@torch.no_grad()
def teacher_forced(model: Any, dataset: Any) -> Iterator[Any]:
    """(batch, ForwardOutputs) of the eval-mode model over ``dataset``."""
    model.eval()
    for batch in batches(dataset):
        yield batch, model(batch.source, batch.source_lengths, batch.target,
                           batch.target_lengths)


def token_dataset(pairs: list[tuple[list[str], list[str]]], source_vocab: Any,
                  target_vocab: Any) -> Any:
    from assembly.data.batching import TokenPairDataset

    return TokenPairDataset(pairs, source_vocab, target_vocab)


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json with the machine and torch version added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "torch": torch.__version__, "threads":
               torch.get_num_threads(), "machine": platform.machine(),
               "python": platform.python_version(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summarise(runs: list[dict[str, Any]], setting: str, values: list[float],
              digits: int) -> dict[str, dict[str, float]]:
    """Per value of ``setting`` (e.g. the penalty factor), the mean over seeds of every
    measured field of ``runs``, keyed ``"<setting>=<value>"``."""
    summary = {}
    for value in values:
        mine = [r for r in runs if r[setting] == value]
        summary[f"{setting}={value:g}"] = {key: round(mean([r[key] for r in mine]), digits)
                                           for key in mine[0] if key not in (setting, "seed")}
    return summary


def report(path: Path, summary: dict[str, dict[str, float]]) -> None:
    """Print where the result went and the summary, one setting a line."""
    print(f"wrote {path}")
    for name, values in summary.items():
        print(name, values)
