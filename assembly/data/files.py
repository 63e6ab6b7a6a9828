"""Reading and writing user data files, with errors a person can act on.

Text data:

- :func:`read_tsv`: one example per line, ``source<TAB>target``.
- :func:`read_parallel`: two files, line *i* of one is the source of line *i* of the other.
- :func:`read_lines`: plain lines (inputs to decode).

Every bad line of a file is reported at once, as ``file:LINE: message`` lines in one
:class:`~assembly.data.errors.DataError` (the first :data:`MAX_REPORTED` of them, then a
count of the rest). Blank lines at the end of a file are ignored; line ends ``\\n`` and
``\\r\\n`` are both accepted.

Continuous data: :func:`read_arrays` loads ``.npy`` arrays (never with pickle) into an
:class:`ArrayData`, validating shapes, dtypes and values.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assembly.data.errors import DataError
from assembly.data.tokenize import Tokenizer, get_tokenizer


class _LazyNumpy:
    """numpy, imported on first use: planning specs and reading text data never pay for it
    (``assemble check`` must stay fast)."""

    def __getattr__(self, name: str) -> Any:
        import numpy

        return getattr(numpy, name)


np: Any = _LazyNumpy()

__all__ = [
    "MAX_REPORTED",
    "ArrayData",
    "atomic_write_text",
    "read_arrays",
    "read_lines",
    "read_parallel",
    "read_tsv",
    "write_tsv",
]

MAX_REPORTED = 20
"""How many bad lines one error lists before summarising the rest."""

PathLike = str | os.PathLike[str]
Pair = tuple[list[str], list[str]]


# ---------------------------------------------------------------- helpers


def _format_problems(path: PathLike, problems: list[tuple[int, str]]) -> list[str]:
    """``file:LINE: message`` lines for the first MAX_REPORTED problems, then a count."""
    lines = [f"{path}:{line}: {message}" for line, message in sorted(problems)[:MAX_REPORTED]]
    hidden = len(problems) - MAX_REPORTED
    if hidden > 0:
        lines.append(f"{path}: ... and {hidden} more bad line{'s' if hidden > 1 else ''}")
    return lines


def _raise_problems(path: PathLike, problems: list[tuple[int, str]]) -> None:
    """Raise one DataError listing ``(line, message)`` problems of ``path``, if any."""
    if problems:
        raise DataError("\n".join(_format_problems(path, problems)))


def _read_bytes(path: PathLike, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read {what}: {error.strerror or error}") from None


def _decoded_lines(path: PathLike, what: str) -> tuple[list[str], list[tuple[int, str]]]:
    """The lines of ``path`` (line ends removed, trailing blank lines dropped).

    Returns the lines and the UTF-8 decoding problems as ``(line number, message)``; a
    line that does not decode is returned as ``""`` and must not be used.
    """
    raw = _read_bytes(path, what).split(b"\n")
    while raw and not raw[-1].strip():
        raw.pop()
    lines: list[str] = []
    problems: list[tuple[int, str]] = []
    for number, chunk in enumerate(raw, start=1):
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as error:
            problems.append((number, f"not valid UTF-8 (byte {error.start + 1} of the line)"))
            text = ""
        if number == 1:
            text = text.removeprefix("\ufeff")
        lines.append(text.removesuffix("\r"))
    return lines, problems


def _resolve(tokenizer: str | Tokenizer) -> Tokenizer:
    return get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file and ``os.replace``.

    Readers never see a half-written file; on failure the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- text


def read_tsv(path: PathLike, tokenizer: str | Tokenizer) -> list[Pair]:
    """Read ``source<TAB>target`` lines into tokenised pairs.

    ``tokenizer`` is a tokeniser name (``"char"``, ``"whitespace"``) or function.

    Raises:
        DataError: the file cannot be read, has no examples, or has bad lines (not exactly
            one tab, an empty side, invalid UTF-8) — all of them listed as
            ``file:LINE: message``.
    """
    tokenize = _resolve(tokenizer)
    lines, problems = _decoded_lines(path, "TSV file")
    bad = {number for number, _ in problems}
    pairs: list[Pair] = []
    for number, line in enumerate(lines, start=1):
        if number in bad:
            continue
        tabs = line.count("\t")
        if tabs != 1:
            found = "no tab" if tabs == 0 else f"{tabs} tabs"
            message = f"expected source<TAB>target (exactly one tab), found {found}"
            problems.append((number, message))
            continue
        source_text, target_text = line.split("\t")
        source, target = tokenize(source_text), tokenize(target_text)
        empty = [name for name, side in (("source", source), ("target", target)) if not side]
        if empty:
            problems.append((number, f"empty {' and '.join(empty)}"))
            continue
        pairs.append((source, target))
    _raise_problems(path, problems)
    if not pairs:
        raise DataError(f"{path}: no examples in file")
    return pairs


def read_lines(path: PathLike) -> list[str]:
    """The lines of a UTF-8 text file, without line ends; trailing blank lines dropped.

    Raises:
        DataError: the file cannot be read or has lines that are not valid UTF-8.
    """
    lines, problems = _decoded_lines(path, "text file")
    _raise_problems(path, problems)
    return lines


def read_parallel(src_path: PathLike, tgt_path: PathLike, tokenizer: str | Tokenizer) -> list[Pair]:
    """Read a source file and a target file, line *i* of each forming example *i*.

    Raises:
        DataError: a file cannot be read; the line counts differ (both files and counts
            are named); or lines are empty or not valid UTF-8 (all listed as
            ``file:LINE: message``).
    """
    tokenize = _resolve(tokenizer)
    source_lines, source_problems = _decoded_lines(src_path, "source file")
    target_lines, target_problems = _decoded_lines(tgt_path, "target file")
    if len(source_lines) != len(target_lines):
        raise DataError(
            f"parallel files differ in length: {src_path} has {len(source_lines)} lines, "
            f"{tgt_path} has {len(target_lines)} lines"
        )
    source_bad = {number for number, _ in source_problems}
    target_bad = {number for number, _ in target_problems}
    pairs: list[Pair] = []
    for number, (source_text, target_text) in enumerate(
        zip(source_lines, target_lines, strict=True), start=1
    ):
        source, target = tokenize(source_text), tokenize(target_text)
        if not source and number not in source_bad:
            source_problems.append((number, "empty line"))
        if not target and number not in target_bad:
            target_problems.append((number, "empty line"))
        if source and target:
            pairs.append((source, target))
    if source_problems or target_problems:
        messages = _format_problems(src_path, source_problems) + _format_problems(
            tgt_path, target_problems
        )
        raise DataError("\n".join(messages))
    if not pairs:
        raise DataError(f"{src_path}, {tgt_path}: no examples in files")
    return pairs


def write_tsv(
    path: PathLike,
    pairs: Iterable[tuple[Sequence[str] | str, Sequence[str] | str]],
    join: str = " ",
) -> None:
    """Write pairs as ``source<TAB>target`` lines, atomically.

    A side given as a token list is joined with ``join`` (``" "`` for whitespace tokens,
    ``""`` for characters); a side given as a string is written as is.

    Raises:
        DataError: a side contains a tab or line break, or is empty (the file could not
            be read back); nothing is written then.
    """
    out: list[str] = []
    problems: list[tuple[int, str]] = []
    for number, (source, target) in enumerate(pairs, start=1):
        sides = [s if isinstance(s, str) else join.join(s) for s in (source, target)]
        for name, text in zip(("source", "target"), sides, strict=True):
            if not text:
                problems.append((number, f"{name} is empty"))
            elif any(c in text for c in "\t\r\n"):
                problems.append((number, f"{name} contains a tab or line break"))
        out.append("\t".join(sides) + "\n")
    _raise_problems(f"{path} (writing)", problems)
    atomic_write_text(path, "".join(out))


# ---------------------------------------------------------------- arrays


@dataclass(frozen=True)
class ArrayData:
    """Continuous examples, validated.

    Attributes:
        source: float32 array ``(N, T, input_dim)``.
        target: float32 array ``(N, T2, output_dim)``.
        source_lengths: int64 array ``(N,)``, each in ``[1, T]`` (``T`` if not given).
        target_lengths: int64 array ``(N,)``, each in ``[1, T2]`` (``T2`` if not given).
    """

    source: np.ndarray
    target: np.ndarray
    source_lengths: np.ndarray
    target_lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.source.shape[0])

    @property
    def input_dim(self) -> int:
        return int(self.source.shape[2])

    @property
    def output_dim(self) -> int:
        return int(self.target.shape[2])


def _load_npy(path: PathLike) -> np.ndarray:
    if not Path(path).is_file():
        raise DataError(f"{path}: no such array file")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise DataError(f"{path}: not a plain numeric .npy array ({error})") from None
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read .npy array: {error}") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path}: expected a single .npy array, found an archive of arrays")
    return array


def _check_values(path: PathLike, array: np.ndarray, problems: list[str]) -> np.ndarray | None:
    """Validate a (N, T, D) real array; return it as float32, or None after a problem."""
    if array.dtype.kind not in "fiu":
        problems.append(f"{path}: expected a float array, found dtype {array.dtype}")
        return None
    if array.ndim != 3:
        problems.append(
            f"{path}: expected shape (examples, steps, features), found shape {array.shape}"
        )
        return None
    if 0 in array.shape:
        problems.append(f"{path}: array is empty (shape {array.shape})")
        return None
    converted = array.astype(np.float32)
    if not np.isfinite(converted).all():
        bad = np.argwhere(~np.isfinite(converted))
        first = tuple(int(i) for i in bad[0])
        problems.append(f"{path}: {len(bad)} values are NaN or infinite (first at index {first})")
        return None
    return converted


def _check_lengths(
    path: PathLike | None, count: int, steps: int, problems: list[str]
) -> np.ndarray | None:
    if path is None:
        return np.full(count, steps, dtype=np.int64)
    lengths = _load_npy(path)
    if lengths.dtype.kind not in "iu":
        problems.append(f"{path}: lengths must be integers, found dtype {lengths.dtype}")
        return None
    if lengths.shape != (count,):
        problems.append(f"{path}: lengths must have shape ({count},), found {lengths.shape}")
        return None
    outside = np.flatnonzero((lengths < 1) | (lengths > steps))
    if outside.size:
        first = int(outside[0])
        problems.append(
            f"{path}: {outside.size} lengths outside [1, {steps}] "
            f"(first: example {first} has length {int(lengths[first])})"
        )
        return None
    return lengths.astype(np.int64)


def read_arrays(
    source_npy: PathLike,
    target_npy: PathLike,
    *,
    source_lengths: PathLike | None = None,
    target_lengths: PathLike | None = None,
) -> ArrayData:
    """Load continuous examples from ``.npy`` files (``allow_pickle=False``).

    ``source_npy`` holds ``(N, T, input_dim)``, ``target_npy`` ``(N, T2, output_dim)``
    real values; optional length files hold ``(N,)`` integers giving each example's
    unpadded length (steps past it are padding).

    Raises:
        DataError: a file is missing or not a plain numeric array; shapes, dtypes or the
            example counts disagree; values are NaN/infinite; lengths are out of range.
            All problems found are listed together.
    """
    problems: list[str] = []
    source = _check_values(source_npy, _load_npy(source_npy), problems)
    target = _check_values(target_npy, _load_npy(target_npy), problems)
    if source is not None and target is not None and source.shape[0] != target.shape[0]:
        problems.append(
            f"example counts differ: {source_npy} has {source.shape[0]}, "
            f"{target_npy} has {target.shape[0]}"
        )
    if problems or source is None or target is None:
        raise DataError("\n".join(problems))
    count = source.shape[0]
    src_len = _check_lengths(source_lengths, count, source.shape[1], problems)
    tgt_len = _check_lengths(target_lengths, count, target.shape[1], problems)
    if problems or src_len is None or tgt_len is None:
        raise DataError("\n".join(problems))
    return ArrayData(source, target, src_len, tgt_len)
