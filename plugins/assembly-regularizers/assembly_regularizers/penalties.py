"""Penalties computed from one forward pass: norm stabiliser, DeCov, activation and
weight L2. Each is a pure function of tensors (``*_penalty``) wrapped by a
:class:`~assembly.plugin.Regularizer` that picks the tensors out of the model's outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from assembly.plugin import Regularizer, RegularizerContext
from torch import Tensor, nn

from assembly_regularizers._common import activations, check_layers
from assembly_regularizers.specs import (
    ActivationL2Spec,
    DecovSpec,
    NormStabilizerSpec,
    WeightL2Spec,
)

# -- the formulas on plain tensors --------------------------------------------------------


def norm_stabilizer_penalty(states: Tensor, mask: Tensor) -> Tensor:
    """mean over sequences of mean_t (‖h_t‖₂ − ‖h_{t−1}‖₂)² over consecutive valid steps.

    states (B, T, H), mask (B, T) true at valid steps (a prefix of each row) → scalar.
    Sequences with fewer than two valid steps are left out of the batch mean."""
    norms = torch.linalg.vector_norm(states.float(), dim=-1)  # (B, T)
    pairs = mask[:, 1:] & mask[:, :-1]  # (B, T−1) both steps valid
    squared = (norms[:, 1:] - norms[:, :-1]).pow(2) * pairs  # (B, T−1)
    count = pairs.sum(dim=1)  # (B,)
    per_sequence = squared.sum(dim=1) / count.clamp(min=1)  # (B,)
    counted = (count > 0).to(per_sequence.dtype)  # (B,)
    return (per_sequence * counted).sum() / counted.sum().clamp(min=1.0)


def covariance(states: Tensor, mask: Tensor) -> Tensor:
    """The (H, H) covariance of the valid steps' activations, each step one observation,
    normalised by their number N (0 when nothing is valid). states (B, T, H), mask (B, T)."""
    x = states.float()[mask]  # (N, H)
    if x.shape[0] == 0:
        return x.new_zeros(x.shape[-1], x.shape[-1])
    centred = x - x.mean(dim=0, keepdim=True)  # (N, H)
    return centred.T @ centred / x.shape[0]  # (H, H)


def decov_penalty(states: Tensor, mask: Tensor) -> Tensor:
    """½ (‖C‖²_F − ‖diag C‖²₂) of :func:`covariance`: the squared off-diagonal mass."""
    c = covariance(states, mask)
    return 0.5 * (c.pow(2).sum() - c.diagonal().pow(2).sum())


def activation_l2_penalty(states: Tensor, mask: Tensor) -> Tensor:
    """mean of h² over the valid steps and the units. states (B, T, H), mask (B, T)."""
    squared = states.float().pow(2).sum(dim=-1) * mask  # (B, T)
    return squared.sum() / (mask.sum() * states.shape[-1]).clamp(min=1)


def penalised_weights(model: nn.Module, *, exclude_biases: bool,
                      exclude_embeddings: bool) -> list[nn.Parameter]:
    """The trainable parameters weight-l2 counts (each tied tensor once)."""
    embeddings = set()
    if exclude_embeddings:
        embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    kept = []
    for parameter in model.parameters():  # distinct tensors: tied weights appear once
        if not parameter.requires_grad or id(parameter) in embeddings:
            continue
        if exclude_biases and parameter.ndim == 1:
            continue
        kept.append(parameter)
    return kept


def weight_l2_penalty(parameters: Sequence[Tensor]) -> Tensor:
    """Σ ‖θ‖²₂ over ``parameters``."""
    return torch.stack([p.float().pow(2).sum() for p in parameters]).sum()


# -- the regularisers ---------------------------------------------------------------------


def _zero(outputs: Any) -> Tensor:
    return torch.zeros((), device=outputs.predictions.device)


class NormStabilizer(Regularizer):
    """See :class:`~assembly_regularizers.specs.NormStabilizerSpec`."""

    def __init__(self, spec: NormStabilizerSpec, context: RegularizerContext) -> None:
        super().__init__()
        check_layers(spec.targets, context, "norm-stabilizer targets")
        self.spec = spec
        self.name = "norm-stabilizer"

    def penalty(self, outputs: Any, batch: Any, trainer: Any) -> Tensor:
        total = _zero(outputs)
        for target in self.spec.targets:
            for states, mask in activations(outputs, target, every_layer=True):
                total = total + norm_stabilizer_penalty(states, mask)
        return self.spec.beta * total


class Decov(Regularizer):
    """See :class:`~assembly_regularizers.specs.DecovSpec`."""

    def __init__(self, spec: DecovSpec, context: RegularizerContext) -> None:
        super().__init__()
        check_layers((spec.layer,), context, "decov layer")
        self.spec = spec
        self.name = "decov"

    def penalty(self, outputs: Any, batch: Any, trainer: Any) -> Tensor:
        [(states, mask)] = activations(outputs, self.spec.layer, every_layer=False)
        return self.spec.factor * decov_penalty(states, mask)


class ActivationL2(Regularizer):
    """See :class:`~assembly_regularizers.specs.ActivationL2Spec`."""

    def __init__(self, spec: ActivationL2Spec, context: RegularizerContext) -> None:
        super().__init__()
        check_layers(spec.layers, context, "activation-l2 layers")
        self.spec = spec
        self.name = "activation-l2"

    def penalty(self, outputs: Any, batch: Any, trainer: Any) -> Tensor:
        total = _zero(outputs)
        for layer in self.spec.layers:
            for states, mask in activations(outputs, layer, every_layer=True):
                total = total + activation_l2_penalty(states, mask)
        return self.spec.factor * total


class WeightL2(Regularizer):
    """See :class:`~assembly_regularizers.specs.WeightL2Spec`. The parameter list is
    taken from ``trainer.model`` once and kept."""

    def __init__(self, spec: WeightL2Spec, context: RegularizerContext) -> None:
        super().__init__()
        self.spec = spec
        self.name = "weight-l2"
        self._parameters_of: tuple[int, list[nn.Parameter]] | None = None

    def weights(self, model: nn.Module) -> list[nn.Parameter]:
        if self._parameters_of is None or self._parameters_of[0] != id(model):
            kept = penalised_weights(model, exclude_biases=self.spec.exclude_biases,
                                     exclude_embeddings=self.spec.exclude_embeddings)
            self._parameters_of = (id(model), kept)
        return self._parameters_of[1]

    def penalty(self, outputs: Any, batch: Any, trainer: Any) -> Tensor:
        weights = self.weights(trainer.model)
        if not weights or self.spec.factor == 0.0:
            return _zero(outputs)
        return self.spec.factor * weight_l2_penalty(weights)
