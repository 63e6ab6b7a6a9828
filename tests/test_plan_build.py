"""The planner's sizes and rows, and the builder's agreement with them, on hand-picked
architectures (the property tests cover random ones)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch

from assembly.build import build_model, count_parameters, module_table
from assembly.builtin.cells import GruSpec, LstmSpec
from assembly.plan import Plan, linear_parameters, plan_model, resizer_parameters
from assembly.registry import make_registry
from assembly.spec import AttentionSpec, BridgeSpec, ContinuousSpec, PeekSpec
from assembly.testing import make_spec, random_batch

REGISTRY = make_registry(entrypoints=False, strict=True)


def _plan(**overrides: Any) -> Plan:
    return plan_model(make_spec(registry=REGISTRY, **overrides), REGISTRY)


def _rows(plan: Plan) -> dict[str, int]:
    return {row.path: row.parameters for row in plan.rows}


def _matches(plan: Plan) -> Any:
    model = build_model(plan, REGISTRY, seed=0)
    assert count_parameters(model) == plan.total
    for planned, built in zip(plan.rows, module_table(model, plan).rows, strict=True):
        assert built.parameters == planned.parameters, planned.path
    return model


def test_planning_imports_no_torch() -> None:
    code = ("import sys\n"
            "from assembly.registry import make_registry\n"
            "from assembly.spec import load_spec\n"
            "from assembly.plan import plan_model\n"
            "r = make_registry(entrypoints=False)\n"
            "plan_model(load_spec('specs/reference.toml', r), r).table()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    from pathlib import Path

    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=Path(__file__).resolve().parent.parent)


def test_every_row_is_a_real_submodule() -> None:
    plan = _plan(depth=(2, 3), encoder__bidirectional=True, encoder__hidden=(6, 8),
                 decoder__hidden=(8, 5, 5), decoder__inner_sync=True,
                 decoder__peek=PeekSpec(mode="projected-add"),
                 decoder__attention=AttentionSpec(query="all"), output__type="maxout")
    model = _matches(plan)
    for row in plan.rows:
        model.get_submodule(row.path)  # raises when a row names nothing


def test_the_simplest_model_by_hand() -> None:
    plan = _plan()
    # vocabularies 12, embeddings 8, one LSTM layer of 8 each side, copy bridge
    lstm = 4 * 8 * (8 + 8) + 8 * 8
    assert _rows(plan) == {"source_embedding": 96, "encoder.layers.0": lstm, "bridge": 0,
                           "target_embedding": 96, "decoder.layers.0": lstm,
                           "output": 8 * 12 + 12}
    assert plan.total == 96 + lstm + 96 + lstm + 108
    assert plan.table().splitlines()[-1] == f"total parameters: {plan.total:,}"
    assert plan.to_dict()["total_parameters"] == plan.total
    _matches(plan)


def test_per_layer_sizes_and_a_single_size_list() -> None:
    plan = _plan(depth=(3, 2), encoder__hidden=(5,), decoder__hidden=(4, 6))
    assert [layer.hidden for layer in plan.encoder] == [5, 5, 5]
    assert [layer.hidden for layer in plan.decoder] == [4, 6]
    assert [layer.input_size for layer in plan.decoder] == [8, 4]
    _matches(plan)


@pytest.mark.parametrize(("merge", "factor"), [("concat", 2), ("sum", 1)])
def test_bidirectional_sizes(merge: str, factor: int) -> None:
    plan = _plan(depth=2, encoder__bidirectional=True, encoder__merge=merge,
                 encoder__hidden=(6, 7))
    assert [layer.output_size for layer in plan.encoder] == [6 * factor, 7 * factor]
    assert plan.encoder[1].input_size == 6 * factor
    assert plan.encoder[0].state_sizes == (6 * factor, 6 * factor)
    assert plan.encoder_output == 7 * factor
    rows = _rows(plan)
    assert rows["encoder.layers.0"] == 2 * (4 * 6 * (8 + 6) + 8 * 6)
    _matches(plan)


def test_copy_bridge_resizes_only_where_sizes_differ() -> None:
    same = _plan(depth=2, encoder__hidden=8, decoder__hidden=8)
    assert [row.path for row in same.rows if row.path.startswith("bridge")] == ["bridge"]
    differ = _plan(depth=(2, 3), encoder__hidden=(8, 6), decoder__hidden=(8, 9, 9))
    rows = _rows(differ)
    assert "bridge.maps.0" not in rows  # 8 → 8 copies as is
    assert rows["bridge.maps.1"] == 2 * linear_parameters(6, 9)  # h and c
    assert "bridge.maps.2" not in rows  # beyond the encoder's depth: zeros
    model = _matches(differ)
    assert isinstance(model.bridge.maps[0][0], torch.nn.Identity)


@pytest.mark.parametrize("kind", ["linear", "linear-tanh"])
def test_linear_bridges_read_the_top_encoder_layer_beyond_its_depth(kind: str) -> None:
    plan = _plan(depth=(2, 3), bridge=BridgeSpec(type=kind), encoder__hidden=(5, 6))
    notes = {row.path: row.note for row in plan.rows if row.path.startswith("bridge")}
    assert notes == {"bridge.maps.0": "from encoder layer 0",
                     "bridge.maps.1": "from encoder layer 1",
                     "bridge.maps.2": "from encoder layer 1"}
    assert _rows(plan)["bridge.maps.2"] == 2 * linear_parameters(6, 8)
    _matches(plan)


def test_zero_bridge_and_no_broadcast_build_no_maps() -> None:
    for plan in (_plan(bridge=BridgeSpec(type="zero")), _plan(decoder__broadcast_state=False)):
        assert _rows(plan)["bridge"] == 0
        model = _matches(plan)
        batch = random_batch(plan, batch=2)
        with torch.no_grad():
            memory, encoded = model.encode(batch.source, batch.source_lengths)
            state = model.start(memory, encoded)
        assert all(bool((t == 0).all()) for layer in state.layers for t in layer)


def test_lstm_to_gru_bridge_maps_the_hidden_state_only() -> None:
    plan = _plan(encoder__cell=LstmSpec(), decoder__cell=GruSpec(),
                 bridge=BridgeSpec(type="linear"))
    assert _rows(plan)["bridge.maps.0"] == linear_parameters(8, 8)
    _matches(plan)


def test_inner_sync_resizers() -> None:
    plan = _plan(depth=3, decoder__hidden=(8, 6, 6), decoder__inner_sync=True)
    rows = _rows(plan)
    assert rows["decoder.sync_maps.0"] == 2 * linear_parameters(8, 6)
    assert "decoder.sync_maps.1" not in rows
    _matches(plan)


@pytest.mark.parametrize(("mode", "expected"), [
    ("concat", None), ("add", 0), ("projected-add", linear_parameters(8, 8))])
def test_peek_modes(mode: str, expected: int | None) -> None:
    plan = _plan(decoder__peek=PeekSpec(mode=mode))
    rows = _rows(plan)
    assert plan.decoder_input == (16 if mode == "concat" else 8)
    assert rows.get("decoder.peek_map") == (expected or None)
    resized = _plan(decoder__peek=PeekSpec(mode="add"), encoder__hidden=5)
    assert _rows(resized)["decoder.peek_map"] == linear_parameters(5, 8)
    _matches(plan)
    _matches(resized)


@pytest.mark.parametrize(("score", "expected"), [
    ("additive", 8 * 4 + 6 * 4 + 4 + 4), ("concat", 8 * 4 + 6 * 4 + 4),
    ("dot", resizer_parameters(8, 6, bias=False)), ("general", 6 * 8)])
def test_attention_scores(score: str, expected: int) -> None:
    plan = _plan(encoder__hidden=6, decoder__attention=AttentionSpec(score=score, size=4))
    rows = _rows(plan)
    assert rows["decoder.attention"] == expected
    assert rows["decoder.attentional"] == linear_parameters(6 + 8, 8)
    assert plan.features == 8
    _matches(plan)


def test_attention_before_and_query_all() -> None:
    plan = _plan(depth=2, decoder__hidden=(5, 7),
                 decoder__attention=AttentionSpec(position="before", query="all"))
    assert plan.query_size == 5 + 7
    assert plan.decoder_input == 8 + 8  # fed embedding + context
    assert plan.features == 7 + 8  # top output + context
    assert "decoder.attentional" not in _rows(plan)
    _matches(plan)


def test_input_feeding_widens_the_first_layer() -> None:
    plan = _plan(decoder__hidden=6, decoder__attention=AttentionSpec(input_feeding=True))
    assert plan.decoder_input == 8 + 6
    _matches(plan)


def test_maxout_and_tied_outputs() -> None:
    maxout = _plan(output__type="maxout", output__size=5, output__pieces=3)
    assert _rows(maxout)["output"] == linear_parameters(8 + 8, 15) + linear_parameters(5, 12)
    tied = _plan(output__tied=True, decoder__hidden=6)
    assert _rows(tied)["output"] == 6 * 8 + 12  # resizer 6 → 8 (no bias) + output bias
    model = _matches(tied)
    assert model.output._embedding[0] is model.target_embedding
    no_feed = _plan(output__tied=True, decoder__feed_previous=False,
                    decoder__peek=PeekSpec())
    assert "target_embedding" in _rows(no_feed)
    _matches(no_feed)


def test_continuous_mode_rows() -> None:
    fixed = _plan(mode="continuous", continuous=ContinuousSpec(input_dim=3, output_dim=2,
                                                               output_length=5))
    rows = _rows(fixed)
    assert "source_embedding" not in rows and "target_embedding" not in rows
    assert fixed.encoder[0].input_size == 3 and fixed.fed_size == 2
    assert rows["output"] == linear_parameters(8, 2)
    stop = _plan(mode="continuous", continuous=ContinuousSpec(input_dim=3, output_dim=2))
    assert _rows(stop)["stop"] == linear_parameters(8, 1)
    _matches(fixed)
    _matches(stop)


def test_the_seed_makes_the_initialisation_reproducible() -> None:
    plan = _plan(encoder__bidirectional=True, decoder__attention=AttentionSpec())
    first, again = build_model(plan, REGISTRY, seed=7), build_model(plan, REGISTRY, seed=7)
    other = build_model(plan, REGISTRY, seed=8)
    for (name, a), b, c in zip(first.named_parameters(), again.parameters(),
                               other.parameters(), strict=True):
        assert torch.equal(a, b), name
        if a.numel() > 1 and "bias" not in name:
            assert not torch.equal(a, c), name
    assert build_model(plan.spec, REGISTRY, seed=7).plan == plan


def test_a_large_model_builds_on_the_meta_device() -> None:
    plan = _plan(depth=2, source__vocab_size=50_000, target__vocab_size=50_000,
                 source__embedding=512, target__embedding=512, encoder__hidden=1024,
                 decoder__hidden=1024)
    with torch.device("meta"):
        model = build_model(plan, REGISTRY)
    assert count_parameters(model) == plan.total > 100_000_000
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_inner_sync_builds_no_dead_bridge_maps() -> None:
    plan = _plan(depth=3, decoder__inner_sync=True, decoder__hidden=(8, 6, 6))
    model = build_model(plan, REGISTRY, seed=0)
    batch = random_batch(plan, batch=3)
    out = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    model.loss(out, batch.target)[0].backward()
    dead = [name for name, p in model.named_parameters()
            if p.grad is None or not bool((p.grad != 0).any())]
    assert dead == []
