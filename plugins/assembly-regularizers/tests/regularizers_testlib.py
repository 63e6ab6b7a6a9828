"""Helpers for the regulariser tests: small models, batches, a stand-in trainer and a
plain training loop (the trainer's order of calls, without data loading)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from assembly.build import build_model
from assembly.builtin.cells import GruSpec, LstmSpec
from assembly.plugin import RegularizerContext
from assembly.spec import AttentionSpec, BridgeSpec, DecoderSpec, EncoderSpec, Spec, TokenSideSpec
from torch import Tensor

VOCAB = 12


def small_spec(*, attention: bool = True, depth: int = 1, cell: str = "lstm",
               vocab: int = VOCAB, regularizers: tuple[Any, ...] = ()) -> Spec:
    """A small token model: bi-LSTM encoder (6 per direction), linear bridge, 16-unit
    decoder, optional additive attention."""
    cell_spec = LstmSpec() if cell == "lstm" else GruSpec()
    return Spec(
        depth=depth,
        source=TokenSideSpec(vocab_size=vocab, embedding=8),
        target=TokenSideSpec(vocab_size=vocab, embedding=8),
        encoder=EncoderSpec(cell=cell_spec, hidden=6, bidirectional=True),
        bridge=BridgeSpec(type="linear"),
        decoder=DecoderSpec(cell=cell_spec, hidden=16,
                            attention=AttentionSpec() if attention else None),
        regularizers=regularizers,
    )


def context_of(spec: Spec, registry: Any) -> RegularizerContext:
    """The context the trainer gives a regulariser of a model of ``spec``."""
    from assembly.plan import plan_model

    plan = plan_model(spec, registry)
    return RegularizerContext(
        encoder_sizes=tuple(layer.output_size for layer in plan.encoder),
        decoder_sizes=tuple(layer.output_size for layer in plan.decoder),
        output_size=plan.classes, token_mode=spec.token_mode)


def make_batch(source_lengths: list[int], target_lengths: list[int], seed: int = 0,
               vocab: int = VOCAB) -> SimpleNamespace:
    """A padded token batch like the trainer's: targets end with EOS (id 2)."""
    generator = torch.Generator().manual_seed(seed)

    def pad(lengths: list[int], eos: bool) -> Tensor:
        out = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
        for row, length in enumerate(lengths):
            out[row, :length] = torch.randint(4, vocab, (length,), generator=generator)
            if eos:
                out[row, length - 1] = 2
        return out

    return SimpleNamespace(source=pad(source_lengths, False),
                           source_lengths=torch.tensor(source_lengths),
                           target=pad(target_lengths, True),
                           target_lengths=torch.tensor(target_lengths))


def forward(model: Any, batch: SimpleNamespace) -> Any:
    return model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)


def fake_trainer(model: Any, optimizer: Any = None, step: int = 0) -> SimpleNamespace:
    """What a regulariser reads from the trainer."""
    return SimpleNamespace(model=model, optimizer=optimizer, step=step, epoch=0,
                           device=torch.device("cpu"), spec=None)


def build(registry: Any, spec: Any, model_spec: Spec) -> Any:
    """The regulariser of ``spec`` as the trainer builds it."""
    record = registry.record_of(spec)
    return record.build(spec, context_of(model_spec, registry))


def train_loop(model: Any, regularizers: list[Any], batches: list[SimpleNamespace],
               lr: float = 1e-2) -> SimpleNamespace:
    """The trainer's order of calls over ``batches``; returns the stand-in trainer."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    trainer = fake_trainer(model, optimizer)
    for regularizer in regularizers:
        regularizer.on_train_start(trainer)
    for batch in batches:
        model.train()
        outputs = forward(model, batch)
        total, count = model.loss(outputs, batch.target)
        loss = total / count
        for regularizer in regularizers:
            loss = loss + regularizer.penalty(outputs, batch, trainer)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        trainer.step += 1
        for regularizer in regularizers:
            regularizer.after_update(trainer)
    for regularizer in regularizers:
        regularizer.on_train_end(trainer)
    return trainer


def new_model(registry: Any, spec: Spec, seed: int = 0) -> Any:
    return build_model(spec, registry, seed=seed)
