"""The ``assemble`` command line: check, build, plugins, components, train (refusals,
resume), generate. User errors exit with 2, one clear line each, never a traceback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers_train import (
    ROOT,
    assert_png,
    cli,
    reverse_run,
    spec_data,
    subprocess_env,
    weights,
    write_spec,
)

from assembly.build import build_model
from assembly.run import load_run
from assembly.spec import load_spec


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reverse_run(tmp_path_factory)


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    return write_spec(
        tmp_path / "tiny.toml",
        spec_data({"source": {"vocab_size": 10}, "target": {"vocab_size": 10}}),
    )


BROKEN = """name = "broken"
[encoder]
hiden = 3
merge = "avg"
[encoder.cell]
type = "lstn"
"""


# -- check ---------------------------------------------------------------------------------
def test_check_prints_plans_and_totals(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = sorted((ROOT / "specs").glob("*.toml")) or [spec_file]
    code, out, err = cli(["check", *specs], capsys)
    assert code == 0, err
    for spec in specs:
        assert re.search(rf"^{re.escape(str(spec))}: ok — .+, [\d,]+ parameters$", out, re.M)
    assert out.count("total parameters:") == len(specs)


def test_check_a_broken_spec_lists_every_problem_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(BROKEN)
    code, out, err = cli(["check", broken], capsys)
    assert code == 2
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert lines and all(
        re.fullmatch(rf"{re.escape(str(broken))}: .+ @ \$[\w.\[\]]*", line) for line in lines
    ), lines
    assert any(
        "'lstn'" in line
        and "did you mean 'lstm'" in line
        and line.endswith("@ $.encoder.cell.type")
        for line in lines
    )
    assert any("'hiden'" in line and "did you mean 'hidden'" in line for line in lines)
    assert any("'avg'" in line and line.endswith("@ $.encoder.merge") for line in lines)


def test_check_goes_on_after_a_broken_spec(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(BROKEN)
    code, out, err = cli(["check", broken, spec_file], capsys)
    assert code == 2
    assert f"{spec_file}: ok" in out and str(broken) in err


def test_check_json_format(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = cli(["check", spec_file, "--format", "json"], capsys)
    assert code == 0
    [report] = json.loads(out)
    assert report["file"] == str(spec_file)
    assert report["sampler"].startswith("greedy")


def test_check_imports_no_torch(spec_file: Path) -> None:
    code = (
        f"import sys, assembly.cli as c; rc = c.main(['check', {str(spec_file)!r}]); "
        "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "parameters" in done.stdout


def test_a_missing_spec_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = cli(["check", tmp_path / "nowhere.toml"], capsys)
    assert code == 2
    assert "nowhere.toml" in err and "Traceback" not in err


# -- build, plugins, components ------------------------------------------------------------
def test_build_writes_spec_and_weights(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "model"
    code, out, err = cli(["build", spec_file, "--out", out_dir, "--seed", 3], capsys)
    assert code == 0, err
    assert "total parameters" in out and f"wrote {out_dir}/spec.toml" in out
    assert load_spec(out_dir / "spec.toml") == load_spec(spec_file)
    expected = build_model(load_spec(spec_file), seed=3).state_dict()
    written = weights(out_dir / "model.safetensors")
    assert written.keys() == expected.keys()
    assert all(torch.equal(written[k], expected[k]) for k in expected)


def test_load_run_loads_a_built_model_directory(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "model"
    code, _out, err = cli(["build", spec_file, "--out", out_dir, "--seed", 3], capsys)
    assert code == 0, err
    loaded = load_run(out_dir)
    expected = build_model(load_spec(spec_file), seed=3).state_dict()
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_build_json_planned_equals_built(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = cli(["build", spec_file, "--format", "json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["total_parameters"] == report["planned_parameters"] > 0
    assert sum(row["parameters"] for row in report["rows"]) == report["total_parameters"]


def test_plugins_lists_the_built_ins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = cli(["plugins"], capsys)
    assert code == 0
    for kind, name in (
        ("cell", "lstm"),
        ("cell", "gru"),
        ("sampler", "greedy"),
        ("placement", "single-device"),
    ):
        assert re.search(rf"^\s+{kind}\s+{name}\s", out, re.M), (kind, name)


def test_components_shows_a_cells_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = cli(["components", "cell", "lstm"], capsys)
    assert code == 0
    assert out.startswith("cell lstm")
    assert re.search(r"^\s+forget_bias: float \(default 1\.0\)$", out, re.M)
    assert re.search(r"^\s+bias: bool \(default True\)$", out, re.M)
    assert "one of" in out  # init's allowed values


def test_components_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli(["components", "cells"], capsys)
    assert code == 2 and "unknown component kind" in err


# -- train ---------------------------------------------------------------------------------
def test_train_refuses_a_directory_that_holds_a_run(
    tmp_path: Path, run_dir: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*")}
    code, _out, err = cli(["train", spec_file, "--out", copy, "--quiet"], capsys)
    assert code == 2
    assert "already holds a run" in err and "--resume" in err
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*")} == before


def test_resume_without_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli(["train", "--resume", "--out", tmp_path / "empty", "--quiet"], capsys)
    assert code == 2 and "nothing to resume" in err


def test_train_without_a_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli(["train", "--out", tmp_path / "run"], capsys)
    assert code == 2 and "give a spec file" in err


def test_train_rejects_unknown_options(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = cli(
        ["train", spec_file, "--out", tmp_path / "r", "--max-updatez", "3"], capsys
    )
    assert code == 2 and "--max-updatez" in err


def test_resume_honours_or_refuses_max_updates(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code, _out, err = cli(
        ["train", spec_file, "--out", run, "--quiet", "--max-updates", "2"], capsys
    )
    assert code == 0, err
    code, out, err = cli(
        ["train", "--resume", "--out", run, "--quiet", "--max-updates", "5"], capsys
    )
    assert code == 2 or "trained 5 updates" in out, (code, out, err)


# -- generate ------------------------------------------------------------------------------
def words(line: str) -> list[str]:
    return line.split()


def test_generate_caps_the_output_length(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = ["a b c d e f", "f e d c b"]
    arguments = [part for text in inputs for part in ("--input", text)]
    code, full, _err = cli(["generate", run_dir, *arguments], capsys)
    assert code == 0
    assert max(len(words(line)) for line in full.splitlines()) > 3
    code, capped, err = cli(
        [
            "generate",
            run_dir,
            "--input",
            inputs[0],
            "--input",
            inputs[1],
            "--sampler",
            "greedy",
            "--max-length",
            "3",
        ],
        capsys,
    )
    assert code == 0, err
    lines = capped.splitlines()
    assert len(lines) == 2
    for short, long in zip(lines, full.splitlines(), strict=True):
        assert 1 <= len(words(short)) <= 3
        assert words(short) == words(long)[:3]


def test_generate_from_a_file_json_and_plots(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("a b c\nd e\nf a b c\n")
    plots = tmp_path / "plots"
    code, out, err = cli(["generate", run_dir, "--file", inputs, "--plot", plots], capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 3
    assert sorted(p.name for p in plots.iterdir()) == [f"attention_{i}.png" for i in (1, 2, 3)]
    for png in plots.iterdir():
        assert_png(png)
    code, out, _err = cli(["generate", run_dir, "--file", inputs, "--format", "json"], capsys)
    assert code == 0
    parsed = [json.loads(line) for line in out.splitlines()]
    assert [p["input"] for p in parsed] == ["a b c", "d e", "f a b c"]
    assert all(len(p["outputs"]) == len(p["scores"]) == 1 for p in parsed)


def test_generate_warns_about_tokens_outside_the_vocabulary(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(["generate", run_dir, "--input", "a zz b zz", "--input", "a b"],
                         capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 2  # still decoded, <unk> in place of zz
    assert "input 1: not in the source vocabulary, read as <unk>: zz" in err
    assert "input 2" not in err
    code, out, _err = cli(["generate", run_dir, "--input", "a zz", "--format", "json"], capsys)
    assert json.loads(out)["unknown"] == ["zz"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sampler", "greedyy"], "did you mean 'greedy'"),
        (["--sampler", "greedy", "--max-lenght", "3"], "did you mean 'max_length'"),
        (["--max-lenght", "3"], "did you mean 'max_length'"),
    ],
)
def test_generate_misspellings_exit_2_with_a_suggestion(
    run_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code, _out, err = cli(["generate", run_dir, "--input", "a b", *args], capsys)
    assert code == 2
    assert expected in err and "@ $.sampler" in err
    assert "Traceback" not in err


def test_generate_bad_inputs_exit_2(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = cli(["generate", run_dir, "--input", ""], capsys)
    assert code == 2 and "input 1: empty" in err
    lines = tmp_path / "lines.txt"
    lines.write_text("a b\n\nc d\n")
    code, _out, err = cli(["generate", run_dir, "--file", lines], capsys)
    assert code == 2 and "input 2: empty" in err
    code, _out, err = cli(["generate", run_dir, "--input", " ".join(["a"] * 401)], capsys)
    assert code == 2 and "max_source_length = 400" in err
    code, _out, err = cli(["generate", run_dir], capsys)
    assert code == 2 and "nothing to decode" in err
    code, _out, err = cli(["generate", tmp_path, "--input", "a"], capsys)
    assert code == 2 and "not a model or run directory" in err
    assert "Traceback" not in err
