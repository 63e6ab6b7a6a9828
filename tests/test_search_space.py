"""Search spaces: choices, ranges, conditional parts; every generated spec is valid; space
files report every problem at its place; deduplication, size filtering, no torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assembly.errors import SpecError
from assembly.plan import plan_model
from assembly.search import (
    Choice,
    FloatRange,
    IntRange,
    Space,
    When,
    load_space,
    space_from_dict,
)
from assembly.search.space import PlanCache
from assembly.spec import Spec, dumps_spec, loads_spec, spec_hash
from assembly.spec.validate import check_spec

WIDE = """
[[choice]]
path = "depth"
values = [1, 2, [2, 1], [1, 3]]

[[choice]]
path = "encoder.cell"
values = ["lstm", "gru", {type = "gru", update = "cho", bias = false}]

[[choice]]
path = "encoder.bidirectional"
values = [false, true]

[[range]]
path = "encoder.hidden"
low = 4
high = 64
log = true

[[range]]
path = "decoder.hidden"
low = 4
high = 32
step = 4

[[range]]
path = "encoder.dropout"
low = 0.0
high = 0.5

[[range]]
path = "training.optimizer.lr"
low = 1e-4
high = 1e-1
log = true

[[choice]]
path = "bridge.type"
values = ["zero", "copy", "linear", "linear-tanh"]

[[choice]]
path = "decoder.attention"
values = [false, true, {score = "dot"}]

[[choice]]
path = "output"
values = [{type = "linear"}, {type = "maxout", pieces = 3}, {tied = true}]

[[when]]
path = "decoder.attention"
equals = true
  [[when.choice]]
  path = "decoder.attention.score"
  values = ["additive", "dot", "general", "concat"]

  [[when.choice]]
  path = "decoder.attention.position"
  values = ["after", "before"]

  [[when.when]]
  path = "decoder.attention.position"
  equals = "after"
    [[when.when.choice]]
    path = "decoder.attention.input_feeding"
    values = [false, true]

[[when]]
path = "encoder.cell"
equals = "lstm"
  [[when.range]]
  path = "encoder.cell.forget_bias"
  low = 0.0
  high = 2.0

[[when]]
path = "encoder.bidirectional"
equals = true
  [[when.choice]]
  path = "encoder.merge"
  values = ["concat", "sum"]
"""
"""A space touching every kind of parameter; every combination is a valid spec."""


def _space(registry: Any, text: str = WIDE, base: Spec | None = None) -> Space:
    return space_from_dict(tomllib.loads(text), base or Spec(), registry)


class HypothesisDrawer:
    """Draws a space's values with hypothesis, so that failures shrink."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, key: str, labels: Sequence[Any]) -> Any:
        return self.data.draw(st.sampled_from(list(labels)), label=key)

    def integer(self, key: str, low: int, high: int, step: int, log: bool) -> int:
        return low + step * self.data.draw(st.integers(0, (high - low) // step), label=key)

    def real(self, key: str, low: float, high: float, step: float | None, log: bool) -> float:
        return self.data.draw(st.floats(low, high), label=key)


@given(data=st.data())
def test_generated_specs_are_always_valid(registry: Any, data: st.DataObject) -> None:
    space = _space(registry)
    assignment = space.draw(HypothesisDrawer(data))
    spec = space.build(assignment)
    assert check_spec(spec, registry) == []
    leaves = {p: v for p, v in assignment.items()
              if not any(other.startswith(p + ".") for other in assignment)}
    for path, value in leaves.items():
        found: Any = spec
        for name in path.split("."):
            found = getattr(found, name)
        assert found == value, path
    again = loads_spec(dumps_spec(spec, registry=registry), registry=registry)
    assert again == spec and spec_hash(again, registry) == spec_hash(spec, registry)
    assert plan_model(spec, registry).total > 0


def test_conditional_parts_appear_only_when_their_condition_holds(registry: Any) -> None:
    space = _space(registry)
    seen_off = seen_on = False
    for seed in range(60):
        assignment = space.sample(seed)
        attention = space.current("decoder.attention", assignment)
        if attention is None:
            seen_off = True
            assert not any(p.startswith("decoder.attention.") for p in assignment)
        elif "decoder.attention.score" in assignment:
            seen_on = True
            feeding = "decoder.attention.input_feeding" in assignment
            assert feeding == (assignment["decoder.attention.position"] == "after")
        cell = space.current("encoder.cell", assignment)
        assert ("encoder.cell.forget_bias" in assignment) == (type(cell).__name__ == "LstmSpec")
    assert seen_off and seen_on


def test_python_api(registry: Any) -> None:
    space = Space(Spec(), [
        Choice(path="encoder.hidden", values=(64, 128)),
        IntRange(path="decoder.hidden", low=16, high=256, log=True),
        FloatRange(path="training.optimizer.lr", low=1e-4, high=1e-2, log=True),
        Choice(path="decoder.attention", values=(False, True)),
        When(path="decoder.attention", values=(True,), params=(
            Choice(path="decoder.attention.score", values=("dot", "general")),)),
    ], registry)
    spec = space.build({"encoder.hidden": 64, "decoder.hidden": 20,
                        "training.optimizer.lr": 0.003,
                        "decoder.attention": space.nodes[3].values[1],
                        "decoder.attention.score": "dot"})
    assert (spec.encoder.hidden, spec.decoder.hidden) == (64, 20)
    assert spec.training.optimizer.lr == 0.003 and spec.decoder.attention.score == "dot"
    for seed in range(30):
        assignment = space.sample(seed)
        assert 16 <= assignment["decoder.hidden"] <= 256
        assert 1e-4 <= assignment["training.optimizer.lr"] <= 1e-2
        assert isinstance(assignment["decoder.hidden"], int)


def test_setting_a_part_that_is_off_names_the_path(registry: Any) -> None:
    space = Space(Spec(), [Choice(path="decoder.attention.score", values=("dot",))], registry)
    with pytest.raises(SpecError) as caught:
        space.build(space.sample(0))
    assert "decoder.attention is off" in str(caught.value)
    assert "[[when]]" in str(caught.value)


def test_cross_field_problems_are_reported(registry: Any) -> None:
    space = Space(Spec(), [Choice(path="decoder.attention", values=(
        {"position": "before", "input_feeding": True},))], registry)
    with pytest.raises(SpecError) as caught:
        space.build(space.sample(0))
    assert "$.decoder.attention.input_feeding" in caught.value.render()


BAD = """
[[choice]]
path = "encoder.hiden"
values = [64]

[[choice]]
path = "encoder.cell"
values = ["lstm", "no-such-cell"]

[[choice]]
path = "decoder.dropout"
values = [0.1, 1.5, "x"]

[[range]]
path = "training.optimizer.lr"
low = 0.0
high = 0.1
log = true

[[range]]
path = "encoder.dropout"
low = 0.0
high = 0.5
log = true

[[range]]
path = "encoder.hidden"
low = 1.5
high = 8

[[range]]
path = "decoder.hidden"
low = 64
high = 16

[[when]]
path = "decoder.attention"
  [[when.choice]]
  path = "decoder.attention.scor"
  values = ["dot"]

[[when]]
path = "decoder.attention"
equals = true
  [[when.choice]]
  path = "decoder.attention.score"
  values = ["dot", "nope"]
  [[when.choice]]
  path = "decoder.attention.size"
  values = [0]

[[choise]]
path = "depth"
"""


def test_space_file_problems_are_all_reported_at_their_place(registry: Any,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    with pytest.raises(SpecError) as caught:
        load_space(path, Spec(), registry)
    lines = caught.value.render().splitlines()
    expected = [
        ("unknown key 'choise'", "@ $.choise"),
        ("encoder has no field 'hiden'", "@ $.choice[0].path"),
        ("did you mean 'hidden'", "@ $.choice[0].path"),
        ("unknown cell 'no-such-cell'", "@ $.choice[1].values[1]"),
        ("dropout must lie in [0, 1)", "@ $.choice[2].values[1]"),
        ("expected a number", "@ $.choice[2].values[2]"),
        ("lr must be positive", "@ $.range[0].low"),
        ("a log range needs low > 0", "@ $.range[1].low"),
        ("low must be an integer", "@ $.range[2].low"),
        ("low (64) must be below high (16)", "@ $.range[3].low"),
        ("exactly one of 'equals'", "@ $.when[0]"),
        ("score must be one of", "@ $.when[1].choice[0].values[1]"),
        ("size must be positive", "@ $.when[1].choice[1].values[0]"),
    ]
    for message, place in expected:
        assert any(message in line and line.endswith(place) and line.startswith(str(path))
                   for line in lines), (message, place, lines)


def test_specs_are_distinct_and_filtered_by_planned_size(registry: Any) -> None:
    space = _space(registry)
    found = list(space.specs(200, seed=3, max_parameters=20_000, min_parameters=2_000))
    assert len(found) == 200
    specs = [spec for spec, _ in found]
    assert len(set(specs)) == len(specs)
    assert len({spec_hash(spec, registry) for spec in specs}) == len(specs)
    for spec, plan in found:
        assert 2_000 <= plan.total <= 20_000
        assert plan.total == plan_model(spec, registry).total and plan.spec is spec


def test_equal_specs_are_generated_once(registry: Any) -> None:
    space = Space(Spec(), [Choice(path="encoder.hidden", values=(8, 16)),
                           Choice(path="training.seed", values=(1,))], registry)
    assert sorted(s.encoder.hidden for s, _ in space.specs(5, seed=0, tries=100)) == [8, 16]


def test_plan_cache_shares_plans_across_training_settings(registry: Any) -> None:
    space = Space(Spec(), [FloatRange(path="training.optimizer.lr", low=1e-4, high=1e-2),
                           Choice(path="encoder.hidden", values=(8, 16))], registry)
    cache = PlanCache(registry)
    for seed in range(20):
        spec = space.build(space.sample(seed))
        plan = cache(spec)
        assert plan.spec is spec and plan.rows == plan_model(spec, registry).rows
    assert cache.misses == 2 and cache.hits == 18


def test_spaces_and_planning_import_no_torch(tmp_path: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text(WIDE)
    code = textwrap.dedent(f"""
        import sys
        from assembly.registry import make_registry
        from assembly.search import load_space
        from assembly.spec import Spec
        registry = make_registry(entrypoints=False)
        space = load_space({str(space)!r}, Spec(), registry)
        assert len(list(space.specs(100, seed=1, max_parameters=10**6))) == 100
        assert "torch" not in sys.modules, "torch was imported"
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
