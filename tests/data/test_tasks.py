"""Generated tasks: determinism, correctness, bounds, errors."""

from __future__ import annotations

import pytest

from assembly.data import DataError
from assembly.data.tasks import TASKS, generate_pairs, split_task, symbol_names


@pytest.mark.parametrize("task", sorted(TASKS))
def test_same_seed_same_pairs_other_seed_other_pairs(task: str) -> None:
    first = generate_pairs(task, 50, seed=7)
    assert first == generate_pairs(task, 50, seed=7)
    assert first != generate_pairs(task, 50, seed=8)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_source_lengths_within_bounds(task: str) -> None:
    pairs = generate_pairs(task, 300, seed=1, min_length=4, max_length=9)
    lengths = {len(source) for source, _ in pairs}
    assert min(lengths) >= 4 and max(lengths) <= 9
    assert lengths == set(range(4, 10))  # uniform over the range: all values appear


def test_copy_reverse_sort() -> None:
    for source, target in generate_pairs("copy", 20, seed=2):
        assert target == source
    for source, target in generate_pairs("reverse", 20, seed=2):
        assert target == source[::-1]
    names = symbol_names(30)
    for source, target in generate_pairs("sort", 20, seed=2, symbols=30):
        assert target == sorted(source, key=names.index)
        assert set(source) <= set(names)


def test_symbols_past_z() -> None:
    names = symbol_names(28)
    assert names[:3] == ["a", "b", "c"] and names[25] == "z"
    assert names[26:] == ["s26", "s27"]
    tokens = {t for source, _ in generate_pairs("copy", 200, seed=0, symbols=3) for t in source}
    assert tokens == {"a", "b", "c"}


def test_addition_targets_are_sums() -> None:
    pairs = generate_pairs("addition", 200, seed=3, min_length=3, max_length=8)
    for source, target in pairs:
        assert all(len(token) == 1 for token in source)
        assert source.count("+") == 1
        left, right = "".join(source).split("+")
        assert left and right
        assert "".join(target) == str(int(left) + int(right))
        assert 3 <= len(source) <= 8


def test_split_task_uses_distinct_seeds() -> None:
    splits = split_task("reverse", 30, 10, 5, seed=11, max_length=12)
    assert {name: len(pairs) for name, pairs in splits.items()} == {
        "train": 30,
        "dev": 10,
        "test": 5,
    }
    assert splits["train"] == generate_pairs("reverse", 30, 11, max_length=12)
    assert splits["dev"] == generate_pairs("reverse", 10, 12, max_length=12)
    assert splits["test"] == generate_pairs("reverse", 5, 13, max_length=12)


def test_unknown_task_lists_known_ones() -> None:
    known = r"unknown task 'frobnicate'.*addition, copy, reverse, sort"
    with pytest.raises(DataError, match=known):
        generate_pairs("frobnicate", 1, 0)


@pytest.mark.parametrize(
    ("lo", "hi", "message"),
    [(5, 4, "max_length"), (0, 4, "min_length"), (-1, 3, "min_length")],
)
def test_bad_lengths(lo: int, hi: int, message: str) -> None:
    with pytest.raises(DataError, match=message):
        generate_pairs("copy", 1, 0, min_length=lo, max_length=hi)
