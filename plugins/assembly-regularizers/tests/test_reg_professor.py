"""professor-forcing: the free run, the generator penalty, the discriminator update, and
that neither side's gradient reaches the other."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from regularizers_testlib import build, fake_trainer, forward, make_batch, new_model, small_spec

from assembly_regularizers import ProfessorForcingSpec
from assembly_regularizers.professor import free_run

SPEC = ProfessorForcingSpec(factor=2.0, discriminator_hidden=8, lr=1e-2)


@pytest.mark.parametrize("cell, attention", [("lstm", True), ("gru", False)])
def test_the_step_api_reproduces_the_teacher_forced_top_states(registry: Any, cell: str,
                                                                attention: bool) -> None:
    """The free run reads the top layer's state; fed the targets it must give exactly the
    teacher-forced pass's decoder_outputs."""
    model = new_model(registry, small_spec(cell=cell, attention=attention, depth=2)).eval()
    batch = make_batch([5, 3, 6], [4, 6, 2])
    outputs = forward(model, batch)
    memory, encoded = model.encode(batch.source, batch.source_lengths)
    state = model.start(memory, encoded)
    previous = model.first_input(3, memory.values)
    for t in range(batch.target.shape[1]):
        state = model.step(previous, state, memory).state
        valid = outputs.mask[:, t]
        assert torch.allclose(state.layers[-1][0][valid], outputs.decoder_outputs[valid, t],
                              atol=1e-5)
        previous = batch.target[:, t]


def test_the_penalty_is_minus_log_d_of_the_free_run(registry: Any) -> None:
    model_spec = small_spec()
    model = new_model(registry, model_spec).eval()  # no dropout: the free run is fixed
    regularizer = build(registry, SPEC, model_spec)
    batch = make_batch([5, 3, 6], [4, 6, 2])
    outputs = forward(model, batch)
    penalty = regularizer.penalty(outputs, batch, fake_trainer(model))
    free = free_run(model, batch, outputs.mask.shape[1])
    logits = regularizer.discriminator(free, outputs.mask.sum(1))
    expected = 2.0 * float(-F.logsigmoid(logits.detach()).mean())
    assert float(penalty.detach()) == pytest.approx(expected, rel=1e-5)
    assert regularizer.name == "professor-forcing"


def test_free_running_feeds_back_the_greedy_tokens(registry: Any) -> None:
    model = new_model(registry, small_spec()).eval()
    batch = make_batch([4, 2], [5, 3])
    sampler = registry.get("sampler", "greedy")
    greedy = sampler.build(sampler.spec(max_length=5)).decode(model, batch.source,
                                                              batch.source_lengths)
    # replay the greedy tokens through the step API: the free run's states must match
    free = free_run(model, batch, 3)
    memory, encoded = model.encode(batch.source, batch.source_lengths)
    state = model.start(memory, encoded)
    previous = model.first_input(2, memory.values)
    for t in range(3):
        result = model.step(previous, state, memory)
        state = result.state
        assert torch.allclose(free[:, t], state.layers[-1][0], atol=1e-6)
        previous = result.scores.argmax(-1)
        for row in range(2):
            tokens = greedy.tokens[row][0]
            if t < len(tokens):
                assert int(previous[row]) == tokens[t]


def test_generator_gradient_never_reaches_the_discriminator(registry: Any) -> None:
    model_spec = small_spec()
    model = new_model(registry, model_spec)
    regularizer = build(registry, SPEC, model_spec)
    batch = make_batch([5, 3, 6], [4, 6, 2])
    penalty = regularizer.penalty(forward(model, batch), batch, fake_trainer(model))
    penalty.backward()
    assert all(p.grad is None for p in regularizer.discriminator.parameters())
    decoder = [p.grad for name, p in model.named_parameters() if name.startswith("decoder.")]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in decoder)
    output = [p.grad for name, p in model.named_parameters() if name.startswith("output.")]
    assert all(g is None or float(g.abs().sum()) == 0 for g in output)  # choices are detached


def test_discriminator_update_never_touches_the_model(registry: Any) -> None:
    model_spec = small_spec()
    model = new_model(registry, model_spec)
    regularizer = build(registry, SPEC, model_spec)
    trainer = fake_trainer(model)
    regularizer.on_train_start(trainer)
    batch = make_batch([5, 3, 6], [4, 6, 2])
    regularizer.penalty(forward(model, batch), batch, trainer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    judged = [p.detach().clone() for p in regularizer.discriminator.parameters()]
    regularizer.after_update(trainer)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in
               zip(judged, regularizer.discriminator.parameters(), strict=True))
    assert regularizer.discriminator_updates == 1


def test_the_discriminator_learns_to_tell_the_runs_apart(registry: Any) -> None:
    model_spec = small_spec()
    model = new_model(registry, model_spec).eval()
    regularizer = build(registry, SPEC, model_spec)
    trainer = fake_trainer(model)
    batch = make_batch([5, 3, 6, 4, 2, 6], [6, 6, 5, 6, 4, 6], seed=3)
    outputs = forward(model, batch)
    for _ in range(60):
        regularizer.penalty(outputs, batch, trainer)
        regularizer.after_update(trainer)
    assert regularizer.last_accuracy == 1.0
    generator_loss = regularizer.penalty(outputs, batch, trainer)
    assert float(generator_loss.detach()) > 2.0 * 0.6931  # D believes the free run is fake


def test_warmup_holds_the_penalty_back(registry: Any) -> None:
    model_spec = small_spec()
    model = new_model(registry, model_spec)
    regularizer = build(registry, ProfessorForcingSpec(warmup=1), model_spec)
    trainer = fake_trainer(model)
    batch = make_batch([3, 2], [4, 2])
    assert float(regularizer.penalty(forward(model, batch), batch, trainer).detach()) == 0.0
    regularizer.after_update(trainer)
    assert float(regularizer.penalty(forward(model, batch), batch, trainer).detach()) > 0.0


def test_the_discriminator_and_its_adam_survive_a_state_round_trip(registry: Any) -> None:
    model_spec = small_spec()
    model = new_model(registry, model_spec)
    first = build(registry, SPEC, model_spec)
    trainer = fake_trainer(model)
    batch = make_batch([5, 3], [4, 6])
    for _ in range(2):
        first.penalty(forward(model, batch), batch, trainer)
        first.after_update(trainer)
    second = build(registry, SPEC, model_spec)
    second.load_state_dict(first.state_dict())
    assert second.discriminator_updates == 2
    for mine in (first, second):
        torch.manual_seed(0)
        mine.penalty(forward(model, batch), batch, trainer)
        mine.after_update(trainer)
    for a, b in zip(first.discriminator.parameters(), second.discriminator.parameters(),
                    strict=True):
        assert torch.equal(a, b)


def test_sampled_free_running_is_seeded_by_torch(registry: Any) -> None:
    model = new_model(registry, small_spec()).eval()
    batch = make_batch([5, 3], [4, 6])
    torch.manual_seed(5)
    a = free_run(model, batch, 6, "sample")
    torch.manual_seed(5)
    b = free_run(model, batch, 6, "sample")
    assert torch.equal(a, b)
    assert not torch.allclose(a, free_run(model, batch, 6, "greedy"))
