"""Learning-rate schedules: the lr each update gets (assembly.train.schedule.LearningRate),
and the optimisers the spec names."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from helpers_train import make_spec, trainer

from assembly.data.batching import collate_tokens
from assembly.spec.model import OptimizerSpec, ScheduleSpec
from assembly.train.schedule import LearningRate, make_optimizer

BASE_LR = 0.1


def schedule(
    total: int = 10, higher_is_better: bool = False, **spec: object
) -> tuple[LearningRate, torch.optim.Optimizer]:
    parameter = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([parameter], lr=BASE_LR)
    return LearningRate(ScheduleSpec(**spec), optimizer, total, higher_is_better), optimizer


def lrs(rate: LearningRate, optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    out = []
    for step in range(steps):
        returned = rate.apply(step)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(returned)
        out.append(returned)
    return out


def test_constant() -> None:
    assert lrs(*schedule(), 4) == pytest.approx([BASE_LR] * 4)


def test_step() -> None:
    got = lrs(*schedule(type="step", gamma=0.5, step_size=2), 6)
    assert got == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_exponential() -> None:
    got = lrs(*schedule(type="exponential", gamma=0.9), 5)
    assert got == pytest.approx([BASE_LR * 0.9**k for k in range(5)])


def test_cosine_goes_from_base_to_zero_over_the_run() -> None:
    rate, optimizer = schedule(total=10, type="cosine")
    got = lrs(rate, optimizer, 11)
    expected = [BASE_LR * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(11)]
    assert got == pytest.approx(expected)
    assert got[0] == pytest.approx(BASE_LR) and got[5] == pytest.approx(BASE_LR / 2)
    assert got[10] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(got))


def test_linear_warmup_then_constant() -> None:
    got = lrs(*schedule(warmup=4), 7)
    assert got == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1])


def test_warmup_then_step() -> None:
    got = lrs(*schedule(type="step", warmup=2, gamma=0.5, step_size=2), 7)
    assert got == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025])


def test_cosine_after_warmup_still_reaches_zero_at_the_end_of_the_run() -> None:
    rate, _optimizer = schedule(total=10, type="cosine", warmup=4)
    assert rate.factor(3) == pytest.approx(1.0)
    assert rate.factor(10) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("higher_is_better", "values"),
    [
        (False, [1.0, 0.9, 0.95, 0.92, 0.85, 0.86]),
        (True, [0.1, 0.2, 0.15, 0.18, 0.25, 0.24]),
    ],
)
def test_plateau_cuts_the_lr_after_patience_bad_evaluations(
    higher_is_better: bool, values: list[float]
) -> None:
    rate, optimizer = schedule(
        type="plateau", patience=2, gamma=0.5, higher_is_better=higher_is_better
    )
    seen = []
    for step, value in enumerate(values):
        seen.append(rate.apply(step))
        rate.observe(value)
    # evaluations 1-2 improve, 3-4 do not (patience 2: lr halved), 5 improves, 6 does not
    assert seen == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
    assert rate.apply(len(values)) == pytest.approx(0.05)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_plateau_state_round_trips() -> None:
    rate, _ = schedule(type="plateau", patience=1, gamma=0.5)
    for value in (1.0, 2.0, 3.0):
        rate.observe(value)
    state = rate.state_dict()
    other, _ = schedule(type="plateau", patience=1, gamma=0.5)
    other.load_state_dict(state)
    assert other.factor(0) == rate.factor(0) == pytest.approx(0.25)
    assert other.state_dict() == state


def test_observe_is_ignored_by_other_schedules() -> None:
    rate, _ = schedule(type="step", gamma=0.5, step_size=100)
    for value in (1.0, 2.0, 3.0, 4.0):
        rate.observe(value)
    assert rate.factor(0) == 1.0


def test_every_parameter_group_is_scaled_from_its_own_base_lr() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])
    rate = LearningRate(ScheduleSpec(type="exponential", gamma=0.5), optimizer, 10, False)
    rate.apply(2)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.25, 0.025])


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("sgd", torch.optim.SGD),
        ("rmsprop", torch.optim.RMSprop),
        ("adagrad", torch.optim.Adagrad),
    ],
)
def test_make_optimizer(name: str, cls: type) -> None:
    spec = OptimizerSpec(type=name, lr=0.5, weight_decay=0.01)
    optimizer = make_optimizer(spec, [torch.nn.Parameter(torch.zeros(1))])
    assert type(optimizer) is cls
    assert optimizer.param_groups[0]["lr"] == 0.5
    assert optimizer.param_groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "adagrad"])
def test_fused_kernels_where_torch_has_them_with_the_same_updates(name: str) -> None:
    spec = OptimizerSpec(type=name, lr=0.01, weight_decay=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 3, generator=generator), torch.randn(4, generator=generator)]
    grads = [[torch.randn(t.shape, generator=generator) for t in start] for _ in range(3)]
    results = []
    for fused in (True, False):
        parameters = [torch.nn.Parameter(t.clone()) for t in start]
        optimizer = make_optimizer(spec, parameters)
        if not fused:  # the reference: torch's per-tensor implementation
            settings = {k: v for k, v in optimizer.defaults.items()
                        if k in ("lr", "weight_decay", "momentum", "betas")}
            optimizer = type(optimizer)(parameters, **settings)
        assert optimizer.defaults["fused"] is (True if fused else None)
        for step in grads:
            for p, g in zip(parameters, step, strict=True):
                p.grad = g.clone()
            optimizer.step()
        results.append(parameters)
    for fused, reference in zip(*results, strict=True):
        torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-6)


def test_rmsprop_and_unusual_parameters_use_the_default_implementation() -> None:
    rmsprop = make_optimizer(OptimizerSpec(type="rmsprop"), [torch.nn.Parameter(torch.zeros(1))])
    assert "fused" not in rmsprop.defaults
    integer = torch.nn.Parameter(torch.zeros(1, dtype=torch.int64), requires_grad=False)
    adam = make_optimizer(OptimizerSpec(type="adam"), [torch.nn.Parameter(torch.zeros(1)),
                                                        integer])
    assert adam.defaults["fused"] is None


def test_the_trainer_applies_the_schedule_every_update(tmp_path: Path) -> None:
    spec = make_spec(
        {
            "training": {
                "optimizer": {"lr": 0.01},
                "schedule": {"type": "step", "warmup": 2, "gamma": 0.5, "step_size": 1},
            }
        }
    )
    made = trainer(spec, tmp_path / "run")
    made.sampler.set_epoch(0)
    seen = []
    for indices in list(made.sampler)[:4]:
        values = made.update(collate_tokens([made.data.train[i] for i in indices]))
        seen.append(values["lr"])
        assert made.optimizer.param_groups[0]["lr"] == pytest.approx(values["lr"])
    assert seen == pytest.approx([0.005, 0.01, 0.01, 0.005])
