"""Padding is masked everywhere: a sequence gives the same encoder outputs, decoder
predictions and attention alone as inside a mixed-length batch, whatever its companions
and whatever the padding holds — through the teacher-forced forward and the step API."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from assembly.build import build_model
from assembly.builtin.cells import GruSpec
from assembly.plan import plan_model
from assembly.registry import make_registry
from assembly.spec import AttentionSpec, BridgeSpec, ContinuousSpec, PeekSpec, Spec
from assembly.testing import Batch, make_spec, random_batch

REGISTRY = make_registry(entrypoints=False, strict=True)
ATOL = 1e-5

CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "bidirectional-concat": {"depth": 2, "encoder__bidirectional": True,
                             "bridge": BridgeSpec(type="linear")},
    "bidirectional-sum-gru": {"encoder__bidirectional": True, "encoder__merge": "sum",
                              "encoder__cell": GruSpec(), "decoder__cell": GruSpec()},
    "attention-after-feeding": {"encoder__bidirectional": True,
                                "decoder__attention": AttentionSpec(input_feeding=True)},
    "attention-before-all": {"depth": (1, 2), "decoder__attention": AttentionSpec(
        score="concat", position="before", query="all")},
    "attention-dot": {"decoder__attention": AttentionSpec(score="dot")},
    "attention-general-inner-sync": {"depth": 3, "decoder__inner_sync": True,
                                     "decoder__attention": AttentionSpec(score="general")},
    "peek-concat": {"decoder__peek": PeekSpec(mode="concat"),
                    "bridge": BridgeSpec(type="linear-tanh")},
    "peek-add": {"encoder__bidirectional": True, "decoder__peek": PeekSpec(mode="add")},
    "peek-projected-add": {"decoder__peek": PeekSpec(mode="projected-add"),
                           "bridge": BridgeSpec(type="zero")},
    "continuous-fixed": {"mode": "continuous",
                         "continuous": ContinuousSpec(input_dim=3, output_dim=2,
                                                      output_length=6),
                         "encoder__bidirectional": True,
                         "decoder__attention": AttentionSpec()},
    "continuous-stop": {"mode": "continuous",
                        "continuous": ContinuousSpec(input_dim=3, output_dim=2),
                        "decoder__peek": PeekSpec()},
}


def _spec(name: str) -> Spec:
    return make_spec(registry=REGISTRY, **CONFIGS[name])


def _model(spec: Spec) -> Any:
    model = build_model(plan_model(spec, REGISTRY), REGISTRY, seed=0)
    return model.eval()


def _junk_padding(spec: Spec, batch: Batch, seed: int) -> Batch:
    """The same batch with random values (not PAD / zeros) in every padded position."""
    generator = torch.Generator().manual_seed(seed)

    def fill(values: torch.Tensor, lengths: torch.Tensor, vocab: int | None) -> torch.Tensor:
        steps = values.shape[1]
        padded = torch.arange(steps)[None, :] >= lengths[:, None]  # (B, T)
        if vocab is not None:
            junk = torch.randint(4, vocab, values.shape, generator=generator)
            return torch.where(padded, junk, values)
        junk = torch.randn(values.shape, generator=generator) * 10
        return torch.where(padded[..., None], junk, values)

    vocab = (spec.source.vocab_size, spec.target.vocab_size) if spec.token_mode else (None, None)
    return Batch(fill(batch.source, batch.source_lengths, vocab[0]), batch.source_lengths,
                 fill(batch.target, batch.target_lengths, vocab[1]), batch.target_lengths)


def _batch(spec: Spec, seed: int = 0) -> Batch:
    return random_batch(spec, batch=4, source_steps=7, target_steps=6, seed=seed,
                        source_lengths=[7, 2, 5, 1], target_lengths=[3, 6, 1, 4],
                        registry=REGISTRY)


def _teacher_forced(model: Any, batch: Batch) -> Any:
    with torch.no_grad():
        return model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)


def _stepped(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step-API scores (B, T, V) and attention (B, T, S), fed the batch's targets."""
    with torch.no_grad():
        memory, encoded = model.encode(batch.source, batch.source_lengths)
        state = model.start(memory, encoded)
        previous = model.first_input(len(batch.source_lengths), memory.values)
        scores, weights = [], []
        for t in range(batch.target.shape[1]):
            result = model.step(previous, state, memory)
            state = result.state
            scores.append(result.scores)
            if result.attention is not None:
                weights.append(result.attention)
            previous = batch.target[:, t]
    return torch.stack(scores, 1), (torch.stack(weights, 1) if weights else None)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_sequence_alone_and_in_a_batch(name: str) -> None:
    spec = _spec(name)
    model = _model(spec)
    batch = _batch(spec)
    together = _teacher_forced(model, batch)
    stepped, stepped_weights = _stepped(model, batch)
    for row in range(len(batch.source_lengths)):
        s, t = int(batch.source_lengths[row]), int(batch.target_lengths[row])
        alone_batch = batch.row(row)
        alone = _teacher_forced(model, alone_batch)
        torch.testing.assert_close(alone.encoder.outputs[0], together.encoder.outputs[row, :s],
                                   atol=ATOL, rtol=0)
        for mine, theirs in zip(alone.encoder.states, together.encoder.states, strict=True):
            for a, b in zip(mine, theirs, strict=True):
                torch.testing.assert_close(a[0], b[row], atol=ATOL, rtol=0)
        torch.testing.assert_close(alone.encoder.summary[0], together.encoder.summary[row],
                                   atol=ATOL, rtol=0)
        torch.testing.assert_close(alone.predictions[0], together.predictions[row, :t],
                                   atol=ATOL, rtol=0)
        if together.attention is not None:
            torch.testing.assert_close(alone.attention[0], together.attention[row, :t, :s],
                                       atol=ATOL, rtol=0)
            assert bool((together.attention[row, :t, s:] == 0).all())
        if together.stop_logits is not None:
            torch.testing.assert_close(alone.stop_logits[0], together.stop_logits[row, :t],
                                       atol=ATOL, rtol=0)
        alone_steps, alone_weights = _stepped(model, alone_batch)
        torch.testing.assert_close(alone_steps[0], stepped[row, :t], atol=ATOL, rtol=0)
        if stepped_weights is not None:
            assert alone_weights is not None
            torch.testing.assert_close(alone_weights[0], stepped_weights[row, :t, :s],
                                       atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_what_the_padding_holds_does_not_matter(name: str) -> None:
    spec = _spec(name)
    model = _model(spec)
    batch = _batch(spec)
    clean = _teacher_forced(model, batch)
    dirty = _teacher_forced(model, _junk_padding(spec, batch, seed=5))
    mask = clean.mask
    torch.testing.assert_close(dirty.predictions[mask], clean.predictions[mask], atol=ATOL,
                               rtol=0)
    source_mask = clean.encoder.mask
    torch.testing.assert_close(dirty.encoder.outputs[source_mask],
                               clean.encoder.outputs[source_mask], atol=ATOL, rtol=0)
    assert bool((clean.encoder.outputs[~source_mask] == 0).all())


@pytest.mark.parametrize("name", ["attention-after-feeding", "peek-add", "continuous-stop"])
def test_companions_do_not_change_a_row(name: str) -> None:
    spec = _spec(name)
    model = _model(spec)
    first, second = _batch(spec, seed=1), _batch(spec, seed=2)
    # the same row 0 with different companions
    mixed = Batch(torch.cat([first.source[:1], second.source[1:]]), first.source_lengths,
                  torch.cat([first.target[:1], second.target[1:]]), first.target_lengths)
    a, b = _teacher_forced(model, first), _teacher_forced(model, mixed)
    t = int(first.target_lengths[0])
    torch.testing.assert_close(a.predictions[0, :t], b.predictions[0, :t], atol=ATOL, rtol=0)
