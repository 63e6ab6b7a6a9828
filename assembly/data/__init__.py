"""Data for training and decoding: generated tasks, user files, vocabularies, batches.

Importing this package does not import torch; the torch parts (datasets, collation, the
bucketing sampler) live in :mod:`assembly.data.batching` and are loaded on first use of
their names here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assembly.data.errors import DataError
from assembly.data.files import (
    ArrayData,
    read_arrays,
    read_lines,
    read_parallel,
    read_tsv,
    write_tsv,
)
from assembly.data.tasks import TASKS, generate_pairs, split_task
from assembly.data.tokenize import TOKENIZERS, detokenize, get_tokenizer
from assembly.data.vocab import (
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    PAD,
    PAD_ID,
    UNK,
    UNK_ID,
    Vocabulary,
)

if TYPE_CHECKING:
    from assembly.data.batching import (
        ArrayPairDataset,
        Batch,
        BucketBatchSampler,
        TokenPairDataset,
        collate_arrays,
        collate_tokens,
        make_loader,
    )

_BATCHING = frozenset(
    {
        "ArrayPairDataset",
        "Batch",
        "BucketBatchSampler",
        "TokenPairDataset",
        "collate_arrays",
        "collate_tokens",
        "make_loader",
    }
)

__all__ = [
    "BOS",
    "BOS_ID",
    "EOS",
    "EOS_ID",
    "PAD",
    "PAD_ID",
    "TASKS",
    "TOKENIZERS",
    "UNK",
    "UNK_ID",
    "ArrayData",
    "ArrayPairDataset",
    "Batch",
    "BucketBatchSampler",
    "DataError",
    "TokenPairDataset",
    "Vocabulary",
    "collate_arrays",
    "collate_tokens",
    "detokenize",
    "generate_pairs",
    "get_tokenizer",
    "make_loader",
    "read_arrays",
    "read_lines",
    "read_parallel",
    "read_tsv",
    "split_task",
    "write_tsv",
]


def __getattr__(name: str) -> Any:
    if name in _BATCHING:
        from assembly.data import batching

        return getattr(batching, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
