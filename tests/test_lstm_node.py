"""The LSTM layer node (assembly.nn.lstm_node) against torch's own kernels.

In float64 the outputs, the final states (h and c, per direction) and the gradients of
the inputs, the initial states and every weight agree with ``_VF.lstm`` to 1e-9: packed
(padded) and batch-first (unpadded) data, one and two directions, with and without bias,
from zeros or a given state, lengths down to 1, with gradients injected into the final
states too. The layers route padded CPU batches to the node and everything else to torch
(:func:`~assembly.nn.lstm_node.applies`), and give the same results either way.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch import _VF
from torch.nn.utils.rnn import pack_padded_sequence

from assembly.builtin.cells import GruSpec, LstmSpec
from assembly.nn import native
from assembly.nn.fused import FusedGRU, FusedLSTM
from assembly.nn.layers import BidirectionalLayer
from assembly.nn.lstm_node import NO_GRAD_MIN_BATCH, LSTMLayer, applies

TOL = 1e-9
INPUT, HIDDEN = 5, 4
LENGTHS = {"padded": [7, 3, 5, 1, 7, 2], "unpadded": [4] * 6, "ones": [1] * 5}


def _weights(directions: int, bias: bool, generator: torch.Generator) -> list[torch.Tensor]:
    shapes = [(4 * HIDDEN, INPUT), (4 * HIDDEN, HIDDEN)]
    if bias:
        shapes += [(4 * HIDDEN,), (4 * HIDDEN,)]
    return [torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_()
            for _ in range(directions) for shape in shapes]


def _probe(tensors: list[torch.Tensor], seed: int = 3) -> torch.Tensor:
    """A random linear function of every result: its gradient reaches all of them."""
    generator = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum()
               for t in tensors)


# (lengths, bidirectional, bias, initial state given, batch-first data: unpadded only)
CASES = [case for case in itertools.product(["padded", "unpadded", "ones"], [True, False],
                                            [True, False], [True, False], [True, False])
         if not (case[0] == "padded" and case[4])]


@pytest.mark.parametrize(("lengths", "bidirectional", "bias", "initial", "batch_first"),
                         CASES)
def test_node_equals_torch_kernel(lengths: str, bidirectional: bool, bias: bool,
                                  initial: bool, batch_first: bool) -> None:
    generator = torch.Generator().manual_seed(1)
    directions = 2 if bidirectional else 1
    sizes = torch.tensor(LENGTHS[lengths])
    batch = len(sizes)
    weights = _weights(directions, bias, generator)
    x = torch.randn(batch, int(sizes.max()), INPUT, generator=generator,
                    dtype=torch.float64).requires_grad_()
    start = [torch.randn(directions, batch, HIDDEN, generator=generator,
                         dtype=torch.float64).requires_grad_() for _ in range(2)]
    leaves = [x, *weights, *(start if initial else [])]
    results = []
    for node in (True, False):
        packed = pack_padded_sequence(x, sizes, batch_first=True, enforce_sorted=False)
        order = packed.sorted_indices
        if node:
            h0, c0 = (s[:, order] for s in start) if initial else (None, None)
            data = x[order] if batch_first else packed.data
            *outputs, h, c = LSTMLayer.apply(bias, tuple(packed.batch_sizes.tolist()), data,
                                             h0, c0, *weights)
            if batch_first:  # (B, T, H) in the sorted order → the packed (N, H) order
                outputs = [o.transpose(0, 1).flatten(0, 1) for o in outputs]
            assert type(h.grad_fn).__name__ == "LSTMLayerBackward"
        else:
            hx = ([s[:, order] for s in start] if initial
                  else [torch.zeros(directions, batch, HIDDEN, dtype=torch.float64)] * 2)
            output, h, c = _VF.lstm(packed.data, packed.batch_sizes, hx, weights, bias, 1,
                                    0.0, True, bidirectional)
            outputs = list(output.chunk(directions, 1))
        flat = [*outputs, h, c]  # the final states take gradients too
        results.append(flat + list(torch.autograd.grad(_probe(flat), leaves)))
    for ours, reference in zip(*results, strict=True):
        torch.testing.assert_close(ours, reference, rtol=0, atol=TOL)


def _layers(bidirectional: bool, bias: bool = True) -> tuple[Any, list[FusedLSTM]]:
    torch.manual_seed(0)
    spec = LstmSpec(bias=bias)
    cells = [FusedLSTM(spec, INPUT, HIDDEN).double() for _ in range(2 if bidirectional else 1)]
    if bidirectional:
        return BidirectionalLayer(cells[0], cells[1], "concat"), cells
    return cells[0], cells


def _ran_node(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s graph holds the node."""
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        if type(fn).__name__ == "LSTMLayerBackward":
            return True
        seen.add(fn)
        stack += [next_fn for next_fn, _ in fn.next_functions]
    return False


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_layers_route_padded_batches_to_the_node(bidirectional: bool, training: bool) -> None:
    """Padded: the node, equal to torch's packed kernel (use_node = False); unpadded: torch's
    dense kernel either way. Train and eval mode route alike."""
    layer, cells = _layers(bidirectional)
    layer.train(training)
    generator = torch.Generator().manual_seed(2)
    for name in ("padded", "unpadded"):
        sizes = torch.tensor(LENGTHS[name])
        x = torch.randn(len(sizes), int(sizes.max()), INPUT, generator=generator,
                        dtype=torch.float64).requires_grad_()
        results = []
        for use_node in (True, False):
            for cell in cells:
                cell.use_node = use_node
            outputs, state, *summary = layer(x, sizes)
            assert _ran_node(outputs) == (use_node and name == "padded")
            flat = [outputs, *state, *summary]
            leaves = [x, *layer.parameters()]
            results.append(flat + list(torch.autograd.grad(_probe(flat), leaves)))
        for ours, reference in zip(*results, strict=True):
            torch.testing.assert_close(ours, reference, rtol=0, atol=TOL)
        if name == "padded":
            assert bool((results[0][0][3, 1:] == 0).all())  # padding stays zero


def test_given_state_on_padded_batch() -> None:
    """A unidirectional layer started from a given state, padded: node equals torch."""
    layer, _ = _layers(False)
    generator = torch.Generator().manual_seed(4)
    sizes = torch.tensor(LENGTHS["padded"])
    x = torch.randn(len(sizes), 7, INPUT, generator=generator, dtype=torch.float64)
    start = tuple(torch.randn(len(sizes), HIDDEN, generator=generator, dtype=torch.float64)
                  .requires_grad_() for _ in range(2))
    results = []
    for use_node in (True, False):
        layer.use_node = use_node
        outputs, state = layer(x, sizes, start)
        assert _ran_node(outputs) == use_node
        flat = [outputs, *state]
        results.append(flat + list(torch.autograd.grad(_probe(flat), [*start,
                                                                       *layer.parameters()])))
    for ours, reference in zip(*results, strict=True):
        torch.testing.assert_close(ours, reference, rtol=0, atol=TOL)


def test_predicate() -> None:
    """CPU, float32/float64, weights alike, no autocast; with a gradient always, without
    one only bidirectional from NO_GRAD_MIN_BATCH sequences on."""
    data = torch.randn(3, INPUT)
    weights = [torch.randn(4 * HIDDEN, INPUT, requires_grad=True),
               torch.randn(4 * HIDDEN, HIDDEN, requires_grad=True)]
    assert applies(data, weights, 2, False)
    assert applies(data.double(), [w.double() for w in weights], 2, False)
    assert not applies(data.double(), weights, 2, False)  # mixed dtypes
    assert not applies(data.bfloat16(), [w.bfloat16() for w in weights], 2, False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not applies(data, weights, 2, False)
    assert not applies(data.to("meta"), weights, 2, False)
    big = NO_GRAD_MIN_BATCH
    with torch.no_grad():
        assert not applies(data, weights, big, False)
        assert not applies(data, weights, big - 1, True)
        assert applies(data, weights, big, True)
    frozen = [w.detach() for w in weights]
    assert not applies(data, frozen, 2, True)  # nothing wants a gradient
    assert applies(data.requires_grad_(), frozen, 2, False)


@pytest.mark.parametrize(("batch", "bidirectional", "node"),
                         [(NO_GRAD_MIN_BATCH, True, True), (NO_GRAD_MIN_BATCH - 1, True, False),
                          (NO_GRAD_MIN_BATCH, False, False)])
def test_layers_without_gradient(monkeypatch: pytest.MonkeyPatch, batch: int,
                                 bidirectional: bool, node: bool) -> None:
    """Under no_grad the route follows :func:`applies`; the results do not depend on it."""
    calls = []
    apply = LSTMLayer.apply

    def counted(*args: Any) -> Any:
        calls.append(args[1])
        return apply(*args)

    monkeypatch.setattr(LSTMLayer, "apply", counted)
    layer, cells = _layers(bidirectional)
    sizes = torch.arange(batch) % 7 + 1
    x = torch.randn(batch, 7, INPUT, dtype=torch.float64)
    with torch.no_grad():
        outputs = layer(x, sizes)[0]
        assert len(calls) == int(node)
        for cell in cells:
            cell.use_node = False
        reference = layer(x, sizes)[0]
        assert len(calls) == int(node)
    torch.testing.assert_close(outputs, reference, rtol=0, atol=TOL)


def test_gru_never_runs_the_node() -> None:
    gru = FusedGRU(GruSpec(), INPUT, HIDDEN)
    sizes = torch.tensor(LENGTHS["padded"])
    outputs, _ = gru(torch.randn(len(sizes), 7, INPUT, requires_grad=True), sizes)
    assert not _ran_node(outputs)


def test_float32_padded_close_to_torch() -> None:
    layer, cells = _layers(True)
    layer.float()
    sizes = torch.tensor(LENGTHS["padded"])
    x = torch.randn(len(sizes), 7, INPUT, requires_grad=True)
    ours = layer(x, sizes)[0]
    assert _ran_node(ours)
    for cell in cells:
        cell.use_node = False
    reference = layer(x, sizes)[0]
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


def test_plans_made_under_inference_mode_serve_training() -> None:
    """The row plans are cached by batch sizes; one first made under inference_mode (its
    index tensors inference tensors) still serves a training pass."""
    layer, _ = _layers(True)
    sizes = torch.arange(NO_GRAD_MIN_BATCH) % 7 + 1
    x = torch.randn(NO_GRAD_MIN_BATCH, 7, INPUT, dtype=torch.float64)
    with torch.inference_mode():
        expected = layer(x, sizes)[0]
    outputs = layer(x.requires_grad_(), sizes)[0]
    assert _ran_node(outputs)
    outputs.sum().backward()
    torch.testing.assert_close(outputs.detach(), expected, rtol=0, atol=TOL)
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


@pytest.mark.skipif(native.loops() is None, reason="the native loops could not be built here")
@pytest.mark.parametrize(("lengths", "bidirectional", "bias", "initial", "batch_first"),
                         CASES)
def test_native_loops_equal_the_python_loops(lengths: str, bidirectional: bool, bias: bool,
                                             initial: bool, batch_first: bool,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """In float32 the node's C++ step loops (assembly/nn/native/loops.cpp) give its Python
    loops' outputs, final states and gradients to float rounding."""
    generator = torch.Generator().manual_seed(1)
    directions = 2 if bidirectional else 1
    sizes = torch.tensor(LENGTHS[lengths])
    batch = len(sizes)
    weights = [w.detach().float().requires_grad_()
               for w in _weights(directions, bias, generator)]
    x = torch.randn(batch, int(sizes.max()), INPUT, generator=generator).requires_grad_()
    start = [torch.randn(directions, batch, HIDDEN, generator=generator).requires_grad_()
             for _ in range(2)]
    leaves = [x, *weights, *(start if initial else [])]
    module = native.loops()
    calls = []
    for name in ("lstm_layer_forward", "lstm_layer_backward"):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name: (calls.append(_n),
                                                                            _f(*a))[1])
    results = []
    for use_native in (True, False):
        monkeypatch.setenv("ASSEMBLY_NATIVE", "1" if use_native else "0")
        packed = pack_padded_sequence(x, sizes, batch_first=True, enforce_sorted=False)
        order = packed.sorted_indices
        h0, c0 = (s[:, order] for s in start) if initial else (None, None)
        data = x[order] if batch_first else packed.data
        flat = list(LSTMLayer.apply(bias, tuple(packed.batch_sizes.tolist()), data, h0, c0,
                                    *weights))
        results.append(flat + list(torch.autograd.grad(_probe(flat), leaves)))
        assert calls == (["lstm_layer_forward", "lstm_layer_backward"] if use_native else
                         calls[:2])
    for ours, reference in zip(*results, strict=True):
        scale = reference.abs().max().clamp_min(1.0)
        torch.testing.assert_close(ours / scale, reference / scale, rtol=0, atol=2e-6)
