"""Datasets, collation and the bucketing batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from assembly.data import DataError, Vocabulary
from assembly.data.batching import (
    ArrayPairDataset,
    Batch,
    BucketBatchSampler,
    TokenPairDataset,
    collate_arrays,
    collate_tokens,
    make_loader,
)
from assembly.data.files import ArrayData
from assembly.data.tasks import generate_pairs
from assembly.data.vocab import EOS_ID, PAD_ID


def _token_dataset() -> TokenPairDataset:
    pairs = [(["a", "b", "c"], ["c"]), (["b"], ["b", "a", "a", "c"]), (["c", "c"], [])]
    vocab = Vocabulary.build([s for pair in pairs for s in pair])
    return TokenPairDataset(pairs, vocab, vocab)


def test_token_dataset_adds_eos_to_targets_only() -> None:
    dataset = _token_dataset()
    assert dataset.source_lengths == [3, 1, 2]
    assert dataset.target_lengths == [2, 5, 1]
    item = dataset[2]
    assert item.index == 2 and EOS_ID not in item.source and item.target == [EOS_ID]


def test_token_dataset_rejects_empty_source() -> None:
    vocab = Vocabulary.build([["a"]])
    with pytest.raises(DataError, match=r"empty source \(indices 1\)"):
        TokenPairDataset([(["a"], ["a"]), ([], ["a"])], vocab, vocab)


def test_collate_tokens_pads_and_keeps_lengths() -> None:
    dataset = _token_dataset()
    batch = collate_tokens([dataset[1], dataset[0]])
    assert batch.source.dtype == torch.long and batch.source.shape == (2, 3)
    assert batch.source_lengths.tolist() == [1, 3]
    assert batch.target_lengths.tolist() == [5, 2]
    assert batch.indices.tolist() == [1, 0]
    assert batch.source[0, 1:].tolist() == [PAD_ID, PAD_ID]
    assert batch.target[1].tolist() == [*dataset[0].target, PAD_ID, PAD_ID, PAD_ID]
    for row, length in enumerate(batch.target_lengths.tolist()):
        assert batch.target[row, length - 1] == EOS_ID
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and moved is not batch and len(moved) == 2


def test_array_dataset_and_collate() -> None:
    rng = np.random.default_rng(0)
    data = ArrayData(
        source=rng.normal(size=(3, 5, 2)).astype(np.float32),
        target=rng.normal(size=(3, 4, 1)).astype(np.float32),
        source_lengths=np.array([5, 2, 3]),
        target_lengths=np.array([1, 4, 4]),
    )
    dataset = ArrayPairDataset(data)
    assert dataset.source_lengths == [5, 2, 3] and dataset.target_lengths == [1, 4, 4]
    batch = collate_arrays([dataset[1], dataset[2]])
    assert batch.source.dtype == torch.float32 and batch.source.shape == (2, 3, 2)
    assert batch.target.shape == (2, 4, 1)
    assert batch.source_lengths.tolist() == [2, 3]
    assert torch.equal(batch.source[0, :2], torch.from_numpy(data.source[1, :2]))
    assert torch.all(batch.source[0, 2:] == 0)


def _lengths(n: int = 1000, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 50, size=n).tolist()


def test_sampler_covers_each_index_once() -> None:
    lengths = _lengths(1003)
    sampler = BucketBatchSampler(lengths, 16, pool_batches=5, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 63
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(1003))
    assert sum(len(b) < 16 for b in batches) == 1


def test_sampler_batches_are_length_homogeneous() -> None:
    lengths = _lengths(2000)
    sampler = BucketBatchSampler(lengths, 20, pool_batches=50, seed=1)
    bucketed = np.mean([np.ptp([lengths[i] for i in b]) for b in sampler])
    rng = np.random.default_rng(0)
    random_batches = rng.permutation(2000).reshape(100, 20)
    unbucketed = np.mean([np.ptp([lengths[i] for i in b]) for b in random_batches])
    assert bucketed <= 2 < unbucketed / 10
    # inside one batch, examples come sorted by target length, longest first
    for batch in sampler:
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)


def test_sampler_deterministic_per_seed_and_epoch() -> None:
    lengths = _lengths(500)
    a = BucketBatchSampler(lengths, 8, seed=5)
    b = BucketBatchSampler(lengths, 8, seed=5)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    c = BucketBatchSampler(lengths, 8, seed=6)
    c.set_epoch(2)
    assert list(a) != list(c)


def test_sampler_start_batch_resumes_mid_epoch() -> None:
    sampler = BucketBatchSampler(_lengths(300), 10, seed=2)
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.set_epoch(4, start_batch=7)
    assert list(sampler) == full[7:]
    assert len(sampler) == len(full) - 7
    sampler.set_epoch(5)
    assert sampler.start_batch == 0


def test_sampler_max_length_filters() -> None:
    lengths = _lengths(400)
    sampler = BucketBatchSampler(lengths, 7, seed=0, max_length=10)
    kept = [i for i, n in enumerate(lengths) if n <= 10]
    assert sorted(i for b in sampler for i in b) == kept
    assert len(sampler) == -(-len(kept) // 7)
    sampler.max_length = None
    assert len(sampler) == -(-400 // 7)


def test_sampler_eval_orders() -> None:
    lengths = [5, 1, 3, 3, 2]
    plain = BucketBatchSampler(lengths, 2, shuffle=False)
    assert list(plain) == [[0, 1], [2, 3], [4]]
    by_length = BucketBatchSampler(lengths, 2, shuffle=False, sort=True)
    assert list(by_length) == [[1, 4], [2, 3], [0]]
    dropped = BucketBatchSampler(lengths, 2, shuffle=False, drop_last=True)
    assert list(dropped) == [[0, 1], [2, 3]] and len(dropped) == 2


def test_sampler_replicas_split_evenly() -> None:
    lengths = _lengths(101)
    shards = [
        list(BucketBatchSampler(lengths, 4, seed=1, num_replicas=3, rank=r)) for r in (0, 1, 2)
    ]
    assert {len(s) for s in shards} == {8}
    seen = [i for shard in shards for batch in shard for i in batch]
    assert len(seen) == len(set(seen))


def test_loader_yields_batches() -> None:
    pairs = generate_pairs("reverse", 64, seed=0, max_length=9)
    vocab = Vocabulary.build([s for s, _ in pairs])
    dataset = TokenPairDataset(pairs, vocab, vocab)
    sampler = BucketBatchSampler(
        dataset.target_lengths, 8, source_lengths=dataset.source_lengths, seed=0
    )
    batches = list(make_loader(dataset, sampler, collate_tokens))
    assert len(batches) == 8
    assert all(isinstance(b, Batch) for b in batches)
    assert sorted(torch.cat([b.indices for b in batches]).tolist()) == list(range(64))
    for batch in batches:
        for row, index in enumerate(batch.indices.tolist()):
            source = vocab.decode(batch.source[row].tolist())
            assert source == pairs[index][0]
            assert vocab.decode(batch.target[row].tolist()) == source[::-1]
