"""Every example in specs/ loads, checks, plans and round-trips; the small ones build and
run; the paper-sized ones are built on the meta device (no memory) and counted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from assembly.build import build_model, count_parameters, module_table
from assembly.plan import plan_model
from assembly.registry import make_registry
from assembly.spec import AttentionSpec, Spec, load_spec
from assembly.spec.validate import check_spec
from assembly.testing import check_round_trip, random_batch

REGISTRY = make_registry(entrypoints=False, strict=True)
SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
SPEC_FILES = sorted(p for p in SPECS_DIR.iterdir() if p.suffix in (".toml", ".json"))
IDS = [p.name for p in SPEC_FILES]
LARGE = 5_000_000
"""Specs planned above this many parameters are built on the meta device only."""

PUBLISHED = {
    "sutskever2014.toml": 384_000_000,  # the paper's "384M parameters"
    "bahdanau2015.toml": 81_452_000,  # the count its header comment derives and explains
}


def test_the_examples_are_there() -> None:
    names = {p.name for p in SPEC_FILES}
    assert {"reference.toml", "simple.toml", "deep.toml", "broadcast.toml", "peek.toml",
            "attention-bidirectional.toml", "continuous.toml", "continuous-stop.json",
            "sutskever2014.toml", "bahdanau2015.toml"} <= names


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_loads_checks_plans_and_round_trips(path: Path) -> None:
    spec = load_spec(path, REGISTRY)
    assert spec.name == path.stem
    assert check_spec(spec, REGISTRY) == []
    plan = plan_model(spec, REGISTRY)
    assert plan.total > 0
    assert f"total parameters: {plan.total:,}" in plan.table()
    check_round_trip(spec, REGISTRY, path.name)


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_builds_and_matches_its_plan(path: Path) -> None:
    spec = load_spec(path, REGISTRY)
    plan = plan_model(spec, REGISTRY)
    large = plan.total > LARGE
    if large:
        with torch.device("meta"):
            model = build_model(plan, REGISTRY)
        assert all(p.device.type == "meta" for p in model.parameters())
    else:
        model = build_model(plan, REGISTRY, seed=0)
    assert count_parameters(model) == plan.total
    for planned, built in zip(plan.rows, module_table(model, plan).rows, strict=True):
        assert built.parameters == planned.parameters, planned.path
    if path.name in PUBLISHED:
        assert plan.total == PUBLISHED[path.name]
    if large:
        return
    batch = random_batch(plan, seed=0)
    model.train()
    out = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    assert out.predictions.shape == (*batch.target.shape[:2], plan.classes)
    total, count = model.loss(out, batch.target)
    assert torch.isfinite(total) and int(count) == int(batch.target_lengths.sum())
    total.backward()


def test_sutskever_2014_is_exactly_384_million() -> None:
    spec = load_spec(SPECS_DIR / "sutskever2014.toml", REGISTRY)
    plan = plan_model(spec, REGISTRY)
    assert plan.total == 384_000_000
    rows = {row.path: row.parameters for row in plan.rows}
    assert rows["source_embedding"] == 160_000_000
    assert rows["target_embedding"] == 80_000_000
    assert rows["output"] == 80_000_000
    recurrent = sum(v for k, v in rows.items() if k.startswith(("encoder.", "decoder.")))
    assert recurrent == 64_000_000  # the paper's "64M pure recurrent connections"
    assert spec.decoder.attention is None and spec.bridge.type == "copy"
    assert spec.encoder_depth == spec.decoder_depth == 4


def test_bahdanau_2015_is_rnnsearch() -> None:
    spec = load_spec(SPECS_DIR / "bahdanau2015.toml", REGISTRY)
    assert spec.encoder.bidirectional and spec.encoder.merge == "concat"
    assert spec.encoder.hidden == spec.decoder.hidden == 1000
    assert spec.source.embedding == spec.target.embedding == 620
    assert spec.source.vocab_size == spec.target.vocab_size == 30000
    assert spec.decoder.attention == AttentionSpec(score="additive", size=1000,
                                                   position="before")
    assert (spec.output.type, spec.output.size, spec.output.pieces) == ("maxout", 500, 2)
    assert spec.bridge.type == "linear-tanh"
    rows = {row.path: row.parameters for row in plan_model(spec, REGISTRY).rows}
    assert rows["encoder.layers.0"] == 2 * (3 * 1000 * (620 + 1000) + 6 * 1000)
    assert rows["decoder.layers.0"] == 3 * 1000 * (620 + 2000 + 1000) + 6 * 1000


def test_the_reference_spec_is_the_reference_model() -> None:
    spec: Spec = load_spec(SPECS_DIR / "reference.toml", REGISTRY)
    assert spec.token_mode and spec.depth == 1
    assert spec.source.embedding == spec.target.embedding == 32
    assert spec.source.vocab_size == spec.target.vocab_size == 24
    assert spec.encoder.cell.__class__.__name__ == "LstmSpec"
    assert spec.encoder.bidirectional and spec.encoder.merge == "concat"
    assert spec.encoder.hidden == 64 and spec.decoder.hidden == 128
    attention = spec.decoder.attention
    assert attention is not None
    assert (attention.score, attention.input_feeding, attention.dropout) == ("additive", True,
                                                                            0.1)
    assert spec.bridge.type == "linear"
    assert spec.encoder.dropout == spec.decoder.dropout == 0.1
    assert spec.training.optimizer.type == "adam" and spec.training.optimizer.lr == 1e-3
    assert spec.training.clip is None and spec.training.batch_size == 64
    assert spec.training.bucketing is False  # random batches: they learn this task best
    assert spec.training.epochs == 6
    assert spec.data.task == "reverse" and spec.data.symbols == 20


def test_the_deep_spec_has_resizers_only_where_sizes_differ() -> None:
    plan = plan_model(load_spec(SPECS_DIR / "deep.toml", REGISTRY), REGISTRY)
    bridge_rows = [row.path for row in plan.rows if row.path.startswith("bridge")]
    assert bridge_rows == ["bridge.maps.0", "bridge.maps.3"]
    assert len(plan.encoder) == 4 and len(plan.decoder) == 5


def test_the_continuous_specs_differ_in_their_stop() -> None:
    fixed = plan_model(load_spec(SPECS_DIR / "continuous.toml", REGISTRY), REGISTRY)
    learned = plan_model(load_spec(SPECS_DIR / "continuous-stop.json", REGISTRY), REGISTRY)
    assert fixed.spec.continuous.output_length == 10
    assert "stop" not in [row.path for row in fixed.rows]
    assert learned.spec.continuous.output_length is None
    assert [row.path for row in learned.rows][-1] == "stop"


CONTINUOUS = sorted(p for p in SPEC_FILES if load_spec(p, REGISTRY).mode == "continuous")


def test_every_continuous_spec_uses_a_built_in_task() -> None:
    assert [p.name for p in CONTINUOUS] == ["continuous-stop.json", "continuous.toml"]
    for path in CONTINUOUS:
        data = load_spec(path, REGISTRY).data
        assert data.task is not None and not data.train  # nothing to download or generate


@pytest.mark.parametrize("path", CONTINUOUS, ids=[p.name for p in CONTINUOUS])
def test_each_continuous_spec_trains_as_shipped(path: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A couple of updates on fewer examples (the shipped spec otherwise), then the run
    evaluates and decodes from the command line."""
    import attrs
    from helpers_train import cli, trainer

    spec = load_spec(path, REGISTRY)
    spec = attrs.evolve(
        spec, training=attrs.evolve(spec.training, max_updates=2, epochs=1),
        data=attrs.evolve(spec.data, train_size=2 * spec.training.batch_size, dev_size=8,
                          test_size=8))
    run = tmp_path / "run"
    result = trainer(spec, run, spec_dir=SPECS_DIR).fit()
    assert result.updates == 2
    assert {"mse", "loss"} <= set(result.dev)
    assert all(math.isfinite(value) for value in result.dev.values())
    code, out, err = cli(["evaluate", run, "--format", "json"], capsys)
    assert code == 0, err
    assert "mse" in out
