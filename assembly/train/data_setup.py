"""Turn a spec's ``[data]`` section into datasets and vocabularies.

Generated tasks (token or continuous) need no files; user data comes as TSV, parallel text
or .npy arrays (paths relative to the spec file). Vocabularies are built from the training
data and saved with the run, or loaded from it on resume. The spec's vocabulary sizes are
filled in from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from assembly.data import (
    DataError,
    Vocabulary,
    get_tokenizer,
    read_arrays,
    read_parallel,
    read_tsv,
    split_task,
)
from assembly.spec.model import Spec

Pair = tuple[list[str], list[str]]


@attrs.define
class DataBundle:
    """Datasets of each split (None where absent) and the vocabularies (token mode)."""

    spec: Spec
    train: Any
    dev: Any | None
    test: Any | None
    source_vocab: Vocabulary | None
    target_vocab: Vocabulary | None
    dev_pairs: list[Pair] | None = None
    test_pairs: list[Pair] | None = None


def _paths(files: tuple[str, ...], base: Path) -> list[Path]:
    return [(base / f) if not Path(f).is_absolute() else Path(f) for f in files]


def read_split(spec: Spec, files: tuple[str, ...], base: Path) -> Any:
    """Read one split's files per the spec's format (pairs, or ArrayData for npy)."""
    data = spec.data
    paths = _paths(files, base)
    if data.format == "npy":
        if len(paths) != 2:
            raise DataError(f"npy data names [source.npy, target.npy]; got {list(files)}")
        return read_arrays(paths[0], paths[1])
    tokenizer = get_tokenizer(data.tokenizer)
    if data.format == "parallel":
        return read_parallel(paths[0], paths[1], tokenizer)
    if len(paths) != 1:
        raise DataError(f"tsv data names one file per split; got {list(files)}")
    return read_tsv(paths[0], tokenizer)


def load_pairs(spec: Spec, base: Path) -> dict[str, Any]:
    """Every split the spec names: generated (token pairs, or arrays in continuous mode),
    or read from files."""
    data = spec.data
    if data.task is not None and not data.train and not spec.token_mode:
        from assembly.data.continuous_tasks import split_arrays

        if spec.continuous is None:
            raise DataError("continuous mode needs a [continuous] section")
        return split_arrays(data.task, data.train_size, data.dev_size, data.test_size,
                            data.seed, input_dim=spec.continuous.input_dim,
                            output_dim=spec.continuous.output_dim,
                            output_length=spec.continuous.output_length,
                            min_length=data.min_length, max_length=data.max_length)
    if data.task is not None and not data.train:
        return split_task(data.task, data.train_size, data.dev_size, data.test_size, data.seed,
                          min_length=data.min_length, max_length=data.max_length,
                          symbols=data.symbols)
    return {split: read_split(spec, getattr(data, split), base)
            for split in ("train", "dev", "test") if getattr(data, split)}


def _check_lengths(pairs: list[Pair], limit: int, split: str) -> None:
    long = [i for i, (source, _) in enumerate(pairs) if len(source) > limit]
    if long:
        raise DataError(f"{split} data: {len(long)} sources exceed data.max_source_length = "
                        f"{limit} tokens (first at example {long[0] + 1}, "
                        f"{len(pairs[long[0]][0])} tokens); raise the limit or shorten them")


def resolve_vocab_sizes(spec: Spec, source: Vocabulary, target: Vocabulary) -> Spec:
    """Fill missing vocab sizes from the vocabularies; refuse sizes too small for them."""
    sides = {}
    for side, vocab in (("source", source), ("target", target)):
        side_spec = getattr(spec, side)
        if side_spec.vocab_size is None:
            sides[side] = attrs.evolve(side_spec, vocab_size=len(vocab))
        elif side_spec.vocab_size < len(vocab):
            raise DataError(f"{side} vocab_size = {side_spec.vocab_size} in the spec, but the "
                            f"data has {len(vocab)} types (specials included); raise it or "
                            f"leave it out to take the data's")
    return attrs.evolve(spec, **sides) if sides else spec


def prepare_data(spec: Spec, base: Path, vocab_dir: Path | None = None) -> DataBundle:
    """Datasets and vocabularies for ``spec``; vocabularies are loaded from ``vocab_dir``
    when it holds them (resume, evaluation), else built from the training pairs."""
    from assembly.data.batching import ArrayPairDataset, TokenPairDataset

    splits = load_pairs(spec, base)
    if "train" not in splits:
        raise DataError("no training data: give data.task or data.train")
    if not spec.token_mode:
        made = {k: ArrayPairDataset(v) for k, v in splits.items()}
        return DataBundle(spec, made["train"], made.get("dev"), made.get("test"), None, None)
    for split, pairs in splits.items():
        _check_lengths(pairs, spec.data.max_source_length, split)
    if vocab_dir is not None and (vocab_dir / "vocab.source.json").exists():
        source_vocab = Vocabulary.load(vocab_dir / "vocab.source.json")
        target_vocab = Vocabulary.load(vocab_dir / "vocab.target.json")
    else:
        source_vocab = Vocabulary.build([s for s, _ in splits["train"]])
        target_vocab = Vocabulary.build([t for _, t in splits["train"]])
    spec = resolve_vocab_sizes(spec, source_vocab, target_vocab)
    made = {k: TokenPairDataset(v, source_vocab, target_vocab) for k, v in splits.items()}
    return DataBundle(spec, made["train"], made.get("dev"), made.get("test"), source_vocab,
                      target_vocab, splits.get("dev"), splits.get("test"))
