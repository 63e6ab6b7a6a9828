"""User data files: TSV, parallel text, plain lines, arrays; error reporting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assembly.data import DataError
from assembly.data.files import (
    MAX_REPORTED,
    read_arrays,
    read_lines,
    read_parallel,
    read_tsv,
    write_tsv,
)


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def test_read_tsv_tokenizes_and_ignores_trailing_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.tsv", "a b c\tc b a\r\nhello world\tx\n\n  \n")
    assert read_tsv(path, "whitespace") == [
        (["a", "b", "c"], ["c", "b", "a"]),
        (["hello", "world"], ["x"]),
    ]
    assert read_tsv(path, "char")[1] == (list("hello world"), ["x"])


def test_read_tsv_reports_every_bad_line(tmp_path: Path) -> None:
    lines = [
        "good\tline",  # 1
        "no tab here",  # 2
        "two\ttabs\there",  # 3
        "\tempty source",  # 4
        "fine\tok",  # 5
        "empty target\t ",  # 6 (whitespace tokeniser: empty)
    ]
    body = ("\n".join(lines) + "\n").encode() + b"bad \xff byte\tx\n"  # 7
    path = _write(tmp_path / "bad.tsv", body)
    with pytest.raises(DataError) as info:
        read_tsv(path, "whitespace")
    message = str(info.value).splitlines()
    assert [line.split(": ", 1)[0] for line in message] == [f"{path}:{n}" for n in (2, 3, 4, 6, 7)]
    assert "no tab" in message[0]
    assert "2 tabs" in message[1]
    assert "empty source" in message[2]
    assert "empty target" in message[3]
    assert "UTF-8" in message[4]


def test_read_tsv_caps_listed_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "many.tsv", "oops\n" * (MAX_REPORTED + 5))
    with pytest.raises(DataError) as info:
        read_tsv(path, "char")
    lines = str(info.value).splitlines()
    assert len(lines) == MAX_REPORTED + 1
    assert lines[-1].endswith("and 5 more bad lines")


def test_read_tsv_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.tsv: cannot read"):
        read_tsv(tmp_path / "nope.tsv", "char")
    with pytest.raises(DataError, match=r"empty\.tsv: no examples"):
        read_tsv(_write(tmp_path / "empty.tsv", "\n"), "char")


def test_write_tsv_round_trip(tmp_path: Path) -> None:
    pairs = [(["a", "b"], ["b", "a"]), (["ü"], ["x", "y"])]
    path = tmp_path / "out.tsv"
    write_tsv(path, pairs)
    assert read_tsv(path, "whitespace") == pairs
    assert [p.name for p in tmp_path.iterdir()] == ["out.tsv"]
    with pytest.raises(DataError, match="contains a tab"):
        write_tsv(tmp_path / "bad.tsv", [(["a\tb"], ["c"])])
    assert not (tmp_path / "bad.tsv").exists()


def test_read_parallel(tmp_path: Path) -> None:
    src = _write(tmp_path / "src.txt", "a b\nc\n")
    tgt = _write(tmp_path / "tgt.txt", "x\ny z\n\n")
    assert read_parallel(src, tgt, "whitespace") == [(["a", "b"], ["x"]), (["c"], ["y", "z"])]


def test_read_parallel_count_mismatch_names_both(tmp_path: Path) -> None:
    src = _write(tmp_path / "src.txt", "a\nb\nc\n")
    tgt = _write(tmp_path / "tgt.txt", "x\ny\n")
    with pytest.raises(DataError) as info:
        read_parallel(src, tgt, "char")
    message = str(info.value)
    assert f"{src} has 3 lines" in message and f"{tgt} has 2 lines" in message


def test_read_parallel_empty_lines(tmp_path: Path) -> None:
    src = _write(tmp_path / "src.txt", "a\n\nc\n")
    tgt = _write(tmp_path / "tgt.txt", "x\ny\n\xff\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        read_parallel(src, tgt, "char")
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"{src}:2: empty line")
    assert lines[1].startswith(f"{tgt}:3: not valid UTF-8")


def test_read_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.txt", "\ufeffone\r\n\ntwo three\n\n")
    assert read_lines(path) == ["one", "", "two three"]


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def test_read_arrays_ok(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = _save(tmp_path / "x.npy", rng.normal(size=(4, 5, 3)))
    tgt = _save(tmp_path / "y.npy", rng.normal(size=(4, 6, 2)).astype(np.float32))
    lens = _save(tmp_path / "xl.npy", np.array([5, 1, 3, 2]))
    data = read_arrays(src, tgt, source_lengths=lens)
    assert len(data) == 4 and data.input_dim == 3 and data.output_dim == 2
    assert data.source.dtype == np.float32 and data.target.dtype == np.float32
    assert data.source_lengths.tolist() == [5, 1, 3, 2]
    assert data.target_lengths.tolist() == [6, 6, 6, 6]


def test_read_arrays_validation(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.npy", np.zeros((3, 4, 2)))
    nan = np.zeros((3, 4, 2))
    nan[1, 2, 0] = np.nan
    cases = {
        "2d.npy": (np.zeros((3, 4)), "shape"),
        "nan.npy": (nan, r"NaN or infinite \(first at index \(1, 2, 0\)\)"),
        "str.npy": (np.array([[["a"]]]), "dtype"),
        "count.npy": (np.zeros((2, 4, 2)), "example counts differ"),
    }
    for name, (array, message) in cases.items():
        path = _save(tmp_path / name, array)
        with pytest.raises(DataError, match=message):
            read_arrays(good, path)
    objects = tmp_path / "obj.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy: not a plain numeric"):
        read_arrays(objects, good)
    with pytest.raises(DataError, match=r"missing\.npy"):
        read_arrays(tmp_path / "missing.npy", good)
    bad_lengths = _save(tmp_path / "len.npy", np.array([1, 9, 0]))
    with pytest.raises(DataError, match=r"2 lengths outside \[1, 4\]"):
        read_arrays(good, good, target_lengths=bad_lengths)
    short_lengths = _save(tmp_path / "len2.npy", np.array([1, 2]))
    with pytest.raises(DataError, match=r"shape \(3,\)"):
        read_arrays(good, good, source_lengths=short_lengths)
