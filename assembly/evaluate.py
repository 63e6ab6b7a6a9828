"""Evaluate a model on a dataset: decode it and compute the metrics, plus the loss."""

from __future__ import annotations

from typing import Any

import torch

from assembly.data import detokenize
from assembly.decode.generate import decode_batches
from assembly.metrics import compute_metrics


@torch.no_grad()
def dataset_loss(model: Any, dataset: Any, batch_size: int, device: Any) -> float:
    """Mean per-token teacher-forced loss over a dataset (eval mode, no dropout)."""
    from assembly.data.batching import BucketBatchSampler, make_loader

    collate = _collate(model)
    sampler = BucketBatchSampler(dataset.target_lengths, batch_size, shuffle=False,
                                 source_lengths=dataset.source_lengths)
    total, count = 0.0, 0
    for batch in make_loader(dataset, sampler, collate):
        batch = batch.to(device)
        outputs = model(batch.source, batch.source_lengths, batch.target, batch.target_lengths)
        loss, n = model.loss(outputs, batch.target)
        total += float(loss)
        count += int(n)
    return total / max(count, 1)


def _collate(model: Any) -> Any:
    from assembly.data.batching import collate_arrays, collate_tokens

    return collate_tokens if model.token_mode else collate_arrays


@torch.no_grad()
def evaluate(model: Any, dataset: Any, sampler: Any, *, target_vocab: Any = None,
             tokenizer: str = "whitespace", batch_size: int = 500, seed: int | None = None,
             metrics: tuple[str, ...] | None = None, with_loss: bool = True
             ) -> tuple[dict[str, float], list[Any]]:
    """(metrics, per-example best hypotheses) of ``model`` on ``dataset``.

    Token mode: token accuracy, exact match, BLEU, chrF, CER, WER over the detokenised
    best hypotheses; continuous mode: mean squared error of the decoded vectors over the
    overlapping steps. ``loss``: mean teacher-forced loss per target step."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        sources = [dataset[i].source for i in range(len(dataset))]
        decoded = decode_batches(model, sampler, sources, batch_size, seed, device)
        results: dict[str, float] = {}
        if model.token_mode:
            hyps = [target_vocab.decode(d[0][0]) for d in decoded]
            refs = [target_vocab.decode(dataset[i].target) for i in range(len(dataset))]
            join = "" if tokenizer == "char" else " "
            names = metrics or ("token_accuracy", "exact_match", "bleu", "chrf", "cer", "wer")
            results.update(compute_metrics(hyps, refs, names=names, join=join))
            best: list[Any] = [detokenize(h, tokenizer) for h in hyps]
        else:
            errors = []
            for i, d in enumerate(decoded):
                predicted = d[3][0]
                target = torch.as_tensor(dataset[i].target)
                steps = min(len(predicted), len(target))
                errors.append(float(((predicted[:steps] - target[:steps]) ** 2).mean()))
            results["mse"] = sum(errors) / max(len(errors), 1)
            best = [d[3][0] for d in decoded]
        if with_loss:
            results["loss"] = dataset_loss(model, dataset, batch_size, device)
        return results, best
    finally:
        model.train(was_training)
