"""The one-time slowdown warning: an interval far below the fastest so far, on more than
one torch thread, is reported once with the remedy; on one thread it never is."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers_train import make_spec, trainer

import assembly.train.slowdown as slowdown
from assembly.train.slowdown import SlowdownWatch


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_sharp_drop_is_reported_once() -> None:
    lines: list[str] = []
    watch = SlowdownWatch(2, lines.append)
    for step, rate in enumerate([9_000.0, 24_000.0, 20_000.0, 9_000.0, 7_000.0, 500.0]):
        watch.observe(rate, (step + 1) * 20)
    assert len(lines) == 1
    assert lines[0].startswith("warning: training slowed to 7,000 tokens/s at update 100, "
                               "3.4x below its fastest interval (24,000 tokens/s), on 2 torch "
                               "threads.")
    assert "--threads 1 (training.threads = 1)" in lines[0]


def test_a_slow_start_and_smaller_drops_are_not_reported() -> None:
    lines: list[str] = []
    watch = SlowdownWatch(4, lines.append)
    for rate in [1_000.0, 24_000.0, 8_100.0, 12_000.0, 24_500.0, 8_200.0]:
        watch.observe(rate, 20)
    assert lines == []


def test_one_thread_is_never_blamed() -> None:
    lines: list[str] = []
    watch = SlowdownWatch(1, lines.append)
    for rate in [24_000.0, 100.0]:
        watch.observe(rate, 20)
    assert lines == []


@pytest.mark.parametrize("threads", [1, 2])
def test_the_trainer_feeds_the_logged_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    # every interval after the first counts as a drop: the wiring is what is tested here
    monkeypatch.setattr(slowdown, "SLOWDOWN", 0.0)
    logs: list[str] = []
    run = tmp_path / "run"
    trainer(make_spec({"training": {"max_updates": 60, "epochs": 1, "threads": threads},
                       "data": {"train_size": 64 * 3, "dev_size": 4, "test_size": 4}}),
            run, logs=logs).fit()
    warnings = [line for line in logs if line.startswith("warning: training slowed")]
    first = next(r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                 if r["kind"] == "train")
    if threads == 1:
        assert warnings == []
    else:
        assert len(warnings) == 1
        # the log keeps one decimal and the warning none: they may differ in the last digit
        reported = re.search(r"slowed to ([\d,]+) tokens/s at update (\d+),", warnings[0])
        assert reported is not None
        assert abs(float(reported[1].replace(",", "")) - first["tokens_per_s"]) <= 1.0
        assert int(reported[2]) == first["step"]
