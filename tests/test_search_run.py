"""``assemble search``: a tiny Optuna search trains and evaluates trials, continues after
an interruption with exactly the missing trials, prunes invalid and oversized specs,
reuses the result of a repeated spec, and writes the table, CSV, plot and best spec."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import pytest

from assembly.spec import load_spec, loads_spec

optuna = pytest.importorskip("optuna")

from assembly.search import Choice, Space, load_space  # noqa: E402
from assembly.search.cli import add_parser  # noqa: E402
from assembly.search.run import search  # noqa: E402

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
