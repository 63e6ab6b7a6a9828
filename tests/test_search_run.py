"""``assemble search``: a tiny Optuna search trains and evaluates trials, continues after
an interruption with exactly the missing trials, prunes invalid and oversized specs,
reuses the result of a repeated spec, and writes the table, CSV, plot and best spec."""

from __future__ import annotations

import argparse
import csv
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from assembly.errors import UserError
from assembly.spec import load_spec, loads_spec

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from assembly.search import Choice, Space, load_space  # noqa: E402
from assembly.search.cli import add_parser  # noqa: E402
from assembly.search.run import HEARTBEAT_ATTR, search  # noqa: E402

BASE = """
name = "tiny"
[source]
embedding = 4
[target]
embedding = 4
[encoder]
hidden = 4
[decoder]
hidden = 4
[training]
batch_size = 8
metric = "loss"
[data]
task = "reverse"
train_size = 24
dev_size = 4
test_size = 4
min_length = 2
max_length = 4
symbols = 3
"""
"""A model of a few hundred parameters on 24 examples: a trial takes well under a second."""

SPACE = """
[[choice]]
path = "encoder.hidden"
values = [4, 8]

[[range]]
path = "training.optimizer.lr"
low = 1e-3
high = 1e-2
log = true

[[choice]]
path = "decoder.attention"
values = [false, true]

[[when]]
path = "decoder.attention"
equals = true
  [[when.choice]]
  path = "decoder.attention.score"
  values = ["dot", "general"]
"""


def quiet(line: str) -> None:
    return None


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "space.toml").write_text(SPACE)
    return tmp_path / "base.toml", tmp_path / "space.toml"


def _cli(*arguments: str) -> int:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["search", *arguments])
    return int(args.handler(args))


def test_search_runs_resumes_and_reports(files: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    base, space = files
    out = tmp_path / "search"
    common = ["--space", str(space), "--budget-updates", "2", "--out", str(out)]
    assert _cli(str(base), *common, "--trials", "2") == 0
    first = capsys.readouterr().out
    assert "trial" in first and "best: trial" in first
    assert len(list((out / "trials").iterdir())) == 2

    # as if interrupted after two trials: asking for three runs exactly one more
    assert _cli(str(base), *common, "--trials", "3") == 0
    capsys.readouterr()
    assert len(list((out / "trials").iterdir())) == 3
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    assert all(r["state"] == "COMPLETE" and float(r["value"]) > 0 for r in rows)
    assert {"encoder.hidden", "training.optimizer.lr", "decoder.attention"} <= set(rows[0])
    assert (out / "search.png").stat().st_size > 1000
    best = load_spec(out / "best.toml")
    best_row = min(rows, key=lambda r: float(r["value"]))
    assert best.encoder.hidden == int(best_row["encoder.hidden"])
    assert best.training.max_updates is None  # its own training settings, not the budget

    # enough trials already: nothing runs
    registry = load_space(space, load_spec(base)).registry
    result = search(load_spec(base), load_space(space, load_spec(base), registry), out,
                    trials=3, budget_updates=2, registry=registry, log=quiet)
    assert result.ran == 0 and len(result.rows) == 3
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    assert all(t.user_attrs[HEARTBEAT_ATTR] for t in study.trials)  # judged by heartbeat


def test_trials_an_interrupted_search_left_running_are_marked_failed(
        registry: Any, tmp_path: Path) -> None:
    """Trials 0 and 1 were left running by killed searches (one with heartbeats, one
    without) long enough ago; trials 2 and 3 have just started in other processes (one
    beats, one has not yet): only 0 and 1 are failed, and the log says so."""
    base = loads_spec(BASE, registry=registry)
    space = Space(base, [Choice(path="encoder.hidden", values=(4,))], registry)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats are experimental; ask() warns with them
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
        study = optuna.create_study(storage=storage, study_name="tiny", direction="minimize")

        def start(beats: bool) -> Any:
            trial = study.ask()
            if beats:
                trial.set_user_attr(HEARTBEAT_ATTR, True)
                storage.record_heartbeat(trial._trial_id)
            return trial

        start(beats=True), start(beats=False)
        time.sleep(3.1)  # SQLite's clock has whole seconds: 3 s are surely more than 2
        start(beats=True), start(beats=False)
    logs: list[str] = []
    result = search(base, space, tmp_path / "search", trials=2, budget_updates=1,
                    storage=url, study="tiny", registry=registry, stale_after=2,
                    log=logs.append)
    assert [row.state for row in result.rows] == ["FAIL", "FAIL", "RUNNING", "RUNNING"]
    assert result.rows[0].note == "interrupted: left running, marked failed"
    assert result.ran == 0  # the two failed trials count as finished
    assert any(line.startswith("study 'tiny': trials 0, 1 were left running by an "
                               "interrupted search") for line in logs), logs
    assert any("trials 2, 3 are running elsewhere" in line for line in logs), logs
    states = [t.state for t in optuna.load_study(study_name="tiny", storage=url).trials]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING,
                      TrialState.RUNNING]


def test_stale_after_must_be_positive(registry: Any, tmp_path: Path) -> None:
    base = loads_spec(BASE, registry=registry)
    space = Space(base, [Choice(path="encoder.hidden", values=(4,))], registry)
    with pytest.raises(UserError, match="--stale-after must be at least 1"):
        search(base, space, tmp_path, trials=1, budget_updates=1, stale_after=0,
               registry=registry, log=quiet)


def test_invalid_oversized_and_repeated_specs_are_not_trained(registry: Any,
                                                              tmp_path: Path) -> None:
    base = loads_spec(BASE, registry=registry)
    out = tmp_path / "search"
    repeated = Space(base, [Choice(path="encoder.hidden", values=(4,))], registry)
    result = search(base, repeated, out, trials=2, budget_updates=1, registry=registry,
                    storage=f"sqlite:///{tmp_path / 'shared.db'}", study="repeat", log=quiet)
    assert [r.state for r in result.rows] == ["COMPLETE", "COMPLETE"]
    assert result.rows[1].note == "same spec as trial 0"
    assert result.rows[1].value == result.rows[0].value
    assert len(list((out / "trials").iterdir())) == 1

    off = Space(base, [Choice(path="decoder.attention.score", values=("dot",))], registry)
    result = search(base, off, tmp_path / "off", trials=1, budget_updates=1,
                    registry=registry, log=quiet)
    assert result.rows[0].state == "PRUNED" and "decoder.attention is off" in result.rows[0].note
    assert result.best is None and not (tmp_path / "off" / "best.toml").exists()

    big = Space(base, [Choice(path="encoder.hidden", values=(64,))], registry)
    result = search(base, big, tmp_path / "big", trials=1, budget_updates=1,
                    registry=registry, max_parameters=1000, log=quiet)
    assert result.rows[0].state == "PRUNED" and "> 1,000" in result.rows[0].note
    assert not (tmp_path / "big" / "trials").exists()
