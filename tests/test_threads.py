"""``training.threads``: the trainer sets torch's intra-op thread count; ``--threads N``
overrides it for ``train`` and sets it for ``generate`` / ``evaluate`` (which otherwise
leave torch's default: decoding batches gain from every core); a negative count is a spec
error with its path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers_train import cli, make_spec, spec_data, trainer, write_spec

from assembly.errors import SpecError
from assembly.run import load_run
from assembly.spec import load_spec, loads_spec

ONE_UPDATE = {"training": {"max_updates": 1, "epochs": 1},
              "data": {"train_size": 16, "dev_size": 4, "test_size": 4}}


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_trainer_sets_the_spec_thread_count(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    seen: list[int] = []
    model = trainer(make_spec(ONE_UPDATE, {"training": {"threads": 3}}), tmp_path / "run")
    original = model.update

    def update(batch: object) -> dict[str, float]:
        seen.append(torch.get_num_threads())
        return original(batch)

    model.update = update  # type: ignore[method-assign]
    model.fit()
    assert seen == [3]
    assert torch.get_num_threads() == 3


def test_zero_threads_leaves_torch_alone(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    trainer(make_spec(ONE_UPDATE), tmp_path / "run").fit()
    assert torch.get_num_threads() == 1


def test_the_trainer_argument_overrides_the_spec(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    trainer(make_spec(ONE_UPDATE, {"training": {"threads": 3}}), tmp_path / "run", threads=2)
    assert torch.get_num_threads() == 2


def test_load_run_leaves_threads_alone_unless_told(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer(make_spec(ONE_UPDATE, {"training": {"threads": 2}}), run).fit()
    torch.set_num_threads(1)
    load_run(run)  # training.threads is for training: decoding batches gain from all cores
    assert torch.get_num_threads() == 1
    load_run(run, threads=3)
    assert torch.get_num_threads() == 3


def test_the_command_line_flag_overrides_the_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = write_spec(tmp_path / "tiny.toml", spec_data(ONE_UPDATE,
                                                             {"training": {"threads": 2}}))
    run = tmp_path / "run"
    torch.set_num_threads(1)
    code, _out, err = cli(["train", spec_file, "--out", run, "--quiet", "--threads", "3"],
                          capsys)
    assert code == 0, err
    assert torch.get_num_threads() == 3
    assert load_spec(run / "spec.toml").training.threads == 2  # the run keeps its own value
    torch.set_num_threads(1)
    code, _out, err = cli(["generate", run, "--input", "a b"], capsys)
    assert code == 0, err
    assert torch.get_num_threads() == 1  # not the run's training value
    code, _out, err = cli(["generate", run, "--input", "a b", "--threads", "2"], capsys)
    assert code == 0, err
    assert torch.get_num_threads() == 2
    code, _out, err = cli(["generate", run, "--input", "a b", "--threads", "1"], capsys)
    assert code == 0, err
    assert torch.get_num_threads() == 1
    code, _out, err = cli(["evaluate", run, "--threads", "3"], capsys)
    assert code == 0, err
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("command", ["train", "generate", "evaluate"])
def test_a_negative_flag_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, _out, err = cli([command, tmp_path, "--out", tmp_path / "run", "--threads", "-1"]
                          if command == "train" else [command, tmp_path, "--threads", "-1"],
                          capsys)
    assert code == 2
    assert "--threads: must be an integer >= 0; got '-1'" in err


@pytest.mark.parametrize(("value", "message"), [
    ("-1", "threads must be >= 0; got -1"),
    ("1.5", "expected an integer, got a number (1.5)"),
])
def test_a_bad_spec_value_is_a_spec_error_with_its_path(value: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        loads_spec(f"[training]\nthreads = {value}\n")
    assert [(p.message, p.path) for p in caught.value.problems] == [
        (message, "$.training.threads")]
