"""The fused teacher-forced decoder (assembly.nn.teacher_forcing) against the generic step
loop (``Seq2Seq._loop``, the reference): in float64 the outputs and the gradients of every
parameter and of the inputs agree to 1e-9, with and without dropout (the same seed draws
the same masks), with gradients injected into every output the regularisers read, for LSTM
and GRU decoders (both update conventions); and configurations it does not cover (mixed
LSTM/GRU stacks among them) keep the generic loop."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from helpers_native import CONFIGS, FEEDING
from helpers_train import update_gradients

from assembly.build import build_model
from assembly.builtin.cells import GruSpec, LstmSpec
from assembly.nn import teacher_forcing
from assembly.plan import plan_model
from assembly.registry import make_registry
from assembly.spec import AttentionSpec, Spec
from assembly.testing import Batch, make_spec, random_batch

REGISTRY = make_registry(entrypoints=False, strict=True)
TOL = 1e-9
# decoder cells every equality test runs with: the LSTM, the GRU in torch's convention and
# in Cho's (the update gate stored negated; with a gate bias, else the two built the same)
CELLS = ("lstm", "gru-torch", "gru-cho")
DROPOUT = {"decoder__dropout": 0.3, "decoder__attention__dropout": 0.25,
           "target__dropout": 0.2, "source__dropout": 0.1, "encoder__dropout": 0.1}


def _spec(name: str, dropout: bool, cell: str = "lstm") -> Spec:
    overrides = dict(CONFIGS[name])
    if cell != "lstm":
        bias = overrides.get("decoder__cell", LstmSpec()).bias
        update = cell.removeprefix("gru-")
        overrides["decoder__cell"] = GruSpec(update=update, bias=bias,
                                             gate_bias=1.0 if update == "cho" else None)
    if dropout:
        overrides.update({k: v for k, v in DROPOUT.items()
                          if not (k.startswith(("target", "source")) and "mode" in overrides)})
    return make_spec(registry=REGISTRY, **overrides)


def _model(spec: Spec) -> Any:
    model = build_model(plan_model(spec, REGISTRY), REGISTRY, seed=0).double()
    return model.train()


def _batch(spec: Spec, seed: int = 1, **kwargs: Any) -> Batch:
    batch = random_batch(spec, batch=5, source_steps=7, target_steps=6, seed=seed,
                         registry=REGISTRY, **kwargs)
    if spec.token_mode:
        return batch
    return Batch(batch.source.double().requires_grad_(), batch.source_lengths,
                 batch.target.double().requires_grad_(), batch.target_lengths)


def _fused_ran(outputs: Any) -> bool:
    """Whether the node made decoder_outputs (directly, or under the row reordering)."""
    node = outputs.decoder_outputs.grad_fn
    if type(node).__name__ == "IndexSelectBackward0":
        node = node.next_functions[0][0]
    return type(node).__name__ == "TeacherForcedBackward"


def _run(model: Any, batch: Batch, *, fused: bool, inject: bool, seed: int = 3
         ) -> tuple[Any, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Forward + backward one way; returns (outputs, parameter grads, input grads)."""
    model.decoder.fuse_teacher_forcing = fused
    outputs, params, inputs = update_gradients(model, batch, inject=inject, seed=seed)
    assert _fused_ran(outputs) == fused
    return outputs, params, inputs


def _assert_same(a: Any, b: Any) -> None:
    """Equal at every step the mask marks (only those are defined)."""
    assert torch.equal(a.mask, b.mask)
    for field in ("predictions", "attention", "decoder_outputs", "stop_logits"):
        x, y = getattr(a, field), getattr(b, field)
        if x is None:
            assert y is None
            continue
        torch.testing.assert_close(x[a.mask], y[a.mask], rtol=TOL, atol=TOL, msg=field)
    assert len(a.decoder_layer_outputs) == len(b.decoder_layer_outputs)
    for x, y in zip(a.decoder_layer_outputs, b.decoder_layer_outputs, strict=True):
        torch.testing.assert_close(x[a.mask], y[a.mask], rtol=TOL, atol=TOL)


def _same_both_ways(model: Any, batch: Batch) -> tuple[Any, Any]:
    """Both paths with injected gradients: same outputs and parameter gradients; returns
    (fused outputs, generic outputs)."""
    fused, fused_params, _ = _run(model, batch, fused=True, inject=True)
    generic, params, _ = _run(model, batch, fused=False, inject=True)
    _assert_same(fused, generic)
    for key in params:
        torch.testing.assert_close(fused_params[key], params[key], rtol=TOL, atol=TOL,
                                   msg=key)
    return fused, generic


@pytest.mark.parametrize("inject", [False, True], ids=["loss", "injected"])
@pytest.mark.parametrize("dropout", [False, True], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("cell", CELLS)
def test_fused_equals_the_generic_loop(cell: str, name: str, dropout: bool,
                                       inject: bool) -> None:
    spec = _spec(name, dropout, cell)
    model = _model(spec)
    assert model.decoder.fused_teacher_forcing
    batch = _batch(spec)
    fused, fused_params, fused_inputs = _run(model, batch, fused=True, inject=inject)
    generic, params, inputs = _run(model, batch, fused=False, inject=inject)
    _assert_same(fused, generic)
    assert fused_params.keys() == params.keys()
    decoder_params = [n for n in params if n.startswith("decoder.")]
    assert decoder_params and all(params[n].abs().sum() > 0 for n in decoder_params)
    for key in params:
        torch.testing.assert_close(fused_params[key], params[key], rtol=TOL, atol=TOL,
                                   msg=key)
    assert fused_inputs.keys() == inputs.keys()
    assert spec.token_mode or inputs.keys() == {"source", "target"}
    for key in inputs:
        torch.testing.assert_close(fused_inputs[key], inputs[key], rtol=TOL, atol=TOL,
                                   msg=key)


@pytest.mark.parametrize("name", [n for n in CONFIGS if "dot" not in n
                                  and "general" not in n][:3])
@pytest.mark.parametrize("cell", CELLS)
def test_recomputed_squashing_gives_the_same_gradients(
        cell: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the memory budget the backward recomputes σ(K + 2 W_q s_t) instead of
    keeping it: same gradients."""
    spec = _spec(name, True, cell)
    model = _model(spec)
    if model.decoder.attention.score not in ("additive", "concat"):
        pytest.skip("not a squashed score")
    batch = _batch(spec)
    kept, kept_params, _ = _run(model, batch, fused=True, inject=True)
    monkeypatch.setattr(teacher_forcing, "SQUASHED_MEMORY_BUDGET", 0)
    recomputed, params, _ = _run(model, batch, fused=True, inject=True)
    _assert_same(recomputed, kept)
    for key in params:
        torch.testing.assert_close(params[key], kept_params[key], rtol=TOL, atol=TOL, msg=key)


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_draws_the_same_masks_in_the_same_order(cell: str) -> None:
    """Both paths leave torch's generator in the same state, and dropout does act."""
    spec = _spec("three-layers", dropout=True, cell=cell)
    model = _model(spec)
    batch = _batch(spec)
    states = []
    for fused in (True, False):
        model.decoder.fuse_teacher_forcing = fused
        torch.manual_seed(5)
        outputs = model(batch.source, batch.source_lengths, batch.target,
                        batch.target_lengths)
        assert _fused_ran(outputs) == fused
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1])
    torch.manual_seed(6)
    other = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    assert not torch.allclose(other.predictions, outputs.predictions)


@pytest.mark.parametrize("lengths", [(6, 1, 3, 6, 2), (2, 2, 2, 2, 2), (6, 5, 4, 3, 2)])
@pytest.mark.parametrize("cell", CELLS)
def test_padded_targets_of_different_lengths(cell: str, lengths: tuple[int, ...]) -> None:
    spec = _spec("reference-like", dropout=True, cell=cell)
    model = _model(spec)
    batch = random_batch(spec, batch=5, source_steps=7, target_steps=max(lengths), seed=4,
                         target_lengths=lengths, registry=REGISTRY)
    _same_both_ways(model, batch)


def test_schedule_sorts_the_rows_longest_first_and_counts_each_step_s_rows() -> None:
    active, order = teacher_forcing.schedule(torch.tensor([2, 4, 1, 4]), 5, 4)
    assert active == (4, 3, 2, 2, 0)
    assert order.tolist() == [1, 3, 0, 2]  # stable among equal lengths
    assert teacher_forcing.schedule(torch.tensor([3, 3, 1]), 3, 3) == ((3, 2, 2), None)
    assert teacher_forcing.schedule(None, 2, 3) == ((3, 3), None)


@pytest.mark.parametrize("cell", CELLS)
def test_steps_past_a_row_s_length_run_nothing(cell: str) -> None:
    """The target is padded two steps past its longest row: the generic loop's outputs
    at masked steps are junk, the node's are zero, and a gradient put only there reaches
    no parameter; the unmasked steps and the loss's gradients stay the generic loop's."""
    spec = _spec("three-layers", dropout=True, cell=cell)
    model = _model(spec)
    batch = random_batch(spec, batch=5, source_steps=7, target_steps=4, seed=4,
                         target_lengths=(3, 1, 4, 2, 4), registry=REGISTRY)
    pad = torch.zeros(5, 2, dtype=batch.target.dtype)
    batch = Batch(batch.source, batch.source_lengths, torch.cat([batch.target, pad], 1),
                  batch.target_lengths)
    fused, generic = _same_both_ways(model, batch)
    ended = ~fused.mask
    assert ended[:, -2:].all() and ended.sum() == 30 - 14
    for tensor in (fused.attention, fused.decoder_outputs, *fused.decoder_layer_outputs):
        assert tensor[ended].abs().sum() == 0
    assert generic.decoder_outputs[ended].abs().sum() > 0
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    model.decoder.fuse_teacher_forcing = True
    outputs = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    padded = (outputs.decoder_outputs + outputs.attention.sum(-1, keepdim=True)) \
        * ended.unsqueeze(2)
    (padded.sum() + sum((layer * ended.unsqueeze(2)).sum()
                        for layer in outputs.decoder_layer_outputs)).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.parameters())


@pytest.mark.parametrize("cell", CELLS)
def test_eval_and_no_grad_match_and_float32_agrees(cell: str) -> None:
    spec = _spec("two-layers-general", dropout=True, cell=cell)
    model = _model(spec).eval()
    batch = _batch(spec)
    results = []
    for fused in (True, False):
        model.decoder.fuse_teacher_forcing = fused
        with torch.no_grad():
            results.append(model(batch.source, batch.source_lengths, batch.target,
                                 batch.target_lengths))
    _assert_same(*results)
    model = model.float().train()
    floats = [_run(model, batch, fused=fused, inject=True) for fused in (True, False)]
    mask = floats[0][0].mask
    torch.testing.assert_close(floats[0][0].predictions[mask], floats[1][0].predictions[mask],
                               rtol=1e-5, atol=1e-5)
    for key, grad in floats[1][1].items():
        torch.testing.assert_close(floats[0][1][key], grad, rtol=1e-4, atol=1e-5, msg=key)


UNSUPPORTED: dict[str, dict[str, Any]] = {
    "no-attention": {},
    "no-input-feeding": {"decoder__attention": AttentionSpec()},
    "attention-before": {"decoder__attention": AttentionSpec(position="before")},
    "query-all": {"depth": 2, "decoder__attention": AttentionSpec(query="all",
                                                                   input_feeding=True)},
    "inner-sync": {"depth": 2, "decoder__inner_sync": True, "decoder__attention": FEEDING},
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_unsupported_configurations_keep_the_generic_loop(name: str) -> None:
    spec = make_spec(registry=REGISTRY, **UNSUPPORTED[name])
    model = _model(spec)
    assert not model.decoder.fused_teacher_forcing
    batch = _batch(spec)
    outputs = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    assert not _fused_ran(outputs)


@pytest.mark.parametrize("cell", CELLS)
def test_built_in_stacks_of_one_cell_are_supported(cell: str) -> None:
    assert _model(_spec("three-layers", dropout=False, cell=cell)).decoder.fused_teacher_forcing


def test_mixed_lstm_gru_stacks_keep_the_generic_loop() -> None:
    """A stack of built-in LSTM and GRU layers is not one the node runs (the layers of
    one stack share a cell in a spec, so the mix is made by swapping a layer)."""
    from assembly.nn import teacher_forcing

    for cell, other in (("lstm", "gru-torch"), ("gru-cho", "lstm")):
        for index in (0, 1):
            decoder = _model(_spec("two-layers-general", dropout=False, cell=cell)).decoder
            assert decoder.fused_teacher_forcing
            swapped = _model(_spec("two-layers-general", dropout=False, cell=other))
            decoder.layers[index] = swapped.decoder.layers[index]
            assert not teacher_forcing.supported(decoder)
            assert not decoder.fused_teacher_forcing


@pytest.mark.parametrize("cell", CELLS)
def test_scheduled_sampling_switch_and_autocast_keep_the_generic_loop(cell: str) -> None:
    spec = _spec("reference-like", dropout=False, cell=cell)
    model = _model(spec)
    batch = _batch(spec)
    args = (batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    assert _fused_ran(model(*args))
    assert not _fused_ran(model(*args, sampling_probability=0.5,
                                generator=torch.Generator().manual_seed(0)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _fused_ran(model(*args))
    model.decoder.fuse_teacher_forcing = False
    assert not model.decoder.fused_teacher_forcing
    assert not _fused_ran(model(*args))
