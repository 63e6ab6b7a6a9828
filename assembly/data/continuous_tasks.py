"""Built-in generated tasks of continuous mode (real vectors in and out), so that a
``mode = "continuous"`` spec trains with no files.

Every task draws a source of ``input_dim``-channel vectors whose length is uniform in
``[min_length, max_length]`` and derives a target of ``output_dim`` channels, the target's
channel ``j`` coming from the source's channel ``j mod input_dim``:

- ``copy``: the target is the source (values uniform in [-1, 1]).
- ``reverse``: the target is the source reversed in time (values uniform in [-1, 1]).
- ``sine``: each source channel is a sine wave ``a·sin(2πt/p + φ)`` with its own
  amplitude ``a`` in [0.5, 1], period ``p`` in [4, 20] steps and phase ``φ``; the target
  continues the waves after the source's last step, for a number of steps drawn like the
  source's length.

With a fixed ``output_length`` every target has exactly that many steps: ``sine``
continues the waves that long; a longer ``copy``/``reverse`` target is cut, a shorter one
is padded with zero vectors (which the model then learns to produce).

Generation is deterministic: the same arguments and ``seed`` always give the same arrays
(a private numpy generator is seeded with ``seed``; global random state is never
touched). numpy is imported on first use: planning a spec never pays for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from assembly.data.errors import DataError
from assembly.data.files import ArrayData

__all__ = ["CONTINUOUS_TASKS", "ContinuousTask", "generate_arrays", "split_arrays"]

Draw = Callable[[Any, int, int, int], tuple[Any, Any]]
"""``draw(rng, steps, target_steps, input_dim) -> (source (steps, D), target (≤, D))``."""


def _uniform(rng: Any, steps: int, dim: int) -> Any:
    return rng.uniform(-1.0, 1.0, size=(steps, dim))


def _copy(rng: Any, steps: int, target_steps: int, dim: int) -> tuple[Any, Any]:
    source = _uniform(rng, steps, dim)
    return source, source


def _reverse(rng: Any, steps: int, target_steps: int, dim: int) -> tuple[Any, Any]:
    source = _uniform(rng, steps, dim)
    return source, source[::-1]


def _sine(rng: Any, steps: int, target_steps: int, dim: int) -> tuple[Any, Any]:
    import numpy as np

    amplitude = rng.uniform(0.5, 1.0, size=dim)
    period = rng.uniform(4.0, 20.0, size=dim)
    phase = rng.uniform(0.0, 2 * math.pi, size=dim)
    time = np.arange(steps + target_steps, dtype=np.float64)[:, None]  # (T + L, 1)
    waves = amplitude * np.sin(2 * math.pi * time / period + phase)  # (T + L, D)
    return waves[:steps], waves[steps:]


@attrs.frozen
class ContinuousTask:
    """A task's one-example generator; ``free_target_length``: without a fixed
    ``output_length`` the target's length is drawn on its own (else it is the source's)."""

    draw: Draw
    free_target_length: bool = False


CONTINUOUS_TASKS: dict[str, ContinuousTask] = {
    "copy": ContinuousTask(_copy),
    "reverse": ContinuousTask(_reverse),
    "sine": ContinuousTask(_sine, free_target_length=True),
}
"""Known continuous task names mapped to their generators."""


def _check(task: str, count: int, input_dim: int, output_dim: int,
           output_length: int | None, min_length: int, max_length: int) -> ContinuousTask:
    problems: list[str] = []
    if task not in CONTINUOUS_TASKS:
        problems.append(f"unknown continuous task {task!r}; known: "
                        f"{', '.join(sorted(CONTINUOUS_TASKS))}")
    if count < 0:
        problems.append(f"count must be at least 0, got {count}")
    if input_dim < 1 or output_dim < 1:
        problems.append(f"input_dim and output_dim must be at least 1, got {input_dim} and "
                        f"{output_dim}")
    if output_length is not None and output_length < 1:
        problems.append(f"output_length must be at least 1, got {output_length}")
    if min_length < 1:
        problems.append(f"min_length must be at least 1, got {min_length}")
    if max_length < min_length:
        problems.append(f"max_length ({max_length}) must be >= min_length ({min_length})")
    if problems:
        raise DataError("\n".join(problems))
    return CONTINUOUS_TASKS[task]


def _fit(sequence: Any, steps: int) -> Any:
    """``sequence`` cut to ``steps`` rows, or padded with zero rows up to it."""
    import numpy as np

    if len(sequence) >= steps:
        return sequence[:steps]
    return np.concatenate([sequence, np.zeros((steps - len(sequence), sequence.shape[1]))])


def generate_arrays(task: str, count: int, seed: int, *, input_dim: int, output_dim: int,
                    output_length: int | None = None, min_length: int = 3,
                    max_length: int = 20) -> ArrayData:
    """``count`` examples of continuous ``task`` as :class:`ArrayData` (float32, padded to
    the longest, with each example's length), deterministically for ``seed``.

    Raises:
        DataError: an unknown task (the message lists the known ones), a size below 1 or
            ``max_length < min_length``.
    """
    import numpy as np

    made = _check(task, count, input_dim, output_dim, output_length, min_length, max_length)
    rng = np.random.default_rng(seed)
    channels = [j % input_dim for j in range(output_dim)]
    sources, targets = [], []
    for _ in range(count):
        steps = int(rng.integers(min_length, max_length + 1))
        if output_length is not None:
            target_steps = output_length
        elif made.free_target_length:
            target_steps = int(rng.integers(min_length, max_length + 1))
        else:
            target_steps = steps
        source, target = made.draw(rng, steps, target_steps, input_dim)
        sources.append(source)
        targets.append(_fit(target, target_steps)[:, channels])
    return ArrayData(_padded(sources, input_dim), _padded(targets, output_dim),
                     np.array([len(s) for s in sources], dtype=np.int64),
                     np.array([len(t) for t in targets], dtype=np.int64))


def _padded(sequences: list[Any], dim: int) -> Any:
    """(N, longest, dim) float32 with zeros after each sequence's end."""
    import numpy as np

    longest = max((len(s) for s in sequences), default=1)
    out = np.zeros((len(sequences), longest, dim), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = sequence
    return out


def split_arrays(task: str, train: int, dev: int, test: int, seed: int,
                 **kwargs: Any) -> dict[str, ArrayData]:
    """``train``/``dev``/``test`` splits of continuous ``task``, drawn with seeds ``seed``,
    ``seed + 1`` and ``seed + 2`` (independent draws); ``kwargs`` go to
    :func:`generate_arrays`."""
    sizes = {"train": train, "dev": dev, "test": test}
    return {name: generate_arrays(task, size, seed + offset, **kwargs)
            for offset, (name, size) in enumerate(sizes.items())}
