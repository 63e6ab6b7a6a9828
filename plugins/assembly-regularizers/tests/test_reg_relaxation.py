"""relaxation: the pull term, its gradient, the set rotation, the final average, the
schedule and exact resume."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from regularizers_testlib import (
    build,
    fake_trainer,
    forward,
    make_batch,
    new_model,
    small_spec,
    train_loop,
)

from assembly_regularizers import RelaxationSpec
from assembly_regularizers.relaxation import pull_at

SPEC = RelaxationSpec(sets=3, pull_start=0.1, pull_growth=2.0, pull_every=2, pull_max=0.5)


def _setup(registry: Any, spec: RelaxationSpec = SPEC) -> tuple[Any, Any, Any, Any]:
    model_spec = small_spec(attention=False)
    model = new_model(registry, model_spec)
    regularizer = build(registry, spec, model_spec)
    trainer = fake_trainer(model)
    regularizer.on_train_start(trainer)
    return model, regularizer, trainer, make_batch([4, 2], [3, 5])


def _perturb(regularizer: Any, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for stored in regularizer.others():
        for tensor in stored:
            tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))


def test_the_pull_is_zero_while_the_sets_are_equal(registry: Any) -> None:
    model, regularizer, trainer, batch = _setup(registry)
    outputs = forward(model, batch)
    assert regularizer.pull == pytest.approx(0.1)
    assert float(regularizer.penalty(outputs, batch, trainer).detach()) == 0.0


def test_the_pull_term_and_its_gradient_match_the_formula(registry: Any) -> None:
    model, regularizer, trainer, batch = _setup(registry)
    _perturb(regularizer)
    params = [p for p in model.parameters() if p.requires_grad]
    sets = [[p.detach().clone() for p in params], *regularizer.others()]
    expected, gradients = 0.0, []
    for k in range(len(params)):
        mean = sum(s[k].double() for s in sets) / len(sets)
        expected += sum(float(((s[k].double() - mean) ** 2).sum()) for s in sets)
        gradients.append(2 * 0.1 * (sets[0][k].double() - mean))
    penalty = regularizer.penalty(forward(model, batch), batch, trainer)
    assert float(penalty.detach()) == pytest.approx(0.1 * expected, rel=1e-5)
    model.zero_grad()
    penalty.backward()
    for parameter, gradient in zip(params, gradients, strict=True):
        assert torch.allclose(parameter.grad.double(), gradient, atol=1e-6)


def test_the_sets_take_turns_and_are_averaged_at_the_end(registry: Any) -> None:
    model, regularizer, trainer, _ = _setup(registry)
    _perturb(regularizer)
    params = [p for p in model.parameters() if p.requires_grad]
    first = [p.detach().clone() for p in params]
    second = [t.clone() for t in regularizer.sets[1]]
    regularizer.after_update(trainer)
    assert regularizer.live == 1
    assert all(torch.equal(p, s) for p, s in zip(params, second, strict=True))
    assert all(torch.equal(p, s) for p, s in zip(regularizer.sets[0], first, strict=True))
    regularizer.after_update(trainer)
    regularizer.after_update(trainer)
    assert regularizer.live == 0
    assert all(torch.equal(p, s) for p, s in zip(params, first, strict=True))
    everything = [[p.detach().clone() for p in params], *regularizer.others()]
    mean = [sum(s[k] for s in everything) / 3 for k in range(len(params))]
    regularizer.on_train_end(trainer)
    for parameter, expected in zip(params, mean, strict=True):
        assert torch.allclose(parameter, expected, atol=1e-7)
    assert regularizer.final_weights


def test_the_pull_rises_on_its_schedule_and_stops_at_the_maximum() -> None:
    assert [pull_at(SPEC, u) for u in range(8)] == pytest.approx(
        [0.1, 0.1, 0.2, 0.2, 0.4, 0.4, 0.5, 0.5])
    huge = RelaxationSpec(pull_start=1.0, pull_growth=10.0, pull_every=1, pull_max=3.0)
    assert pull_at(huge, 10_000) == 3.0


def test_training_with_it_differs_per_set_and_resumes_exactly(registry: Any) -> None:
    batches = [make_batch([5, 3, 4], [4, 6, 3], seed=s) for s in range(6)]
    model_spec = small_spec(attention=False)

    def fresh() -> tuple[Any, Any, Any]:
        model = new_model(registry, model_spec, seed=1)
        regularizer = build(registry, SPEC, model_spec)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        return model, regularizer, optimizer

    def run(model: Any, regularizer: Any, optimizer: Any, chunk: list[Any], step: int) -> None:
        trainer = fake_trainer(model, optimizer, step)
        if step == 0:
            regularizer.on_train_start(trainer)
        for batch in chunk:
            outputs = forward(model, batch)
            total, count = model.loss(outputs, batch.target)
            loss = total / count + regularizer.penalty(outputs, batch, trainer)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            regularizer.after_update(trainer)

    whole = fresh()
    run(*whole, batches, 0)
    assert float(sum(((a - b) ** 2).sum() for a, b in zip(
        whole[1].others()[0], whole[1].others()[1], strict=True))) > 0
    first = fresh()
    run(*first, batches[:3], 0)
    saved = ({k: v.clone() for k, v in first[0].state_dict().items()},
             first[2].state_dict(), first[1].state_dict())
    second = fresh()
    second[0].load_state_dict(saved[0])
    second[2].load_state_dict(saved[1])
    second[1].load_state_dict(saved[2])
    run(*second, batches[3:], 3)
    assert second[1].live == whole[1].live and second[1].updates == whole[1].updates == 6
    for a, b in zip(whole[0].parameters(), second[0].parameters(), strict=True):
        assert torch.equal(a, b)
    for mine, theirs in zip(whole[1].others(), second[1].others(), strict=True):
        assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))


def test_a_loop_with_it_trains(registry: Any) -> None:
    model_spec = small_spec(attention=False)
    model = new_model(registry, model_spec)
    regularizer = build(registry, SPEC, model_spec)
    batches = [make_batch([5, 3, 4], [4, 6, 3], seed=s) for s in range(4)]
    trainer = train_loop(model, [regularizer], batches)
    assert trainer.step == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("make", [
    lambda: RelaxationSpec(sets=1),
    lambda: RelaxationSpec(pull_growth=0.5),
    lambda: RelaxationSpec(pull_every=0),
    lambda: RelaxationSpec(pull_start=-1.0),
])
def test_specs_refuse_bad_values(make: Any) -> None:
    with pytest.raises(ValueError):
        make()
