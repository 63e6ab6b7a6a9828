"""Built-in generated tasks, so that training runs with no download (the token tasks; the
continuous ones are in :mod:`assembly.data.continuous_tasks`).

Every task maps a random source sequence of symbol tokens to a target sequence:

- ``copy``: the target is the source.
- ``reverse``: the target is the source reversed.
- ``sort``: the target is the source sorted by symbol index (``"a" < "b" < ... < "s26"``).
- ``addition``: the source is the decimal digits of two numbers joined by ``"+"``, one
  character per token (``["1", "2", "+", "3", "4"]``); the target is the digits of the sum.

Generation is deterministic: the same ``(task, count, seed, options)`` always gives the
same pairs (a private :class:`random.Random` seeded with ``seed`` is used; global random
state is never touched).
"""

from __future__ import annotations

import functools
import random
import string
from collections.abc import Callable
from typing import Any

from assembly.data.errors import DataError

__all__ = ["TASKS", "Pair", "generate_pairs", "split_task", "symbol_names"]

Pair = tuple[list[str], list[str]]
"""A (source tokens, target tokens) example."""

TaskFn = Callable[[random.Random, int, int, list[str]], Pair]
"""``fn(rng, min_length, max_length, symbols) -> pair``: draw one example."""


def symbol_names(count: int) -> list[str]:
    """The first ``count`` symbol tokens: ``"a"`` .. ``"z"``, then ``"s26"``, ``"s27"``, ...

    Raises:
        DataError: if ``count < 1``.
    """
    if count < 1:
        raise DataError(f"symbols must be at least 1, got {count}")
    letters = list(string.ascii_lowercase)
    return [letters[i] if i < len(letters) else f"s{i}" for i in range(count)]


def _random_source(rng: random.Random, lo: int, hi: int, symbols: list[str]) -> list[str]:
    length = rng.randint(lo, hi)
    return [rng.choice(symbols) for _ in range(length)]


def _copy(rng: random.Random, lo: int, hi: int, symbols: list[str]) -> Pair:
    source = _random_source(rng, lo, hi, symbols)
    return source, list(source)


def _reverse(rng: random.Random, lo: int, hi: int, symbols: list[str]) -> Pair:
    source = _random_source(rng, lo, hi, symbols)
    return source, source[::-1]


def _sort(rng: random.Random, lo: int, hi: int, symbols: list[str]) -> Pair:
    source = _random_source(rng, lo, hi, symbols)
    rank = {token: i for i, token in enumerate(symbols)}
    return source, sorted(source, key=rank.__getitem__)


def _random_number(rng: random.Random, digits: int) -> int:
    """A number with exactly ``digits`` decimal digits (no leading zero unless it is 0)."""
    if digits == 1:
        return rng.randint(0, 9)
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


def _addition(rng: random.Random, lo: int, hi: int, symbols: list[str]) -> Pair:
    # Total source length = digits(a) + 1 + digits(b), so at least 3 tokens are needed.
    total = rng.randint(max(lo, 3), hi)
    left_digits = rng.randint(1, total - 2)
    right_digits = total - 1 - left_digits
    left = _random_number(rng, left_digits)
    right = _random_number(rng, right_digits)
    source = [*str(left), "+", *str(right)]
    return source, list(str(left + right))


TASKS: dict[str, TaskFn] = {
    "copy": _copy,
    "reverse": _reverse,
    "sort": _sort,
    "addition": _addition,
}
"""Known task names mapped to their one-example generators."""


def _check(task: str, count: int, min_length: int, max_length: int) -> TaskFn:
    problems: list[str] = []
    if task not in TASKS:
        problems.append(f"unknown task {task!r}; known tasks: {', '.join(sorted(TASKS))}")
    if count < 0:
        problems.append(f"count must be at least 0, got {count}")
    if min_length < 1:
        problems.append(f"min_length must be at least 1, got {min_length}")
    if max_length < min_length:
        problems.append(f"max_length ({max_length}) must be >= min_length ({min_length})")
    if task == "addition" and max_length < 3:
        problems.append(f"task 'addition' needs max_length >= 3 (a+b), got {max_length}")
    if problems:
        raise DataError("\n".join(problems))
    return TASKS[task]


def generate_pairs(
    task: str,
    count: int,
    seed: int,
    *,
    min_length: int = 3,
    max_length: int = 20,
    symbols: int = 20,
) -> list[Pair]:
    """Generate ``count`` (source, target) pairs of ``task``, deterministically for ``seed``.

    Source lengths are uniform in ``[min_length, max_length]`` (for ``addition``, in
    ``[max(min_length, 3), max_length]``), source tokens uniform over the first ``symbols``
    symbols (see :func:`symbol_names`; ``addition`` uses digits instead).

    Raises:
        DataError: unknown task (the message lists the known ones), ``min_length < 1``,
            ``max_length < min_length``, ``count < 0`` or ``symbols < 1``.
    """
    fn = _check(task, count, min_length, max_length)
    names = symbol_names(symbols)
    rng = random.Random(seed)
    return [fn(rng, min_length, max_length, names) for _ in range(count)]


def split_task(
    task: str, train: int, dev: int, test: int, seed: int, **kwargs: Any
) -> dict[str, list[Pair]]:
    """Generate ``train``/``dev``/``test`` splits of ``task``.

    The splits are drawn with seeds ``seed``, ``seed + 1`` and ``seed + 2``, so they are
    independent draws (disjoint by seed; identical pairs may still occur by chance on
    small symbol sets). ``kwargs`` are passed to :func:`generate_pairs`.

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}``.
    """
    sizes = {"train": train, "dev": dev, "test": test}
    return {
        name: generate_pairs(task, size, seed + offset, **kwargs)
        for offset, (name, size) in enumerate(sizes.items())
    }


@functools.lru_cache(maxsize=64)
def task_inventory(task: str, symbols: int = 20) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every token a task can produce on the source and on the target side (specials not
    included): lets a spec be sized before any data is generated. Cached: the planner
    asks for it on every plan."""
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; known tasks: {', '.join(sorted(TASKS))}")
    if task == "addition":
        digits = [str(d) for d in range(10)]
        return (*digits, "+"), tuple(digits)
    names = tuple(symbol_names(symbols))
    return names, names
