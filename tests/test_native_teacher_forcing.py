"""The teacher-forcing node's C++ step loops (assembly.nn.teacher_forcing_native) against
the Python node (the reference, itself held to the generic loop by test_teacher_forcing):
in float32 the outputs and every gradient agree to float rounding, with and without
dropout (the same seed draws the same masks), with gradients injected into every output
the regularisers read, at every depth and with rows and sources of different lengths.
Configurations the C++ loops do not cover run the Python node, and a failed build falls
back to it with a warning."""

from __future__ import annotations

import copy
import shutil
from typing import Any

import pytest
import torch
from helpers_native import ATOL, FEEDING, RTOL, needs_native
from helpers_native import NATIVE_CONFIGS as CONFIGS
from helpers_train import update_gradients

from assembly.build import build_model
from assembly.builtin.cells import GruSpec
from assembly.nn import native, teacher_forcing_native
from assembly.plan import plan_model
from assembly.registry import make_registry
from assembly.spec import AttentionSpec, Spec
from assembly.testing import Batch, make_spec, random_batch

REGISTRY = make_registry(entrypoints=False, strict=True)
GRAD_TOL = 1e-4  # of each gradient's largest entry, against the float64 Python node
DROPOUT = {"decoder__dropout": 0.3, "decoder__attention__dropout": 0.25,
           "target__dropout": 0.2, "source__dropout": 0.1, "encoder__dropout": 0.1}


def _spec(name: str, dropout: bool) -> Spec:
    overrides = dict(CONFIGS[name])
    if dropout:
        overrides.update({k: v for k, v in DROPOUT.items()
                          if not (k.startswith(("target", "source")) and "mode" in overrides)})
    return make_spec(registry=REGISTRY, **overrides)


def _model(spec: Spec) -> Any:
    return build_model(plan_model(spec, REGISTRY), REGISTRY, seed=0).train()


def _batch(spec: Spec, **kwargs: Any) -> Batch:
    options = {"batch": 6, "source_steps": 7, "target_steps": 6, "seed": 1, **kwargs}
    batch = random_batch(spec, registry=REGISTRY, **options)
    if spec.token_mode:
        return batch
    return Batch(batch.source.requires_grad_(), batch.source_lengths,
                 batch.target.requires_grad_(), batch.target_lengths)


class _Spy:
    """Counts the C++ node's forward calls (wraps teacher_forcing_native.forward)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = teacher_forcing_native.forward

        def forward(*args: Any) -> Any:
            self.calls += 1
            return original(*args)

        monkeypatch.setattr(teacher_forcing_native, "forward", forward)


def _run(model: Any, batch: Batch, monkeypatch: pytest.MonkeyPatch, *, use_native: bool,
         inject: bool = True, seed: int = 3) -> tuple[Any, dict[str, torch.Tensor]]:
    """Forward + backward one way; returns (outputs, parameter and input gradients)."""
    monkeypatch.setenv("ASSEMBLY_NATIVE", "1" if use_native else "0")
    outputs, params, inputs = update_gradients(model, batch, inject=inject, seed=seed)
    return outputs, {**params, **inputs}


def _assert_close(a: Any, b: Any) -> None:
    assert torch.equal(a.mask, b.mask)
    for field in ("predictions", "attention", "decoder_outputs"):
        x, y = getattr(a, field), getattr(b, field)
        torch.testing.assert_close(x[a.mask], y[a.mask], rtol=RTOL, atol=ATOL, msg=field)
    for x, y in zip(a.decoder_layer_outputs, b.decoder_layer_outputs, strict=True):
        torch.testing.assert_close(x[a.mask], y[a.mask], rtol=RTOL, atol=ATOL)


def _double(batch: Batch) -> Batch:
    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.detach().double().requires_grad_() if t.is_floating_point() else t

    return Batch(cast(batch.source), batch.source_lengths, cast(batch.target),
                 batch.target_lengths)


def _both_ways(model: Any, batch: Batch, monkeypatch: pytest.MonkeyPatch, **kwargs: Any
               ) -> tuple[Any, Any]:
    """The C++ node and the Python node in float32 give the same outputs, and gradients
    as close to the float64 Python node's as float32 allows (sums with cancellation, such
    as the key bias's, lose a few digits either way: the C++ node's error is the smaller
    one in the cases looked at)."""
    spy = _Spy(monkeypatch)
    ours, our_grads = _run(model, batch, monkeypatch, use_native=True, **kwargs)
    assert spy.calls == 1
    reference, _ = _run(model, batch, monkeypatch, use_native=False, **kwargs)
    assert spy.calls == 1  # the Python node ran the second time
    _assert_close(ours, reference)
    _, grads = _run(copy.deepcopy(model).double(), _double(batch), monkeypatch,
                    use_native=False, **kwargs)
    assert our_grads.keys() == grads.keys()
    assert all(grads[n].abs().sum() > 0 for n in grads if n.startswith("decoder."))
    for key, grad in grads.items():
        scale = grad.abs().max().clamp_min(1e-6)  # relative to the tensor's largest entry
        torch.testing.assert_close(our_grads[key].double() / scale, grad / scale,
                                   rtol=0, atol=GRAD_TOL, msg=key)
    return ours, reference


def test_the_native_loops_build_where_there_is_a_compiler() -> None:
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    assert native.enabled()
    module = native.loops()
    assert module is not None
    assert callable(module.forward_steps) and callable(module.backward_steps)


@needs_native
@pytest.mark.parametrize("inject", [False, True], ids=["loss", "injected"])
@pytest.mark.parametrize("dropout", [False, True], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_native_equals_the_python_node(name: str, dropout: bool, inject: bool,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(name, dropout)
    model = _model(spec)
    _both_ways(model, _batch(spec), monkeypatch, inject=inject)


@needs_native
@pytest.mark.parametrize("sources", [(7, 1, 3, 7, 2, 5), (4, 4, 4, 4, 4, 4)])
@pytest.mark.parametrize("targets", [(6, 1, 3, 6, 2, 4), (6, 6, 6, 6, 6, 6)])
def test_rows_and_sources_of_different_lengths(sources: tuple[int, ...],
                                               targets: tuple[int, ...],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Attention runs over each row's own source extent, steps over each row's own
    target length: same as the Python node, which runs every source position."""
    spec = _spec("three-layers", dropout=True)
    model = _model(spec)
    batch = _batch(spec, source_steps=max(sources), target_steps=max(targets),
                   source_lengths=sources, target_lengths=targets)
    ours, _ = _both_ways(model, batch, monkeypatch)
    lengths = torch.tensor(sources)
    padding = torch.arange(max(sources))[None, :] >= lengths[:, None]  # (B, S)
    assert ours.attention.masked_select(padding[:, None, :]).abs().sum() == 0


@needs_native
@pytest.mark.parametrize("name", ["reference-like", "three-layers"])
def test_rows_split_across_threads_give_the_same_results(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch large enough that every row loop of the C++ node and of the encoder's runs
    on two threads (rows × width past the loops' parallel threshold; the attention
    loops' per-thread partial sums in play): still the Python node's results and the
    float64 gradients, so no loop races another."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        spec = _spec(name, dropout=True)
        model = _model(spec)
        _both_ways(model, _batch(spec, batch=600, source_steps=9, target_steps=8),
                   monkeypatch)
    finally:
        torch.set_num_threads(threads)


@needs_native
def test_steps_past_a_row_s_length_are_zero_and_pass_no_gradient(
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec("three-layers", dropout=True)
    model = _model(spec)
    batch = _batch(spec, target_steps=4, target_lengths=(3, 1, 4, 2, 4, 4))
    pad = torch.zeros(6, 2, dtype=batch.target.dtype)
    batch = Batch(batch.source, batch.source_lengths, torch.cat([batch.target, pad], 1),
                  batch.target_lengths)
    ours, _ = _both_ways(model, batch, monkeypatch)
    ended = ~ours.mask
    for tensor in (ours.attention, ours.decoder_outputs, *ours.decoder_layer_outputs):
        assert tensor[ended].abs().sum() == 0
    model.zero_grad(set_to_none=True)
    outputs = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
    padded = (outputs.decoder_outputs + outputs.attention.sum(-1, keepdim=True)) \
        * ended.unsqueeze(2)
    padded.sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.parameters())


@needs_native
def test_the_same_seed_draws_the_same_dropout_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec("three-layers", dropout=True)
    model = _model(spec)
    batch = _batch(spec)
    states = []
    for use_native in (True, False):
        _run(model, batch, monkeypatch, use_native=use_native, seed=5)
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1])


@needs_native
def test_eval_and_no_grad(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec("reference-like", dropout=True)
    model = _model(spec).eval()
    batch = _batch(spec)
    spy = _Spy(monkeypatch)
    results = []
    for use_native in (True, False):
        monkeypatch.setenv("ASSEMBLY_NATIVE", "1" if use_native else "0")
        with torch.no_grad():
            results.append(model(batch.source, batch.source_lengths, batch.target,
                                 batch.target_lengths))
    assert spy.calls == 1
    _assert_close(*results)


@pytest.mark.parametrize("case", ["float64", "gru", "dot", "general", "disabled"])
def test_what_the_native_loops_do_not_cover_runs_the_python_node(
        case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides: dict[str, Any] = {"decoder__attention": FEEDING}
    if case == "gru":
        overrides["decoder__cell"] = GruSpec()
    if case in ("dot", "general"):
        overrides["decoder__attention"] = AttentionSpec(score=case, input_feeding=True)
    spec = make_spec(registry=REGISTRY, **overrides)
    model = _model(spec)
    if case == "float64":
        model = model.double()
    assert model.decoder.fused_teacher_forcing
    spy = _Spy(monkeypatch)
    batch = _batch(spec)
    outputs, _ = _run(model, batch, monkeypatch, use_native=True)
    if case == "disabled":
        monkeypatch.setenv("ASSEMBLY_NATIVE", "0")
        outputs = model(batch.source, batch.source_lengths, batch.target,
                        batch.target_lengths)
        assert spy.calls == (1 if native.loops() is not None else 0)
        return
    assert outputs.predictions.isfinite().all()
    assert spy.calls == 0


def test_a_failed_build_warns_and_the_python_node_runs(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    import torch.utils.cpp_extension

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("Error building extension: no compiler")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", broken)
    native.loops.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="could not be built.*no compiler"):
            assert native.loops() is None
        spec = _spec("reference-like", dropout=True)
        model = _model(spec)
        spy = _Spy(monkeypatch)
        outputs, grads = _run(model, _batch(spec), monkeypatch, use_native=True)
        assert spy.calls == 0 and outputs.predictions.isfinite().all() and grads
    finally:
        native.loops.cache_clear()
