"""Generated continuous tasks: determinism, shapes and lengths, correctness, errors, and
the spec check that a task fits the mode."""

from __future__ import annotations

import numpy as np
import pytest

from assembly.data import ArrayData, DataError
from assembly.data.continuous_tasks import CONTINUOUS_TASKS, generate_arrays, split_arrays
from assembly.errors import SpecError
from assembly.spec import loads_spec

DIMS = {"input_dim": 3, "output_dim": 2}


def _rows(data: ArrayData, index: int) -> tuple[np.ndarray, np.ndarray]:
    return (data.source[index, : data.source_lengths[index]],
            data.target[index, : data.target_lengths[index]])


@pytest.mark.parametrize("task", sorted(CONTINUOUS_TASKS))
def test_same_seed_same_arrays_other_seed_other_arrays(task: str) -> None:
    first = generate_arrays(task, 20, 7, **DIMS)
    again = generate_arrays(task, 20, 7, **DIMS)
    other = generate_arrays(task, 20, 8, **DIMS)
    assert np.array_equal(first.source, again.source)
    assert np.array_equal(first.target, again.target)
    assert not np.array_equal(first.source[:, :3], other.source[:, :3])


@pytest.mark.parametrize("task", sorted(CONTINUOUS_TASKS))
def test_shapes_and_lengths(task: str) -> None:
    data = generate_arrays(task, 200, 1, input_dim=4, output_dim=3, min_length=2,
                           max_length=7)
    assert data.source.dtype == data.target.dtype == np.float32
    assert (data.input_dim, data.output_dim, len(data)) == (4, 3, 200)
    assert set(data.source_lengths.tolist()) == set(range(2, 8))
    assert set(data.target_lengths.tolist()) <= set(range(2, 8))
    for index in range(len(data)):  # nothing after each example's end
        assert not data.source[index, data.source_lengths[index]:].any()
        assert not data.target[index, data.target_lengths[index]:].any()


def test_copy_and_reverse_map_channel_j_from_j_mod_input_dim() -> None:
    for task, order in (("copy", slice(None)), ("reverse", slice(None, None, -1))):
        data = generate_arrays(task, 10, 3, input_dim=2, output_dim=3)
        for index in range(len(data)):
            source, target = _rows(data, index)
            assert np.array_equal(target, source[order][:, [0, 1, 0]])
            assert np.abs(source).max() <= 1.0


def test_a_fixed_output_length_cuts_or_pads_with_zeros() -> None:
    data = generate_arrays("reverse", 50, 4, **DIMS, output_length=6, min_length=3,
                           max_length=9)
    assert set(data.target_lengths.tolist()) == {6}
    for index in range(len(data)):
        source, target = _rows(data, index)
        kept = min(len(source), 6)
        assert np.array_equal(target[:kept], source[::-1][:kept, :2])
        assert not target[kept:].any()


def test_sine_targets_continue_the_waves() -> None:
    """A sampled sine obeys x[t+1] + x[t−1] = 2 cos(2π/p) x[t]: across the end of the
    source too, so the target is the same wave going on."""
    data = generate_arrays("sine", 20, 5, **DIMS, min_length=6, max_length=10)
    assert not np.array_equal(data.target_lengths, data.source_lengths)  # drawn on its own
    for index in range(len(data)):
        source, target = _rows(data, index)
        for channel in range(2):
            wave = np.concatenate([source[:, channel], target[:, channel]]).astype(np.float64)
            ratios = (wave[2:] + wave[:-2]) / wave[1:-1]
            steady = np.abs(wave[1:-1]) > 0.2  # away from zeros, where the ratio is noisy
            assert np.ptp(ratios[steady]) < 1e-3, (index, channel)
        assert np.abs(source).max() <= 1.0 + 1e-6


def test_split_arrays_draws_each_split_with_its_own_seed() -> None:
    splits = split_arrays("copy", 8, 4, 2, seed=11, **DIMS)
    assert {name: len(data) for name, data in splits.items()} == {"train": 8, "dev": 4,
                                                                  "test": 2}
    assert np.array_equal(splits["dev"].source, generate_arrays("copy", 4, 12, **DIMS).source)


def test_errors_list_every_problem_and_the_known_tasks() -> None:
    with pytest.raises(DataError) as caught:
        generate_arrays("sort", 3, 0, input_dim=0, output_dim=1, min_length=4, max_length=2)
    lines = str(caught.value).splitlines()
    assert lines[0] == "unknown continuous task 'sort'; known: copy, reverse, sine"
    assert any("input_dim and output_dim must be at least 1" in line for line in lines)
    assert any("max_length (2) must be >= min_length (4)" in line for line in lines)


@pytest.mark.parametrize(("text", "message"), [
    ('mode = "continuous"\n[continuous]\ninput_dim = 2\noutput_dim = 2\n'
     '[data]\ntask = "sort"\n',
     "unknown task 'sort' in continuous mode; known: copy, reverse, sine"),
    ('[data]\ntask = "sine"\n',
     "unknown task 'sine' in tokens mode; known: addition, copy, reverse, sort"),
])
def test_the_spec_check_knows_which_tasks_fit_the_mode(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        loads_spec(text)
    assert [(p.message, p.path) for p in caught.value.problems] == [(message, "$.data.task")]
