"""Norm stabiliser (Krueger & Memisevic 2015): steadier hidden-state norms, and (their
claim) better accuracy on sequences longer than any seen in training.

An attentional LSTM reverses sequences of 3–10 symbols; it is tested on 15–20 symbols.
β = 0 (no penalty) against β > 0 on the encoder and decoder states, several seeds each,
same data and schedule. Reported: exact match and token accuracy (greedy) on dev
(lengths 3–10) and on the long test set, and the steadiness of the decoder's top-layer
norms on the long test set (teacher-forced): the mean over sequences of
std_t ‖h_t‖ / mean_t ‖h_t‖ and of mean_t |‖h_t‖ − ‖h_{t−1}‖|.

    python benchmarks/regularizers/norm_stabilizer.py  # 6 runs, ~8 min on a busy 2-core machine
    python benchmarks/regularizers/norm_stabilizer.py --quick  # a smoke run
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from regbench import (
    mean,
    registry,
    report,
    summarise,
    teacher_forced,
    token_dataset,
    train,
    write_result,
)


def make_spec(beta: float, seed: int, epochs: int, train_size: int) -> Any:
    from assembly_regularizers import NormStabilizerSpec

    from assembly.builtin.cells import LstmSpec
    from assembly.spec import (
        AttentionSpec,
        DataSpec,
        DecoderSpec,
        EncoderSpec,
        OptimizerSpec,
        Spec,
        TokenSideSpec,
        TrainingSpec,
    )

    regularizers = (NormStabilizerSpec(targets=("encoder", "decoder"), beta=beta),) \
        if beta > 0 else ()
    return Spec(
        name=f"reverse-beta{beta:g}-seed{seed}",
        source=TokenSideSpec(embedding=32), target=TokenSideSpec(embedding=32),
        encoder=EncoderSpec(cell=LstmSpec(), hidden=64),
        decoder=DecoderSpec(cell=LstmSpec(), hidden=64, attention=AttentionSpec()),
        regularizers=regularizers,
        training=TrainingSpec(seed=seed, epochs=epochs, batch_size=64,
                              optimizer=OptimizerSpec(lr=3e-3)),
        data=DataSpec(task="reverse", train_size=train_size, dev_size=300, test_size=10,
                      min_length=3, max_length=10, symbols=12, seed=seed),
    )


@torch.no_grad()
def norm_steadiness(model: Any, dataset: Any) -> dict[str, float]:
    """Per sequence, over its valid steps: std/mean of ‖h_t‖ and mean |Δ‖h_t‖| of the top
    decoder layer (teacher-forced, eval mode); averaged over sequences."""
    ratios, jumps, late = [], [], []
    for _, outputs in teacher_forced(model, dataset):
        norms = outputs.decoder_outputs.norm(dim=-1)  # (B, T)
        for row, length in enumerate(outputs.mask.sum(1).tolist()):
            n = norms[row, :length]
            ratios.append(float(n.std(unbiased=False) / n.mean()))
            jumps.append(float((n[1:] - n[:-1]).abs().mean()))
            late.append(float(n[11:].mean() / n[:11].mean()) if length > 11 else float("nan"))
    return {"norm_cv": mean(ratios), "norm_step_change": mean(jumps),
            "norm_late_over_early": mean([x for x in late if x == x])}


def evaluate_run(trainer: Any, long_pairs: list[Any]) -> dict[str, float]:
    from assembly.evaluate import evaluate

    model = trainer.model
    data = trainer.data
    long_set = token_dataset(long_pairs, data.source_vocab, data.target_vocab)
    names = ("token_accuracy", "exact_match")
    dev, _ = evaluate(model, data.dev, trainer.decoder, target_vocab=data.target_vocab,
                      metrics=names, with_loss=False)
    long, _ = evaluate(model, long_set, trainer.decoder, target_vocab=data.target_vocab,
                       metrics=names, with_loss=False)
    return {"dev_exact_match": dev["exact_match"], "dev_token_accuracy": dev["token_accuracy"],
            "long_exact_match": long["exact_match"],
            "long_token_accuracy": long["token_accuracy"],
            **{f"long_{k}": v for k, v in norm_steadiness(model, long_set).items()},
            **{f"dev_{k}": v for k, v in norm_steadiness(model, data.dev).items()
               if k != "norm_late_over_early"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args()
    if args.quick:
        args.betas, args.seeds, args.epochs, args.train_size = [0.0, 10.0], [1], 1, 500
    torch.set_num_threads(args.threads)
    from assembly.data import generate_pairs

    reg = registry()
    long_pairs = generate_pairs("reverse", 300, seed=99, min_length=15, max_length=20,
                                symbols=12)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for beta in args.betas:
            for seed in args.seeds:
                spec = make_spec(beta, seed, args.epochs, args.train_size)
                trainer, result, seconds = train(spec, Path(tmp) / spec.name, reg)
                row = {"beta": beta, "seed": seed, "updates": result.updates,
                       "seconds": round(seconds, 1), **evaluate_run(trainer, long_pairs)}
                runs.append(row)
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()},
                      flush=True)
    summary = summarise(runs, "beta", args.betas, 4)
    path = write_result("regularizers_norm_stabilizer", {
        "task": "reverse, train lengths 3-10, long test lengths 15-20, 12 symbols",
        "model": "attentional LSTM 64/64, embeddings 32, Adam 3e-3, batch 64",
        "penalty": "norm-stabilizer on every encoder and decoder layer",
        "epochs": args.epochs, "train_size": args.train_size, "quick": args.quick,
        "summary": summary, "runs": runs})
    report(path, summary)


if __name__ == "__main__":
    main()
