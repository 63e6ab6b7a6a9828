"""The trainer learns, and its knobs do what they say: label smoothing, gradient clipping,
early stopping, the length curriculum, length bucketing, metric logs and plots."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_train import (
    assert_png,
    make_spec,
    records,
    reverse_run,
    trainer,
    with_training,
)

from assembly.build import build_model
from assembly.data.batching import collate_tokens
from assembly.evaluate import dataset_loss
from assembly.spec import load_spec
from assembly.train.data_setup import prepare_data
from assembly.train.trainer import Trainer

SHORT = {"data": {"train_size": 48}}  # 3 batches of 16 an epoch


def first_batch(made: Trainer) -> Any:
    made.sampler.set_epoch(0)
    indices = next(iter(made.sampler))
    return collate_tokens([made.data.train[i] for i in indices])


def test_dev_loss_drops_substantially(tmp_path_factory: pytest.TempPathFactory) -> None:
    run_dir = reverse_run(tmp_path_factory)
    spec = load_spec(run_dir / "spec.toml")
    untrained = build_model(spec, seed=spec.training.seed).eval()
    dev_data = prepare_data(spec, Path("."), run_dir).dev
    before = dataset_loss(untrained, dev_data, 64, torch.device("cpu"))
    dev = records(run_dir, "dev")
    after = dev[-1]["loss"]
    assert after < 0.4 * before, (before, after)
    assert dev[-1]["token_accuracy"] > dev[0]["token_accuracy"]


def test_label_smoothing_changes_the_loss(tmp_path: Path) -> None:
    made = trainer(make_spec(), tmp_path / "run")
    batch = first_batch(made)
    model = made.model.eval()
    with torch.no_grad():
        outputs = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
        plain, count = model.loss(outputs, batch.target)
        smoothed, count_smoothed = model.loss(outputs, batch.target, 0.2)
    assert int(count) == int(count_smoothed) == int(batch.target_lengths.sum())
    assert not torch.isclose(plain, smoothed)
    # and the trainer passes it on: the first update's logged loss differs
    logged = []
    for smoothing in (0.0, 0.2):
        other = trainer(
            with_training(make_spec(), label_smoothing=smoothing), tmp_path / f"run-{smoothing}"
        )
        logged.append(other.update(first_batch(other))["loss"])
    assert logged[0] != pytest.approx(logged[1])


def total_grad_norm(parameters: Any) -> float:
    grads = [p.grad.detach().flatten() for p in parameters if p.grad is not None]
    return float(torch.cat(grads).norm())


@pytest.mark.parametrize("clip", [0.05, None])
def test_gradient_clipping_caps_the_norm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip: float | None
) -> None:
    made = trainer(with_training(make_spec(), clip=clip), tmp_path / "run")
    seen: list[float] = []
    step = made.optimizer.step

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(total_grad_norm(made.model.parameters()))
        return step(*args, **kwargs)

    monkeypatch.setattr(made.optimizer, "step", spy)
    values = made.update(first_batch(made))
    if clip is None:
        assert values["grad_norm"] == pytest.approx(seen[0], rel=1e-4)  # logged, not clipped
        assert seen[0] > 0.05  # what the clipped run caps
    else:
        assert values["grad_norm"] > clip  # the logged norm is the norm before clipping
        assert seen[0] == pytest.approx(clip, rel=1e-3)


def test_early_stopping_after_evaluations_without_improvement(tmp_path: Path) -> None:
    # lr so small that exact match stays 0: evaluation 1 sets the best, 2 and 3 do not beat it
    spec = make_spec(
        SHORT,
        {
            "training": {
                "epochs": 10,
                "early_stopping": 2,
                "metric": "exact_match",
                "optimizer": {"lr": 1e-7},
            }
        },
    )
    made = trainer(spec, tmp_path / "run")
    result = made.fit()
    assert result.stopped_early
    assert result.updates == 9 and made.bad_evaluations == 2
    assert [r["exact_match"] for r in records(tmp_path / "run", "dev")] == [0.0, 0.0, 0.0]


def test_an_evaluation_is_not_repeated_at_the_same_update(tmp_path: Path) -> None:
    spec = make_spec(SHORT, {"training": {"epochs": 3, "eval_every": 3, "early_stopping": 1}})
    result = trainer(spec, tmp_path / "run").fit()
    steps = [r["step"] for r in records(tmp_path / "run", "dev")]
    assert steps == sorted(set(steps))
    assert result.updates == 9 and not result.stopped_early


def test_reaching_max_updates_is_not_early_stopping(tmp_path: Path) -> None:
    result = trainer(make_spec(SHORT, {"training": {"max_updates": 2}}), tmp_path / "run").fit()
    assert result.updates == 2 and not result.stopped_early


@pytest.mark.parametrize(("end", "limits"), [(None, [3, 5, 7]), (4, [3, 4, 4])])
def test_curriculum_limits_target_lengths_in_early_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: int | None, limits: list[int]
) -> None:
    curriculum: dict[str, Any] = {"start": 3, "step": 2, "every": 1}
    if end is not None:
        curriculum["end"] = end
    spec = make_spec(SHORT, {"training": {"epochs": 3, "curriculum": curriculum}})
    seen: dict[int, list[int]] = {}
    original = Trainer.update

    def spy(self: Trainer, batch: Any) -> dict[str, float]:
        seen.setdefault(self.epoch, []).extend(batch.target_lengths.tolist())
        return original(self, batch)

    monkeypatch.setattr(Trainer, "update", spy)
    made = trainer(spec, tmp_path / "run")
    lengths = made.data.train.target_lengths  # EOS included: 3..7
    made.fit()
    assert sorted(seen) == [0, 1, 2]
    for epoch, limit in enumerate(limits):
        assert max(seen[epoch]) <= limit
        assert sorted(seen[epoch]) == sorted(n for n in lengths if n <= limit)
    assert (7 in seen[2]) == (end is None)


def test_length_bucketing_groups_similar_lengths(tmp_path: Path) -> None:
    def spreads(bucketing: bool) -> tuple[float, list[int]]:
        made = trainer(
            make_spec({"training": {"bucketing": bucketing}}), tmp_path / f"run-{bucketing}"
        )
        made.sampler.set_epoch(0)
        batches = made.sampler.epoch_batches()
        lengths = made.data.train.target_lengths
        spread = statistics.mean(
            max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches
        )
        return spread, sorted(i for b in batches for i in b)

    bucketed, covered = spreads(True)
    mixed, covered_mixed = spreads(False)
    assert covered == covered_mixed == list(range(200))
    assert bucketed <= 1.0 < mixed


def test_metrics_files_have_train_and_dev_records(tmp_path_factory: pytest.TempPathFactory) -> None:
    run_dir = reverse_run(tmp_path_factory)
    train, dev = records(run_dir, "train"), records(run_dir, "dev")
    # every 20 updates and at the end of each 13-update epoch
    expected = sorted(set(range(20, 131, 20)) | set(range(13, 131, 13)))
    assert [r["step"] for r in train] == expected
    assert {"loss", "lr", "grad_norm", "epoch", "tokens_per_s"} <= set(train[0])
    assert all(r["tokens_per_s"] > 0 for r in train)
    assert len(dev) == 10 and [r["step"] for r in dev] == list(range(13, 131, 13))
    for key in ("loss", "token_accuracy", "exact_match", "bleu", "chrf", "cer", "wer"):
        assert key in dev[-1]
    with (run_dir / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(train) + len(dev)
    assert {row["kind"] for row in rows} == {"train", "dev"}
    by_step = {(r["kind"], int(r["step"])): r for r in rows}
    assert float(by_step[("dev", 130)]["loss"]) == pytest.approx(dev[-1]["loss"])


def test_dev_records_name_the_epoch_they_evaluate(tmp_path_factory: pytest.TempPathFactory) -> None:
    run_dir = reverse_run(tmp_path_factory)
    assert [r["epoch"] for r in records(run_dir, "dev")] == list(range(1, 11))


def test_plots_are_pngs(tmp_path_factory: pytest.TempPathFactory) -> None:
    run_dir = reverse_run(tmp_path_factory)
    assert_png(run_dir / "learning_curves.png")
    attention = sorted(run_dir.glob("attention_*.png"))
    assert [p.name for p in attention] == ["attention_1.png", "attention_2.png", "attention_3.png"]
    for path in attention:
        assert_png(path)


def test_evaluations_and_checkpoints_stay_off_the_training_clock(tmp_path: Path) -> None:
    """Throughput (the result's and each record's tokens_per_s) counts training only."""
    import time

    spec = make_spec({"training": {"max_updates": 4, "epochs": 1, "eval_every": 2,
                                   "checkpoint_every": 2},
                      "data": {"train_size": 256, "dev_size": 4, "test_size": 4}})
    run = trainer(spec, tmp_path / "run")
    evaluate, checkpoint = run.evaluate_dev, run.checkpoint

    def slow_evaluation() -> dict[str, float]:
        time.sleep(1.0)
        return evaluate()

    def slow_checkpoint() -> None:
        time.sleep(1.0)
        checkpoint()

    run.evaluate_dev, run.checkpoint = slow_evaluation, slow_checkpoint
    begin = time.perf_counter()
    result = run.fit()
    wall = time.perf_counter() - begin
    assert wall > 5.0  # 2 evaluations + 3 checkpoints slept inside fit
    assert result.seconds < wall - 4.5  # none of that sleep counts as training
    rates = [r["tokens_per_s"] for r in records(tmp_path / "run", "train")]
    # the record at update 4 covers updates 1-4, with an evaluation and a checkpoint
    # in between: its rate must be of training alone
    assert rates and min(rates) > result.train_tokens_per_second / 3
