"""The plugin author's test kit: it passes good components and names what is wrong with
bad ones (each broken cell below breaks one contract)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import torch
from hypothesis import given
from torch import Tensor, nn

from assembly.builtin.cells import BuiltinCells, GruSpec, LstmSpec
from assembly.builtin.placements import BuiltinPlacements
from assembly.builtin.samplers import BuiltinSamplers
from assembly.data.vocab import PAD_ID
from assembly.errors import SpecError
from assembly.plugin import (
    CellPlugin,
    CellSpec,
    RegularizerPlugin,
    RegularizerSpec,
    SamplerPlugin,
    SamplerSpec,
    hookimpl,
)
from assembly.registry import make_registry
from assembly.spec import AttentionSpec, ContinuousSpec, Spec
from assembly.spec.validate import check_spec
from assembly.testing import (
    check_cell_plugin,
    check_placement_plugin,
    check_plugin,
    check_regularizer_plugin,
    check_sampler_plugin,
    make_spec,
    random_batch,
    registry_with,
    spec_strategy,
)

REGISTRY = make_registry(entrypoints=False, strict=True)
BUILTIN_CELLS = {record.name: record for record in BuiltinCells().assembly_cells()}


# -- a configurable Elman cell: each flag breaks one contract ---------------------------
@attrs.frozen(kw_only=True)
class ElmanSpec(CellSpec):
    """h' = tanh(W x + b + U h)."""

    flaw: str = "none"


def build_elman(spec: ElmanSpec, input_size: int, hidden: int) -> Any:
    from assembly.plugin import CellLayer

    class Elman(CellLayer):
        def __init__(self) -> None:
            super().__init__()
            self.input_size, self.hidden_size, self.output_size = input_size, hidden, hidden
            self.state_sizes = (hidden,)
            self.input_map = nn.Linear(input_size, hidden, bias=spec.bias)
            self.recurrent = nn.Linear(hidden, hidden, bias=False)
            if spec.flaw == "unused-parameter":
                self.spare = nn.Parameter(torch.zeros(hidden))

        def project_input(self, x: Tensor) -> Tensor:
            return self.input_map(x)

        def cell(self, projected: Tensor, state: tuple[Tensor, ...]
                 ) -> tuple[Tensor, tuple[Tensor, ...]]:
            h = torch.tanh(projected + self.recurrent(state[0]))
            return h, (h,)

        def step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
            out, new = super().step(x, state)
            if spec.flaw == "step-differs":
                return out + 0.1, new
            return out, new

        def forward(self, x: Tensor, lengths: Tensor, state: Any = None) -> Any:
            if spec.flaw == "ignores-padding":  # runs over the padding too
                lengths = torch.full_like(lengths, x.shape[1])
            return super().forward(x, lengths, state)

    if spec.flaw == "not-a-layer":
        return nn.Linear(input_size, hidden)
    return Elman()


def elman_parameters(spec: ElmanSpec, input_size: int, hidden: int) -> int:
    count = hidden * input_size + hidden * hidden + (hidden if spec.bias else 0)
    if spec.flaw == "unused-parameter":
        count += hidden
    if spec.flaw == "wrong-formula":
        count += 1
    return count


def elman(**changes: Any) -> CellPlugin:
    return attrs.evolve(CellPlugin(name="elman", spec=ElmanSpec, build=build_elman,
                                   parameters=elman_parameters), **changes)


# -- cells ------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [LstmSpec(), LstmSpec(bias=False, init="orthogonal"),
                                  LstmSpec(init="uniform", init_scale=0.5, gate_bias=0.5)],
                         ids=["default", "no-bias-orthogonal", "uniform-gate-bias"])
def test_the_builtin_lstm_passes(spec: LstmSpec) -> None:
    check_cell_plugin(BUILTIN_CELLS["lstm"], spec=spec)


@pytest.mark.parametrize("spec", [GruSpec(), GruSpec(update="cho", gate_bias=1.0),
                                  GruSpec(bias=False, init="identity")],
                         ids=["default", "cho", "no-bias-identity"])
def test_the_builtin_gru_passes(spec: GruSpec) -> None:
    check_cell_plugin(BUILTIN_CELLS["gru"], spec=spec)


def test_a_good_plugin_cell_passes() -> None:
    check_cell_plugin(elman(), input_sizes=(2, 5), hidden_sizes=(3, 6))
    check_cell_plugin(elman(), spec=ElmanSpec(bias=False))


@pytest.mark.parametrize(("flaw", "message"), [
    ("wrong-formula", "the parameters formula says"),
    ("unused-parameter", "parameter 'spare'"),
    ("step-differs", "step and forward disagree"),
    ("ignores-padding", "not zero at padded steps"),
    ("not-a-layer", "not a RecurrentLayer"),
])
def test_a_broken_cell_is_named(flaw: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message) as caught:
        check_cell_plugin(elman(), spec=ElmanSpec(flaw=flaw))
    assert "cell 'elman'" in str(caught.value)


def test_wrong_declared_sizes_are_named() -> None:
    with pytest.raises(AssertionError, match=r"layer\.output_size is 4, the record says 5"):
        check_cell_plugin(elman(output_size=lambda spec, hidden: hidden + 1))
    with pytest.raises(AssertionError, match=r"layer\.state_sizes is \(4,\), the record says"):
        check_cell_plugin(elman(state_sizes=lambda spec, hidden: (hidden, hidden)))


def test_a_record_clashing_with_a_builtin_is_rejected() -> None:
    with pytest.raises(AssertionError, match=r"the registry rejects it.*duplicate cell 'lstm'"):
        check_cell_plugin(elman(name="lstm"))


def test_not_a_record() -> None:
    with pytest.raises(AssertionError, match="expected a CellPlugin, got str"):
        check_cell_plugin("lstm")  # type: ignore[arg-type]


def test_a_spec_that_needs_arguments_asks_for_one() -> None:
    @attrs.frozen(kw_only=True)
    class NeedySpec(ElmanSpec):
        rank: int

    record = CellPlugin(name="needy", spec=NeedySpec, build=build_elman,
                        parameters=elman_parameters)
    with pytest.raises(AssertionError, match=r"NeedySpec\(\) fails without arguments "
                                             r"\(TypeError: .*\); pass spec=\.\.\. to the check"):
        check_cell_plugin(record)
    check_cell_plugin(record, spec=NeedySpec(rank=2), input_sizes=(3,), hidden_sizes=(4,))


def test_a_spec_that_does_not_round_trip_is_named() -> None:
    @attrs.frozen(kw_only=True)
    class LossySpec(CellSpec):
        """None here does not mean the default: it cannot be written to TOML."""

        scale: float | None = 1.0

    record = CellPlugin(name="lossy", spec=LossySpec, build=build_elman,
                        parameters=elman_parameters)
    with pytest.raises(AssertionError, match="cannot be written as TOML"):
        check_cell_plugin(record, spec=LossySpec(scale=None))


# -- other kinds ------------------------------------------------------------------------
def test_the_builtin_sampler_and_placement_pass() -> None:
    for sampler in BuiltinSamplers().assembly_samplers():
        check_sampler_plugin(sampler)
    for placement in BuiltinPlacements().assembly_placements():
        check_placement_plugin(placement)


@attrs.frozen(kw_only=True)
class ToyRegularizerSpec(RegularizerSpec):
    """A regulariser spec with a parameter."""

    factor: float = 0.5
    targets: tuple[str, ...] = ("encoder",)


@attrs.frozen(kw_only=True)
class ToySamplerSpec(SamplerSpec):
    """A sampler spec with a parameter."""

    width: int = 3


def test_plugin_regularizer_and_sampler_records_pass() -> None:
    check_regularizer_plugin(RegularizerPlugin(name="toy", spec=ToyRegularizerSpec,
                                               build=print))
    check_regularizer_plugin(RegularizerPlugin(name="toy", spec=ToyRegularizerSpec,
                                               build=print),
                             spec=ToyRegularizerSpec(factor=2.0, targets=("decoder", "logits")))
    check_sampler_plugin(SamplerPlugin(name="toy-beam", spec=ToySamplerSpec, build=print),
                         spec=ToySamplerSpec(width=5, max_length=9))


def test_the_wrong_record_kind_is_named() -> None:
    sampler = SamplerPlugin(name="toy-beam", spec=ToySamplerSpec, build=print)
    with pytest.raises(AssertionError, match="expected a RegularizerPlugin, got SamplerPlugin"):
        check_regularizer_plugin(sampler)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="expected a PlacementPlugin, got SamplerPlugin"):
        check_placement_plugin(sampler)  # type: ignore[arg-type]


def test_a_builtin_record_is_not_registered_twice() -> None:
    registry = registry_with(BUILTIN_CELLS["gru"])
    assert registry.source_of("cell", "gru") == "builtin-cells"
    injected = registry_with(elman())
    assert injected.names("cell") == ["elman", "gru", "lstm"]


def test_a_whole_plugin_object() -> None:
    check_plugin(BuiltinSamplers)
    check_plugin(BuiltinPlacements())

    class ElmanPlugin:
        @hookimpl
        def assembly_cells(self) -> list[CellPlugin]:
            return [elman()]

        @hookimpl
        def assembly_samplers(self) -> list[SamplerPlugin]:
            return [SamplerPlugin(name="toy-beam", spec=ToySamplerSpec, build=print)]

    check_plugin(ElmanPlugin(), specs={ElmanSpec: ElmanSpec(bias=False)})
    with pytest.raises(AssertionError, match="the parameters formula says"):
        check_plugin(ElmanPlugin(), specs={ElmanSpec: ElmanSpec(flaw="wrong-formula")})

    class Empty:
        @hookimpl
        def assembly_cells(self) -> list[CellPlugin]:
            return []

    with pytest.raises(AssertionError, match="plugin Empty: its hooks return no component"):
        check_plugin(Empty())

    class Clashing:
        @hookimpl
        def assembly_cells(self) -> list[CellPlugin]:
            return [elman(name="gru")]

    with pytest.raises(AssertionError, match="plugin Clashing: the registry rejects it"):
        check_plugin(Clashing())


# -- helpers ----------------------------------------------------------------------------
def test_make_spec_is_small_and_valid() -> None:
    spec = make_spec()
    assert spec.token_mode and spec.depth == 1
    assert spec.source.vocab_size == spec.target.vocab_size == 12
    assert check_spec(spec, REGISTRY) == []


def test_make_spec_overrides_nested_fields() -> None:
    spec = make_spec(registry=REGISTRY, depth=(2, 3), encoder__bidirectional=True,
                     decoder__attention=AttentionSpec(), decoder__attention__score="dot",
                     decoder__cell=GruSpec(), decoder__cell__update="cho", name="x")
    assert spec.depth == (2, 3) and spec.encoder.bidirectional and spec.name == "x"
    assert spec.decoder.attention == AttentionSpec(score="dot")
    assert spec.decoder.cell == GruSpec(update="cho")


def test_make_spec_says_what_is_wrong() -> None:
    with pytest.raises(TypeError, match=r"EncoderSpec has no field 'hiden'.*fields: cell"):
        make_spec(encoder__hiden=3)
    with pytest.raises(TypeError, match="give the section itself first"):
        make_spec(decoder__attention__score="dot")
    with pytest.raises(SpecError, match="continuous mode needs a"):
        make_spec(mode="continuous")
    with pytest.raises(ValueError, match="merge must be one of concat, sum"):
        make_spec(encoder__merge="max")


def test_random_batch_tokens() -> None:
    spec = make_spec(registry=REGISTRY)
    batch = random_batch(spec, batch=5, source_steps=6, target_steps=4, seed=1,
                         registry=REGISTRY)
    assert batch.source.shape == (5, 6) and batch.target.shape == (5, 4)
    assert int(batch.source_lengths[0]) == 6 and int(batch.target_lengths[0]) == 4
    assert bool((batch.source_lengths >= 2).all())
    for values, lengths in ((batch.source, batch.source_lengths),
                            (batch.target, batch.target_lengths)):
        valid = torch.arange(values.shape[1])[None, :] < lengths[:, None]
        assert bool((values[~valid] == PAD_ID).all())
        assert bool((values[valid] >= 4).all())  # no specials inside a sequence
    again = random_batch(spec, batch=5, source_steps=6, target_steps=4, seed=1,
                         registry=REGISTRY)
    assert torch.equal(again.source, batch.source)
    row = batch.row(2)
    assert row.source.shape == (1, int(batch.source_lengths[2]))


def test_random_batch_continuous_and_given_lengths() -> None:
    spec = make_spec(registry=REGISTRY, mode="continuous",
                     continuous=ContinuousSpec(input_dim=3, output_dim=2))
    batch = random_batch(spec, source_lengths=[2, 5], target_lengths=[4, 1], registry=REGISTRY)
    assert batch.source.shape == (2, 5, 3) and batch.target.shape == (2, 4, 2)
    assert bool((batch.source[0, 2:] == 0).all()) and bool((batch.target[1, 1:] == 0).all())


@given(spec_strategy(REGISTRY))
def test_spec_strategy_draws_valid_specs(spec: Spec) -> None:
    assert check_spec(spec, REGISTRY) == []
    assert 1 <= spec.encoder_depth <= 6 and 1 <= spec.decoder_depth <= 6
