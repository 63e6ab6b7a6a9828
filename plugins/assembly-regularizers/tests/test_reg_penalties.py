"""norm-stabilizer, decov, activation-l2, weight-l2: each formula against an independent
computation, zeros where there should be zeros, and gradients only where intended."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from regularizers_testlib import (
    build,
    context_of,
    fake_trainer,
    forward,
    make_batch,
    new_model,
    small_spec,
)

from assembly_regularizers import (
    ActivationL2Spec,
    DecovSpec,
    NormStabilizerSpec,
    WeightL2Spec,
)
from assembly_regularizers.penalties import (
    activation_l2_penalty,
    decov_penalty,
    norm_stabilizer_penalty,
)


def _states(seed: int = 0, batch: int = 4, steps: int = 7, hidden: int = 5) -> torch.Tensor:
    return torch.randn(batch, steps, hidden, generator=torch.Generator().manual_seed(seed))


def _mask(lengths: list[int], steps: int) -> torch.Tensor:
    return torch.tensor(lengths)[:, None] > torch.arange(steps)[None, :]


# -- norm stabiliser ----------------------------------------------------------------------


def test_norm_stabilizer_matches_the_formula() -> None:
    states, lengths = _states(), [7, 4, 1, 2]
    mask = _mask(lengths, 7)
    per_sequence = []
    for row, length in enumerate(lengths):
        norms = [math.sqrt(sum(float(v) ** 2 for v in states[row, t])) for t in range(length)]
        diffs = [(norms[t] - norms[t - 1]) ** 2 for t in range(1, length)]
        if diffs:  # a one-step sequence has no pair
            per_sequence.append(sum(diffs) / len(diffs))
    expected = sum(per_sequence) / len(per_sequence)
    assert float(norm_stabilizer_penalty(states, mask)) == pytest.approx(expected, rel=1e-5)


def test_norm_stabilizer_is_zero_for_constant_norms_and_ignores_padding() -> None:
    states, mask = _states(1), _mask([7, 5, 3, 6], 7)
    constant = 3.0 * states / states.norm(dim=-1, keepdim=True)  # every ‖h_t‖ = 3
    constant = torch.where(mask[..., None], constant, 100 * torch.randn_like(states))
    assert float(norm_stabilizer_penalty(constant, mask)) == pytest.approx(0.0, abs=1e-10)
    changed = torch.where(mask[..., None], states, -states * 7)
    assert torch.equal(norm_stabilizer_penalty(states, mask),
                       norm_stabilizer_penalty(changed, mask))


def test_norm_stabilizer_gradient_is_finite_at_zero_padding() -> None:
    states = _states(2).requires_grad_()
    mask = _mask([7, 3, 2, 5], 7)
    padded = states * mask[..., None]  # zero vectors at padding (as the encoder gives)
    norm_stabilizer_penalty(padded, mask).backward()
    assert torch.isfinite(states.grad).all()


@pytest.mark.parametrize("target, silent", [
    ("decoder", ("output.",)),
    ("encoder", ("output.", "decoder.", "target_embedding.", "bridge.")),
    ("logits", ()),
])
def test_norm_stabilizer_gradients_reach_only_the_layers_below(registry: Any, target: str,
                                                               silent: tuple[str, ...]) -> None:
    spec = small_spec(depth=2)
    model = new_model(registry, spec)
    regularizer = build(registry, NormStabilizerSpec(targets=(target,), beta=50.0), spec)
    batch = make_batch([5, 3, 6], [4, 6, 2])
    penalty = regularizer.penalty(forward(model, batch), batch, fake_trainer(model))
    assert float(penalty.detach()) > 0
    penalty.backward()
    reached = {name for name, p in model.named_parameters()
               if p.grad is not None and float(p.grad.abs().sum()) > 0}
    assert any(name.startswith("encoder.") for name in reached)
    for name in reached:
        assert not name.startswith(silent), f"{target} penalty reached {name}"


def test_norm_stabilizer_sums_every_layer_of_the_stack(registry: Any) -> None:
    spec = small_spec(depth=2)
    model = new_model(registry, spec)
    batch = make_batch([5, 3, 6], [4, 6, 2])
    with torch.no_grad():
        outputs = forward(model, batch)
    trainer = fake_trainer(model)
    whole = build(registry, NormStabilizerSpec(targets=("decoder",), beta=2.0), spec)
    parts = [build(registry, NormStabilizerSpec(targets=(f"decoder:{k}",), beta=2.0), spec)
             for k in (0, 1)]
    expected = sum(float(p.penalty(outputs, batch, trainer)) for p in parts)
    assert float(whole.penalty(outputs, batch, trainer)) == pytest.approx(expected, rel=1e-6)
    top = norm_stabilizer_penalty(outputs.decoder_outputs, outputs.mask)
    assert float(parts[1].penalty(outputs, batch, trainer)) == pytest.approx(2 * float(top))


# -- DeCov ----------------------------------------------------------------------------------


def test_decov_matches_the_formula() -> None:
    states, lengths = _states(3, hidden=4), [7, 2, 5, 1]
    mask = _mask(lengths, 7)
    rows = np.concatenate([states[b, :n].numpy() for b, n in enumerate(lengths)]).astype(float)
    c = np.cov(rows, rowvar=False, bias=True)  # normalised by N
    expected = 0.5 * ((c**2).sum() - (np.diag(c) ** 2).sum())
    assert float(decov_penalty(states, mask)) == pytest.approx(expected, rel=1e-5)


def test_decov_is_near_zero_for_uncorrelated_activations_and_falls_with_batch_size() -> None:
    generator = torch.Generator().manual_seed(0)
    values = []
    for n in (64, 512, 4096):
        x = torch.randn(n, 1, 8, generator=generator)  # independent units
        values.append(float(decov_penalty(x, torch.ones(n, 1, dtype=torch.bool))))
    assert values[0] > values[1] > values[2]
    assert values[2] < 0.01  # E = ½·H(H−1)/N ≈ 0.007 for H = 8, N = 4096
    shared = torch.randn(4096, 1, 1, generator=generator)
    correlated = shared + 0.1 * torch.randn(4096, 1, 8, generator=generator)
    assert float(decov_penalty(correlated, torch.ones(4096, 1, dtype=torch.bool))) > 20


def test_decov_on_the_model_reads_the_named_layer(registry: Any) -> None:
    spec = small_spec(depth=2)
    model = new_model(registry, spec)
    batch = make_batch([5, 3, 6], [4, 6, 2])
    with torch.no_grad():
        outputs = forward(model, batch)
    trainer = fake_trainer(model)
    for layer, states, mask in [
        ("decoder", outputs.decoder_outputs, outputs.mask),
        ("decoder:0", outputs.decoder_layer_outputs[0], outputs.mask),
        ("encoder", outputs.encoder.outputs, outputs.encoder.mask),
        ("logits", outputs.predictions, outputs.mask),
    ]:
        regularizer = build(registry, DecovSpec(layer=layer, factor=0.5), spec)
        assert float(regularizer.penalty(outputs, batch, trainer)) == pytest.approx(
            0.5 * float(decov_penalty(states, mask)), rel=1e-6)
    assert regularizer.name == "decov"


# -- activation and weight L2 ------------------------------------------------------------


def test_activation_l2_matches_the_formula(registry: Any) -> None:
    states, lengths = _states(4), [7, 3, 1, 4]
    mask = _mask(lengths, 7)
    values = [float(v) ** 2 for b, n in enumerate(lengths) for t in range(n)
              for v in states[b, t]]
    assert float(activation_l2_penalty(states, mask)) == pytest.approx(
        sum(values) / len(values), rel=1e-5)
    spec = small_spec()
    model = new_model(registry, spec)
    batch = make_batch([5, 3, 6], [4, 6, 2])
    with torch.no_grad():
        outputs = forward(model, batch)
    regularizer = build(registry, ActivationL2Spec(layers=("decoder", "encoder"), factor=3.0),
                        spec)
    expected = 3.0 * (float(activation_l2_penalty(outputs.decoder_outputs, outputs.mask))
                      + float(activation_l2_penalty(outputs.encoder.outputs,
                                                    outputs.encoder.mask)))
    assert float(regularizer.penalty(outputs, batch, fake_trainer(model))) == pytest.approx(
        expected, rel=1e-6)


@pytest.mark.parametrize("biases, embeddings", [(False, False), (True, False), (True, True)])
def test_weight_l2_matches_the_formula(registry: Any, biases: bool, embeddings: bool) -> None:
    spec = small_spec()
    model = new_model(registry, spec)
    regularizer = build(registry, WeightL2Spec(factor=0.01, exclude_biases=biases,
                                               exclude_embeddings=embeddings), spec)
    expected = 0.0
    for name, parameter in model.named_parameters():
        if biases and "bias" in name.rsplit(".", 1)[-1]:
            continue
        if embeddings and "embedding" in name:
            continue
        expected += float((parameter.detach().double() ** 2).sum())
    batch = make_batch([3], [2])
    penalty = regularizer.penalty(forward(model, batch), batch, fake_trainer(model))
    assert float(penalty.detach()) == pytest.approx(0.01 * expected, rel=1e-5)
    model.zero_grad()
    penalty.backward()
    for name, parameter in model.named_parameters():
        excluded = (biases and parameter.ndim == 1) or (embeddings and "embedding" in name)
        if excluded:
            assert parameter.grad is None
        else:
            assert torch.allclose(parameter.grad, 0.02 * parameter.detach(), atol=1e-7)


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: NormStabilizerSpec(targets=("hidden",)),
    lambda: NormStabilizerSpec(targets=()),
    lambda: NormStabilizerSpec(targets=("decoder", "decoder")),
    lambda: NormStabilizerSpec(beta=-1.0),
    lambda: DecovSpec(layer="decoder:x"),
    lambda: DecovSpec(layer="decoder:01"),
    lambda: DecovSpec(factor=-0.1),
    lambda: ActivationL2Spec(layers=("logit",)),
    lambda: WeightL2Spec(factor=-1e-4),
])
def test_specs_refuse_bad_values(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


def test_a_layer_the_model_lacks_is_refused_when_built(registry: Any) -> None:
    spec = small_spec(depth=2)
    context = context_of(spec, registry)
    record = registry.get("regularizer", "decov")
    with pytest.raises(ValueError, match="decoder has 2 layer"):
        record.build(DecovSpec(layer="decoder:2"), context)
    record.build(DecovSpec(layer="decoder:1"), context)
