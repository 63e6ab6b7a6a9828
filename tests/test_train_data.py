"""Training from user files: TSV (char and whitespace tokens), parallel text, .npy arrays
(continuous mode, fixed length or learned stop); vocabularies saved with the run; bad data
is a clear error (CLI exit 2, ``file:line``, no traceback)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers_train import (
    RESUME,
    assert_same_weights,
    cli,
    make_spec,
    spec_data,
    trainer,
    uninterrupted_run,
    write_spec,
)

from assembly.data import Vocabulary
from assembly.decode.generate import decode_batches, generate, make_sampler
from assembly.evaluate import evaluate
from assembly.run import load_run
from assembly.spec import load_spec
from assembly.train.data_setup import prepare_data

SMALL = {"training": {"epochs": 1, "batch_size": 8}, "data": {"task": None}}


def reverse_lines(count: int, seed: int, *, char: bool = False) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        tokens = [rng.choice("abcde") for _ in range(rng.randint(2, 5))]
        joiner = "" if char else " "
        pairs.append((joiner.join(tokens), joiner.join(reversed(tokens))))
    return pairs


def write_tsv(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


def user_spec(folder: Path, data: dict[str, Any], **sections: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_spec(folder / "spec.toml", spec_data(SMALL, {"data": data}, sections))


def train_file_spec(spec_path: Path, run_dir: Path) -> Any:
    made = trainer(load_spec(spec_path), run_dir, spec_dir=spec_path.parent)
    made.fit()
    return made


@pytest.mark.parametrize("tokenizer", ["whitespace", "char"])
def test_training_from_tsv_saves_the_vocabularies(tmp_path: Path, tokenizer: str) -> None:
    char = tokenizer == "char"
    folder = tmp_path / "data"
    folder.mkdir()
    write_tsv(folder / "train.tsv", reverse_lines(40, 1, char=char))
    write_tsv(folder / "dev.tsv", reverse_lines(6, 2, char=char))
    spec_path = user_spec(
        folder,
        {"format": "tsv", "tokenizer": tokenizer, "train": ["train.tsv"], "dev": ["dev.tsv"]},
    )
    run_dir = tmp_path / "run"
    made = train_file_spec(spec_path, run_dir)

    source = Vocabulary.load(run_dir / "vocab.source.json")
    target = Vocabulary.load(run_dir / "vocab.target.json")
    assert set(source.tokens[4:]) == set("abcde") == set(target.tokens[4:])
    saved = load_spec(run_dir / "spec.toml")
    assert saved.source.vocab_size == len(source) == made.spec.source.vocab_size
    assert saved.target.vocab_size == len(target)

    run = load_run(run_dir)
    assert run.source_vocab == source and run.target_vocab == target
    text = "abc" if char else "a b c"
    [result] = generate(run, [text])
    assert result.source == ["a", "b", "c"]
    assert set(result.hypotheses[0]) <= set(target.tokens[3:])
    joiner = "" if char else " "
    assert result.text == joiner.join(result.hypotheses[0])


def test_training_from_parallel_files(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    pairs = reverse_lines(40, 3)
    (folder / "train.src").write_text("".join(s + "\n" for s, _ in pairs))
    (folder / "train.tgt").write_text("".join(t + "\n" for _, t in pairs))
    spec_path = user_spec(folder, {"format": "parallel", "train": ["train.src", "train.tgt"]})
    run_dir = tmp_path / "run"
    made = train_file_spec(spec_path, run_dir)
    assert len(made.data.train) == 40
    assert made.data.train[0].target[-1] == 2  # EOS appended
    assert (run_dir / "vocab.source.json").exists()
    assert (run_dir / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("content", "where", "what"),
    [
        ("a b\tb a\nno tab here\n", "train.tsv:2:", "exactly one tab"),
        ("a b\tb a\nc d\t\n", "train.tsv:2:", "empty target"),
        ("a b\tb a\nx\ty\tz\n", "train.tsv:2:", "2 tabs"),
    ],
)
def test_bad_data_file_exits_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, where: str, what: str
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.tsv").write_text(content)
    spec_path = user_spec(folder, {"format": "tsv", "train": ["train.tsv"]})
    code, _out, err = cli(["train", spec_path, "--out", tmp_path / "run", "--quiet"], capsys)
    assert code == 2
    assert where in err and what in err
    assert "Traceback" not in err


def test_missing_data_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = user_spec(tmp_path, {"format": "tsv", "train": ["nowhere.tsv"]})
    code, _out, err = cli(["train", spec_path, "--out", tmp_path / "run", "--quiet"], capsys)
    assert code == 2
    assert "nowhere.tsv" in err and "Traceback" not in err


def test_over_long_source_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tsv(tmp_path / "train.tsv", [("a b", "b a"), ("a b c d e f", "f e d c b a")])
    spec_path = user_spec(
        tmp_path, {"format": "tsv", "train": ["train.tsv"], "max_source_length": 4}
    )
    code, _out, err = cli(["train", spec_path, "--out", tmp_path / "run", "--quiet"], capsys)
    assert code == 2
    assert "max_source_length = 4" in err and "example 2" in err and "6 tokens" in err
    assert "Traceback" not in err


def test_loading_in_a_worker_process_gives_the_same_run(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run_dir = tmp_path / "run"
    trainer(make_spec(RESUME, {"training": {"workers": 1}}), run_dir).fit()
    assert_same_weights(
        uninterrupted_run(tmp_path_factory) / "model.safetensors", run_dir / "model.safetensors"
    )


# -- continuous data -----------------------------------------------------------------------
def write_arrays(folder: Path, split: str, count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    source = rng.normal(size=(count, 4, 3)).astype(np.float32)
    np.save(folder / f"{split}.src.npy", source)
    np.save(folder / f"{split}.tgt.npy", source[:, ::-1, :2].copy())
    return [f"{split}.src.npy", f"{split}.tgt.npy"]


@pytest.mark.parametrize("output_length", [4, None])
def test_training_continuous_data_from_npy(tmp_path: Path, output_length: int | None) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    continuous: dict[str, Any] = {"input_dim": 3, "output_dim": 2}
    if output_length is not None:
        continuous["output_length"] = output_length
    data = {
        "format": "npy",
        "train": write_arrays(folder, "train", 48, 0),
        "dev": write_arrays(folder, "dev", 6, 1),
    }
    spec_path = write_spec(
        folder / "spec.toml",
        spec_data(
            SMALL,
            {
                "mode": "continuous",
                "continuous": continuous,
                "source": None,
                "target": None,
                "data": data,
            },
        ),
    )
    run_dir = tmp_path / "run"
    made = train_file_spec(spec_path, run_dir)
    assert not (run_dir / "vocab.source.json").exists()
    assert "mse" in made.last_dev and np.isfinite(made.last_dev["mse"])

    run = load_run(run_dir)
    assert (run.model.stop is None) == (output_length is not None)
    bundle = prepare_data(run.spec, folder, run_dir)
    sources = [bundle.dev[i].source for i in range(len(bundle.dev))]
    decoded = decode_batches(run.model, make_sampler(run), sources, batch_size=4)
    for _tokens, _scores, _attention, vectors in decoded:
        produced = vectors[0]
        assert produced.shape[1] == 2 and torch.isfinite(produced).all()
        if output_length is None:
            assert 1 <= produced.shape[0] <= 2 * 4 + 10
        else:
            assert produced.shape[0] == output_length
    results, best = evaluate(run.model, bundle.dev, make_sampler(run))
    assert set(results) == {"mse", "loss"} and len(best) == 6


# -- relative data paths -------------------------------------------------------------------
RELATIVE_PATHS_BUG = (
    "core bug: data paths are relative to the spec file, but the run's spec.toml keeps them "
    "as written and `assemble train --resume` (cli.py cmd_train: spec_dir = Path('.')) and "
    "`assemble evaluate` (cli.py cmd_evaluate: prepare_data(spec, Path('.'), ...)) resolve "
    "them against the current directory: 'train.tsv: cannot read TSV file'. Fix: write "
    "absolute (resolved against spec_dir) data paths into the run's spec.toml in "
    "Trainer._write_model_files"
)


def tsv_run_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    write_tsv(folder / "train.tsv", reverse_lines(16, 4))
    write_tsv(folder / "dev.tsv", reverse_lines(4, 5))
    user_spec(folder, {"format": "tsv", "train": ["train.tsv"], "dev": ["dev.tsv"]})
    monkeypatch.chdir(tmp_path)
    code, _out, err = cli(["train", "data/spec.toml", "--out", "run", "--quiet"], capsys)
    assert code == 0, err
    return tmp_path / "run"


def test_resume_finds_the_data_of_a_spec_in_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tsv_run_from_elsewhere(tmp_path, monkeypatch, capsys)
    code, _out, err = cli(["train", "--resume", "--out", "run", "--quiet"], capsys)
    assert code == 0, err


def test_evaluate_finds_the_data_of_a_spec_in_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tsv_run_from_elsewhere(tmp_path, monkeypatch, capsys)
    code, out, err = cli(["evaluate", "run"], capsys)
    assert code == 0, err
    assert "exact_match" in out
