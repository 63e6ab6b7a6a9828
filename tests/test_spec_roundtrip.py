"""Specs round-trip exactly through TOML and JSON, and hash canonically.

load → dump → load gives an equal spec (and the same text again); equal specs hash equal
whatever the key order or which defaults a file spells out; different specs hash
differently.
"""

from __future__ import annotations

import json
import random
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from assembly.errors import SpecError
from assembly.registry import make_registry
from assembly.spec import (
    CurriculumSpec,
    DataSpec,
    OptimizerSpec,
    ScheduleSpec,
    Spec,
    TrainingSpec,
    dump_spec,
    dumps_spec,
    load_spec,
    loads_spec,
    spec_from_dict,
    spec_hash,
    spec_to_dict,
)
from assembly.testing import make_spec, spec_strategy

REGISTRY = make_registry(entrypoints=False, strict=True)

finite = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
below_one = st.floats(min_value=0.0, max_value=0.99, allow_nan=False)
count = st.integers(1, 10**6)
optional_count = st.none() | count


@st.composite
def trainings(draw: Any, token_mode: bool) -> TrainingSpec:
    start = draw(st.integers(1, 20))
    curriculum = draw(st.none() | st.builds(
        CurriculumSpec, start=st.just(start), step=st.integers(1, 5), every=st.integers(1, 3),
        end=st.none() | st.integers(start, 50)))
    return TrainingSpec(
        seed=draw(st.integers(-(2**31), 2**31)), epochs=draw(count),
        max_updates=draw(optional_count), batch_size=draw(count),
        optimizer=OptimizerSpec(
            type=draw(st.sampled_from(("adam", "adamw", "sgd", "rmsprop", "adagrad"))),
            lr=draw(finite), weight_decay=draw(unit), momentum=draw(unit),
            betas=(draw(unit), draw(unit))),
        schedule=ScheduleSpec(
            type=draw(st.sampled_from(("constant", "step", "exponential", "cosine",
                                       "plateau"))),
            gamma=draw(finite), step_size=draw(count), patience=draw(count),
            warmup=draw(st.integers(0, 100))),
        clip=draw(st.none() | finite), label_smoothing=draw(below_one),
        scheduled_sampling=draw(unit), early_stopping=draw(optional_count),
        metric=draw(st.sampled_from(
            ("auto", "loss", "token_accuracy", "exact_match", "bleu", "chrf") if token_mode
            else ("auto", "loss", "mse"))),
        eval_every=draw(optional_count), checkpoint_every=draw(optional_count),
        keep_checkpoints=draw(count), bucketing=draw(st.booleans()),
        workers=draw(st.integers(0, 8)), curriculum=curriculum, amp=draw(st.booleans()),
        threads=draw(st.integers(0, 64)))


@st.composite
def datas(draw: Any, token_mode: bool) -> DataSpec:
    low = draw(st.integers(1, 10))
    fmt = draw(st.sampled_from(("tsv", "parallel", "npy")))
    paths = st.text(min_size=1, max_size=12)
    files = st.lists(paths, min_size=2, max_size=2) if fmt == "parallel" else \
        st.lists(paths, max_size=2)
    train = tuple(draw(files))
    tasks = st.sampled_from(("copy", "reverse", "sort", "addition") if token_mode
                            else ("copy", "reverse", "sine"))
    return DataSpec(
        task=None if train else draw(tasks),
        train_size=draw(count), dev_size=draw(count), test_size=draw(count),
        min_length=low, max_length=draw(st.integers(low, 40)), symbols=draw(st.integers(1, 30)),
        seed=draw(st.integers(0, 10**9)), format=fmt, train=train,
        dev=tuple(draw(files)), test=tuple(draw(files)),
        tokenizer=draw(st.sampled_from(("char", "whitespace"))),
        max_source_length=draw(count))


@st.composite
def full_specs(draw: Any) -> Spec:
    """Random architectures with random training and data sections and any name."""
    spec = draw(spec_strategy(REGISTRY))
    return attrs.evolve(spec, training=draw(trainings(spec.token_mode)),
                        data=draw(datas(spec.token_mode)),
                        name=draw(st.text(max_size=10)))


FULL_SPECS = full_specs()


@given(FULL_SPECS, st.sampled_from(("toml", "json")))
def test_load_dump_load_is_exact(spec: Spec, fmt: str) -> None:
    text = dumps_spec(spec, fmt, REGISTRY)
    loaded = loads_spec(text, fmt, REGISTRY)
    assert loaded == spec
    assert dumps_spec(loaded, fmt, REGISTRY) == text
    assert spec_from_dict(spec_to_dict(spec, REGISTRY), REGISTRY) == spec


@given(FULL_SPECS)
def test_toml_and_json_agree(spec: Spec) -> None:
    from_toml = loads_spec(dumps_spec(spec, "toml", REGISTRY), "toml", REGISTRY)
    from_json = loads_spec(dumps_spec(spec, "json", REGISTRY), "json", REGISTRY)
    assert from_toml == from_json == spec


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: _shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


@given(FULL_SPECS, st.randoms(use_true_random=False))
def test_equal_specs_hash_equal_whatever_the_key_order(spec: Spec, rng: random.Random) -> None:
    data = _shuffled(spec_to_dict(spec, REGISTRY), rng)
    loaded = loads_spec(json.dumps(data), "json", REGISTRY)
    assert loaded == spec
    assert spec_hash(loaded, REGISTRY) == spec_hash(spec, REGISTRY)


@given(FULL_SPECS, FULL_SPECS)
def test_different_specs_hash_differently(first: Spec, second: Spec) -> None:
    if first != second:
        assert spec_hash(first, REGISTRY) != spec_hash(second, REGISTRY)
    else:
        assert spec_hash(first, REGISTRY) == spec_hash(second, REGISTRY)


def test_spelled_out_defaults_hash_like_left_out_ones() -> None:
    short = loads_spec("depth = 2\n[encoder]\nhidden = 16\n", registry=REGISTRY)
    full = loads_spec(dumps_spec(short, "toml", REGISTRY), registry=REGISTRY)
    assert full == short
    assert spec_hash(full, REGISTRY) == spec_hash(short, REGISTRY)
    reordered = loads_spec("[encoder]\nhidden = 16\n[encoder.cell]\ntype = 'lstm'\n"
                           "forget_bias = 1.0\n\n[training]\nclip = 1\n", registry=REGISTRY)
    spaced = loads_spec('{"training": {"clip": 1.0}, "encoder": {"hidden": 16}}', "json",
                        REGISTRY)
    assert reordered == spaced
    assert spec_hash(reordered, REGISTRY) == spec_hash(spaced, REGISTRY)


def test_an_integer_where_a_number_is_expected_is_that_number() -> None:
    as_int = loads_spec("[training.optimizer]\nlr = 1\n", registry=REGISTRY)
    as_float = loads_spec("[training.optimizer]\nlr = 1.0\n", registry=REGISTRY)
    assert as_int == as_float
    assert isinstance(as_int.training.optimizer.lr, float)
    assert spec_hash(as_int, REGISTRY) == spec_hash(as_float, REGISTRY)


def test_one_changed_field_changes_the_hash() -> None:
    spec = make_spec(registry=REGISTRY)
    digest = spec_hash(spec, REGISTRY)
    assert len(digest) == 64 and int(digest, 16) >= 0
    changed = [
        attrs.evolve(spec, name="other"),
        attrs.evolve(spec, depth=(1, 1)),  # the same architecture, written differently
        attrs.evolve(spec, training=attrs.evolve(spec.training, seed=2)),
        attrs.evolve(spec, encoder=attrs.evolve(spec.encoder, hidden=(8,))),
    ]
    digests = {spec_hash(other, REGISTRY) for other in changed}
    assert digest not in digests and len(digests) == len(changed)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_files_round_trip(tmp_path: Any, suffix: str) -> None:
    spec = make_spec(registry=REGISTRY, name="file", depth=(2, 3), encoder__bidirectional=True)
    path = tmp_path / f"spec{suffix}"
    dump_spec(spec, path, REGISTRY)
    assert load_spec(path, REGISTRY) == spec
    if suffix == ".json":
        json.loads(path.read_text())  # really JSON
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, nothing left over


@pytest.mark.parametrize("field", ["clip", "task"])
def test_none_round_trips_where_a_missing_key_means_none(field: str) -> None:
    spec = make_spec(registry=REGISTRY)
    if field == "clip":
        spec = attrs.evolve(spec, training=attrs.evolve(spec.training, clip=None))
    else:
        spec = attrs.evolve(spec, data=attrs.evolve(spec.data, task=None, train=("a.tsv",)))
    for fmt in ("toml", "json"):
        assert loads_spec(dumps_spec(spec, fmt, REGISTRY), fmt, REGISTRY) == spec


@pytest.mark.parametrize("text", ["[training]\nclip = nan\n", "[training.optimizer]\nlr = inf\n",
                                  "[encoder.cell]\ntype = 'lstm'\nforget_bias = -inf\n"])
def test_non_finite_numbers_are_rejected(text: str) -> None:
    with pytest.raises(SpecError, match="finite"):
        loads_spec(text, registry=REGISTRY)
