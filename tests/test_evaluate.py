"""``assemble evaluate RUN [--data FILE]`` and :func:`assembly.evaluate.evaluate`: token
accuracy, exact match, BLEU, chrF, CER, WER and the loss; text and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_train import cli, reverse_run

from assembly.decode.generate import generate, make_sampler
from assembly.evaluate import evaluate
from assembly.run import load_run
from assembly.train.data_setup import prepare_data

METRICS = ("token_accuracy", "exact_match", "bleu", "chrf", "cer", "wer", "loss")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reverse_run(tmp_path_factory)


def check_ranges(results: dict[str, float]) -> None:
    assert set(METRICS) <= set(results)
    assert 0.0 <= results["token_accuracy"] <= 1.0 and 0.0 <= results["exact_match"] <= 1.0
    assert 0.0 <= results["bleu"] <= 100.0 + 1e-9 and 0.0 <= results["chrf"] <= 100.0 + 1e-9
    assert results["cer"] >= 0.0 and results["wer"] >= 0.0 and results["loss"] > 0.0


def test_evaluate_prints_every_metric(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["evaluate", run_dir], capsys)
    assert code == 0, err
    printed = dict(line.split() for line in out.strip().splitlines())
    assert set(printed) == set(METRICS)
    check_ranges({k: float(v) for k, v in printed.items()})


def test_evaluate_json_matches_the_python_api(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = cli(["evaluate", run_dir, "--format", "json"], capsys)
    assert code == 0
    results = json.loads(out)
    check_ranges(results)
    run = load_run(run_dir)
    test_split = prepare_data(run.spec, Path("."), run_dir).test  # the task's test split
    expected, best = evaluate(
        run.model, test_split, make_sampler(run), target_vocab=run.target_vocab
    )
    assert results == pytest.approx(expected)
    assert len(best) == 20 and all(isinstance(text, str) for text in best)


def test_evaluate_on_a_file_of_the_models_own_outputs_is_perfect(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = ["a b c", "d e f a", "c c b", "f e", "a b c d e"]
    outputs = [r.text for r in generate(load_run(run_dir), sources)]
    assert all(outputs)
    data = tmp_path / "own.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in zip(sources, outputs, strict=True)))
    code, out, err = cli(["evaluate", run_dir, "--data", data, "--format", "json"], capsys)
    assert code == 0, err
    results = json.loads(out)
    assert results["exact_match"] == 1.0 and results["token_accuracy"] == 1.0
    assert results["cer"] == 0.0 and results["wer"] == 0.0
    assert results["chrf"] == pytest.approx(100.0)


def test_evaluate_on_reversed_pairs_beats_a_wrong_reference(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = ["a b c", "d e f a", "c c b", "f e", "a b c d e", "b d f"]
    right, wrong = tmp_path / "right.tsv", tmp_path / "wrong.tsv"
    right.write_text("".join(f"{s}\t{' '.join(reversed(s.split()))}\n" for s in sources))
    wrong.write_text("".join(f"{s}\tf f f f f f\n" for s in sources))
    scores = {}
    for path in (right, wrong):
        code, out, err = cli(["evaluate", run_dir, "--data", path, "--format", "json"], capsys)
        assert code == 0, err
        scores[path.stem] = json.loads(out)
    assert scores["right"]["token_accuracy"] > scores["wrong"]["token_accuracy"]
    assert scores["right"]["loss"] < scores["wrong"]["loss"]
    assert scores["right"]["chrf"] > scores["wrong"]["chrf"]


def test_evaluate_with_a_sampler_option(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(
        ["evaluate", run_dir, "--format", "json", "--sampler", "greedy", "--max-length", "1"],
        capsys,
    )
    assert code == 0, err
    capped = json.loads(out)
    code, out, _err = cli(["evaluate", run_dir, "--format", "json"], capsys)
    assert capped["exact_match"] == 0.0  # every target has at least 2 tokens
    assert capped["token_accuracy"] < json.loads(out)["token_accuracy"]


def test_evaluate_bad_data_file_exits_2(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "bad.tsv"
    data.write_text("a b\tb a\nno tab\n")
    code, _out, err = cli(["evaluate", run_dir, "--data", data], capsys)
    assert code == 2
    assert f"{data}:2:" in err and "Traceback" not in err
    code, _out, err = cli(["evaluate", tmp_path / "nowhere"], capsys)
    assert code == 2 and "not a model or run directory" in err
