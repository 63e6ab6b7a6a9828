"""Properties every cell must have: exact parameter formulas, ``bias = false``, padding
invariance, step/forward agreement, the ``init`` and ``gate_bias`` options, spec checks."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import torch
from cells_support import CELLS, RECORD, build, make_spec, randomise

from assembly_cells import IrnnSpec, Jzs1Spec, UrnnSpec

SIZES = [(3, 5), (5, 5), (8, 4), (1, 6)]

OPTIONS: dict[str, list[dict[str, Any]]] = {
    cell: [{}, {"bias": False}, {"init": "uniform"}, {"init": "orthogonal"}]
    + ([{"init": "identity"}] if cell != "urnn" else [])
    for cell in CELLS
}
OPTIONS["layernorm-gru"].append({"update": "cho"})


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("cell", CELLS)
def test_parameter_formula_is_exact(cell: str) -> None:
    record = RECORD[cell]
    for options in OPTIONS[cell]:
        spec = make_spec(cell, **options)
        for input_size, hidden in SIZES:
            layer = record.build(spec, input_size, hidden)
            assert count(layer) == record.parameters(spec, input_size, hidden), \
                (options, input_size, hidden)
            assert layer.state_sizes == tuple(record.state_sizes(spec, hidden))
            assert layer.output_size == record.output_size(spec, hidden)
            assert layer.input_size == input_size


def test_projection_only_where_raw_input_is_added() -> None:
    """JZS1/JZS2 add raw x: a projection exists iff I ≠ H. JZS3 never needs one."""
    for cell in ("jzs1", "jzs2"):
        assert RECORD[cell].build(make_spec(cell), 5, 5).projection is None
        assert RECORD[cell].build(make_spec(cell), 3, 5).projection.shape == (5, 3)
    assert not any("projection" in n for n, _ in
                   RECORD["jzs3"].build(make_spec("jzs3"), 3, 5).named_parameters())
    spec = Jzs1Spec()
    assert (RECORD["jzs1"].parameters(spec, 3, 5) - RECORD["jzs1"].parameters(spec, 5, 5)
            == 2 * 5 * (3 - 5) + 5 * 3)


@pytest.mark.parametrize("cell", CELLS)
def test_bias_false_leaves_no_bias(cell: str) -> None:
    layer = RECORD[cell].build(make_spec(cell, bias=False), 4, 6)
    names = [name for name, _ in layer.named_parameters()]
    assert not [n for n in names if "bias" in n], names
    with_bias = RECORD[cell].build(make_spec(cell), 4, 6)
    assert any("bias" in n for n, _ in with_bias.named_parameters())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_padding_invariance(cell: str, dtype: torch.dtype) -> None:
    """A sequence's outputs and final state alone equal those inside a padded batch
    (with other rows longer and shorter), in both directions of a padded batch."""
    layer = build(cell, 3, 5, dtype=dtype)
    randomise(layer, scale=0.5)
    layer = layer.to(dtype)
    lengths = [4, 7, 2, 7, 5]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(len(lengths), max(lengths), 3, generator=generator).to(dtype)
    for row, length in enumerate(lengths):
        x[row, length:] = 1e3  # garbage in the padding must not leak
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    with torch.no_grad():
        batch_out, batch_state = layer(x, torch.tensor(lengths))
        for row, length in enumerate(lengths):
            alone_out, alone_state = layer(x[row:row + 1, :length], torch.tensor([length]))
            torch.testing.assert_close(batch_out[row, :length], alone_out[0], rtol=tol, atol=tol)
            assert torch.all(batch_out[row, length:] == 0)
            for b, a in zip(batch_state, alone_state, strict=True):
                torch.testing.assert_close(b[row], a[0], rtol=tol, atol=tol)


@pytest.mark.parametrize("cell", CELLS)
def test_step_matches_forward(cell: str) -> None:
    """Stepping one step at a time from a given state reproduces ``forward``."""
    layer = build(cell, 3, 5)
    randomise(layer)
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    state = tuple(torch.randn(2, s, dtype=torch.float64) for s in layer.state_sizes)
    with torch.no_grad():
        outputs, final = layer(x, torch.tensor([4, 4]), state)
        for t in range(4):
            out, state = layer.step(x[:, t], state)
            torch.testing.assert_close(out, outputs[:, t], rtol=1e-12, atol=1e-12)
    for a, b in zip(state, final, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_every_init_is_finite_and_trains(cell: str) -> None:
    for options in OPTIONS[cell]:
        layer = build(cell, 3, 6, dtype=torch.float32, **options)
        assert all(torch.isfinite(p).all() for p in layer.parameters()), options
        out, _ = layer(torch.randn(2, 5, 3), torch.tensor([5, 3]))
        out.sum().backward()
        assert all(p.grad is not None for p in layer.parameters()), options


@pytest.mark.parametrize("cell", ["jzs1", "jzs2", "jzs3", "layernorm-lstm", "layernorm-gru"])
def test_identity_init_sets_square_recurrent_blocks(cell: str) -> None:
    layer = build(cell, 3, 4, dtype=torch.float32, init="identity", init_scale=0.5)
    eye = torch.eye(4) * 0.5
    recurrent = [p for n, p in layer.named_parameters() if n.startswith("weight_h")]
    for weight in recurrent:
        for block in weight.detach().split(4):
            torch.testing.assert_close(block, eye)


def test_orthogonal_init_gives_orthogonal_blocks() -> None:
    layer = build("jzs2", 3, 6, dtype=torch.float64, init="orthogonal", init_scale=2.0)
    for block in [*layer.weight_h.detach().split(6), layer.weight_hh.detach()]:
        torch.testing.assert_close(block @ block.T, 4.0 * torch.eye(6, dtype=torch.float64),
                                   rtol=0, atol=1e-5)  # built in float32


@pytest.mark.parametrize("cell", ["jzs1", "jzs2", "jzs3"])
def test_mutant_gate_biases(cell: str) -> None:
    """Gate biases b_z, b_r start at 1.0 (or ``gate_bias``), b_h at 0, under every init."""
    for options, gate in [({}, 1.0), ({"gate_bias": -2.0}, -2.0),
                          ({"init": "orthogonal"}, 1.0)]:
        layer = build(cell, 3, 4, dtype=torch.float32, **options)
        assert torch.all(layer.bias[:8] == gate) and torch.all(layer.bias[8:] == 0)


def test_layernorm_gate_biases() -> None:
    lstm = build("layernorm-lstm", 3, 4, dtype=torch.float32, gate_bias=0.5, forget_bias=2.0)
    assert lstm.bias.tolist() == [0.5] * 4 + [2.0] * 4 + [0.0] * 4 + [0.5] * 4
    assert build("layernorm-lstm", 3, 4).bias[4:8].eq(1.0).all()  # forget bias default 1.0
    gru = build("layernorm-gru", 3, 4, dtype=torch.float32, gate_bias=1.5)
    assert gru.bias_ih.tolist() == [1.5] * 8 + [0.0] * 4
    assert gru.bias_hn.eq(0).all()
    for name in ("gain_ih", "gain_hh"):
        assert getattr(gru, name).eq(1).all()


def test_layernorm_gru_update_conventions() -> None:
    """With a large z bias, ``torch`` keeps the state (h' ≈ h) and ``cho`` writes (h' ≈ n)."""
    x = torch.randn(1, 1, 3, dtype=torch.float64)
    h = torch.randn(1, 4, dtype=torch.float64)
    for update, expect_keep in [("torch", True), ("cho", False)]:
        layer = build("layernorm-gru", 3, 4, update=update)
        with torch.no_grad():
            layer.bias_ih[4:8] = 30.0  # z ≈ 1
        out, _ = layer(x, torch.tensor([1]), (h,))
        assert torch.allclose(out[0, 0], h[0], atol=1e-9) == expect_keep


def test_gateless_cells_refuse_gate_bias_and_urnn_refuses_identity(registry: Any) -> None:
    with pytest.raises(ValueError, match="no gates"):
        IrnnSpec(gate_bias=1.0)
    with pytest.raises(ValueError, match="no gates"):
        UrnnSpec(gate_bias=1.0)
    with pytest.raises(ValueError, match="init must be one of"):
        UrnnSpec(init="identity")


def test_spec_files_round_trip(registry: Any) -> None:
    """Every cell spec (with non-default options) loads and dumps exactly through the core
    converter, and a bad option is reported with its path."""
    from assembly.errors import SpecError
    from assembly.spec import DecoderSpec, EncoderSpec, Spec, dumps_spec, loads_spec

    for cell in CELLS:
        for options in OPTIONS[cell]:
            cell_spec = make_spec(cell, **options)
            spec = Spec(encoder=EncoderSpec(cell=cell_spec), decoder=DecoderSpec(cell=cell_spec))
            text = dumps_spec(spec, registry=registry)
            assert f'type = "{cell}"' in text
            assert loads_spec(text, "toml", registry) == spec
    bad = dumps_spec(Spec(), registry=registry).replace('type = "lstm"', 'type = "irnn"\n'
                                                        'gate_bias = 1.0', 1)
    with pytest.raises(SpecError, match="gate_bias"):
        loads_spec(bad, "toml", registry)


def test_specs_are_frozen_and_keyword_only() -> None:
    for record in RECORD.values():
        spec = record.spec()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            spec.bias = False  # type: ignore[misc]
        with pytest.raises(TypeError):
            record.spec(False)  # type: ignore[misc]


@pytest.mark.parametrize("cell", CELLS)
def test_runs_under_autocast(cell: str) -> None:
    """Mixed precision (CPU autocast, bfloat16 here; CUDA float16 works the same way): the
    step's matmuls run in low precision, the gated update casts to the state's dtype, and
    the results stay close to float32."""
    layer = build(cell, 5, 6, dtype=torch.float32)
    x = torch.randn(3, 4, 5)
    lengths = torch.tensor([4, 2, 1])
    exact, _ = layer(x, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs, _state = layer(x, lengths)
        layer.step(x[:, 0], layer.initial_state(3, x))
    outputs.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    torch.testing.assert_close(outputs.float(), exact, rtol=0, atol=0.05)
