"""Datasets, padded batches and a length-bucketing batch sampler.

Token data flows ``pairs -> TokenPairDataset -> BucketBatchSampler + collate_tokens ->
Batch``; continuous data ``ArrayData -> ArrayPairDataset -> ... collate_arrays -> Batch``.

Conventions (every model and loss relies on them):

- Token sources carry no EOS; token targets always end with ``EOS_ID`` (an empty target
  is just ``[EOS_ID]``). Padding is ``PAD_ID`` (0) for tokens and ``0.0`` for vectors.
- Lengths count real steps only (EOS included for token targets), are >= 1, and padding
  sits after them.
- The sampler is a pure function of ``(seed, epoch, max_length, start_batch)`` and the
  lengths: training resumed with the same values sees exactly the same batches.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from assembly.data.errors import DataError
from assembly.data.files import ArrayData
from assembly.data.vocab import PAD_ID, Vocabulary

__all__ = [
    "ArrayPairDataset",
    "Batch",
    "BucketBatchSampler",
    "Example",
    "TokenPairDataset",
    "collate_arrays",
    "collate_tokens",
    "make_loader",
]


@dataclass
class Batch:
    """A padded batch of ``B`` examples.

    Attributes:
        source: token mode ``LongTensor (B, S)`` padded with ``PAD_ID``;
            continuous mode ``FloatTensor (B, S, input_dim)`` padded with 0.
        source_lengths: ``LongTensor (B,)``, real source steps per example.
        target: token mode ``LongTensor (B, T)``: target ids + ``EOS_ID``, padded with
            ``PAD_ID``; continuous mode ``FloatTensor (B, T, output_dim)`` padded with 0.
        target_lengths: ``LongTensor (B,)``, real target steps (EOS included for tokens).
        indices: ``LongTensor (B,)``, each example's position in its dataset.
    """

    source: torch.Tensor
    source_lengths: torch.Tensor
    target: torch.Tensor
    target_lengths: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A new Batch with every tensor on ``device``."""
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self._tensors()))

    def pin_memory(self) -> Batch:
        """A new Batch in pinned memory (called by ``DataLoader(pin_memory=True)``)."""
        return Batch(*(t.pin_memory() for t in self._tensors()))

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.source, self.source_lengths, self.target, self.target_lengths, self.indices)


@dataclass(frozen=True, slots=True)
class Example:
    """One dataset item: its index and source/target (id lists or ``(steps, dim)`` tensors)."""

    index: int
    source: Any
    target: Any


class TokenPairDataset(Dataset[Example]):
    """Token pairs encoded once: sources without EOS, targets with EOS.

    ``dataset[i]`` is ``Example(i, source_ids, target_ids)`` with plain ``list[int]``.

    Raises:
        DataError: if a source is empty (an encoder cannot read zero steps).
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Sequence[str], Sequence[str]]],
        source_vocab: Vocabulary,
        target_vocab: Vocabulary,
    ) -> None:
        empty = [i for i, (source, _) in enumerate(pairs) if len(source) == 0]
        if empty:
            shown = ", ".join(map(str, empty[:20]))
            raise DataError(f"{len(empty)} examples have an empty source (indices {shown})")
        self.sources = [source_vocab.encode(source) for source, _ in pairs]
        self.targets = [target_vocab.encode(target, add_eos=True) for _, target in pairs]
        self.source_lengths = [len(ids) for ids in self.sources]
        self.target_lengths = [len(ids) for ids in self.targets]

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> Example:
        return Example(index, self.sources[index], self.targets[index])


class ArrayPairDataset(Dataset[Example]):
    """Continuous pairs: ``dataset[i]`` is ``Example(i, (S_i, Din) tensor, (T_i, Dout) tensor)``.

    Each example is cut to its own length, so collation pads only to the batch maximum.
    """

    def __init__(self, data: ArrayData) -> None:
        self.data = data
        self._source = torch.from_numpy(np.ascontiguousarray(data.source, dtype=np.float32))
        self._target = torch.from_numpy(np.ascontiguousarray(data.target, dtype=np.float32))
        self.source_lengths = [int(n) for n in data.source_lengths]
        self.target_lengths = [int(n) for n in data.target_lengths]

    def __len__(self) -> int:
        return len(self.source_lengths)

    def __getitem__(self, index: int) -> Example:
        source = self._source[index, : self.source_lengths[index]]
        target = self._target[index, : self.target_lengths[index]]
        return Example(index, source, target)


def _pad_ids(sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    # padded in Python, then one tensor: 4× faster than a tensor copy per row (0.2 vs
    # 0.9 ms for 64 rows, ~2 % of a reference training update)
    sizes = [len(ids) for ids in sequences]
    width = max(sizes)
    padded = torch.tensor([[*ids, *([PAD_ID] * (width - size))]
                           for ids, size in zip(sequences, sizes, strict=True)],
                          dtype=torch.long)
    return padded, torch.tensor(sizes, dtype=torch.long)


def collate_tokens(items: Sequence[Example]) -> Batch:
    """Pad token examples into a :class:`Batch` (``PAD_ID`` padding, lengths kept)."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    source, source_lengths = _pad_ids([item.source for item in items])
    target, target_lengths = _pad_ids([item.target for item in items])
    indices = torch.tensor([item.index for item in items], dtype=torch.long)
    return Batch(source, source_lengths, target, target_lengths, indices)


def collate_arrays(items: Sequence[Example]) -> Batch:
    """Pad continuous examples into a float :class:`Batch` (zero padding, lengths kept)."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    pad = torch.nn.utils.rnn.pad_sequence
    source = pad([item.source for item in items], batch_first=True)  # (B, S, Din)
    target = pad([item.target for item in items], batch_first=True)  # (B, T, Dout)
    return Batch(
        source,
        torch.tensor([item.source.shape[0] for item in items], dtype=torch.long),
        target,
        torch.tensor([item.target.shape[0] for item in items], dtype=torch.long),
        torch.tensor([item.index for item in items], dtype=torch.long),
    )


class BucketBatchSampler:
    """Yields lists of dataset indices, batching examples of similar length together.

    With ``shuffle=True`` (training), each epoch: the kept indices are shuffled with a
    generator seeded by ``(seed, epoch)``; cut into pools of ``pool_batches * batch_size``;
    each pool is sorted by (target length, source length), longest first (the order the
    models run rows in: no batch needs reordering), and cut into batches; then the order
    of all batches is shuffled. Only the last batch of the epoch can be short
    (dropped with ``drop_last``). With ``shuffle=False`` (evaluation), batches are
    sequential in dataset order, or in (target length, source length, index) order with
    ``sort=True``.

    ``max_length`` (settable, e.g. by a length curriculum) leaves out examples whose
    target length exceeds it. ``start_batch`` skips the first batches of the epoch, to
    resume mid-epoch; :meth:`set_epoch` resets it to 0 unless given. With
    ``num_replicas > 1`` (data-parallel training) the epoch's batches are cut to a
    multiple of ``num_replicas`` and replica ``rank`` takes every ``num_replicas``-th one,
    so all replicas run the same number of steps.

    ``len(sampler)`` is the number of batches the next iteration yields.
    """

    def __init__(
        self,
        target_lengths: Sequence[int],
        batch_size: int,
        *,
        source_lengths: Sequence[int] | None = None,
        shuffle: bool = True,
        sort: bool = False,
        seed: int = 0,
        pool_batches: int = 100,
        drop_last: bool = False,
        max_length: int | None = None,
        start_batch: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if pool_batches < 1:
            raise ValueError(f"pool_batches must be at least 1, got {pool_batches}")
        if source_lengths is not None and len(source_lengths) != len(target_lengths):
            raise ValueError(
                f"{len(source_lengths)} source lengths but {len(target_lengths)} target lengths"
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.target_lengths = list(target_lengths)
        self.source_lengths = (
            list(source_lengths) if source_lengths is not None else [0] * len(target_lengths)
        )
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.sort = sort
        self.seed = seed
        self.pool_batches = pool_batches
        self.drop_last = drop_last
        self.max_length = max_length
        self.start_batch = start_batch
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (reshuffles) and the number of its batches to skip."""
        self.epoch = epoch
        self.start_batch = start_batch

    def _kept(self) -> list[int]:
        limit = self.max_length
        if limit is None:
            return list(range(len(self.target_lengths)))
        return [i for i, n in enumerate(self.target_lengths) if n <= limit]

    def _key(self, index: int) -> tuple[int, int]:
        return (self.target_lengths[index], self.source_lengths[index])

    def _cut(self, indices: list[int]) -> list[list[int]]:
        size = self.batch_size
        return [indices[i : i + size] for i in range(0, len(indices), size)]

    def epoch_batches(self) -> list[list[int]]:
        """All batches of the current epoch for this replica, before ``start_batch``."""
        indices = self._kept()
        # String seeds hash with SHA-512: stable across processes and PYTHONHASHSEED.
        rng = random.Random(f"assembly-bucket:{self.seed}:{self.epoch}")
        if self.shuffle:
            rng.shuffle(indices)
            pool = self.pool_batches * self.batch_size
            batches: list[list[int]] = []
            for start in range(0, len(indices), pool):
                # longest first: the order the packed encoder and the teacher-forcing
                # node run rows in, so that neither has to reorder the batch
                batches.extend(self._cut(sorted(indices[start : start + pool], key=self._key,
                                                reverse=True)))
        else:
            if self.sort:
                indices.sort(key=lambda i: (*self._key(i), i))
            batches = self._cut(indices)
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            rng.shuffle(batches)
        if self.num_replicas > 1:
            usable = len(batches) - len(batches) % self.num_replicas
            batches = batches[self.rank : usable : self.num_replicas]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches()[self.start_batch :]

    def __len__(self) -> int:
        kept = len(self._kept())
        full = kept // self.batch_size if self.drop_last else math.ceil(kept / self.batch_size)
        full //= self.num_replicas
        return max(0, full - self.start_batch)


def make_loader(
    dataset: Dataset[Example],
    sampler: BucketBatchSampler,
    collate: Callable[[Sequence[Example]], Batch],
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader[Example]:
    """A DataLoader yielding :class:`Batch` objects in the sampler's order.

    Worker processes (``num_workers > 0``) are persistent across epochs; the sampler runs
    in the main process, so ``sampler.set_epoch`` still takes effect between epochs.
    """
    # A generator of its own: without one, every iter(loader) draws its base seed from the
    # global torch RNG, which shifts dropout masks and breaks exact resume.
    return DataLoader(
        dataset,
        generator=torch.Generator().manual_seed(0),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )
