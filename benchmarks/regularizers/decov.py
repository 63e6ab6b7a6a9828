"""DeCov (Cogswell et al. 2015) lowers the off-diagonal covariance of the layer it
regularises.

An attentional LSTM (64 units) learns to reverse 3–10 symbols, with DeCov on the top
decoder layer at several factors (0 = off), two seeds each. Measured on the dev set
(teacher-forced, eval mode, every valid decoder step one observation) for the top
decoder layer: the DeCov value ½(‖C‖²_F − ‖diag C‖²), the mean |off-diagonal
correlation| (scale-free: DeCov could also just shrink the activations), the mean
variance (diag C), and dev exact match (greedy) to show what it costs.

    python benchmarks/regularizers/decov.py  # 6 runs, ~8 min on a busy 2-core machine
    python benchmarks/regularizers/decov.py --quick
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from regbench import registry, report, summarise, teacher_forced, train, write_result


def make_spec(factor: float, seed: int, epochs: int, train_size: int) -> Any:
    from assembly_regularizers import DecovSpec

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

    regularizers = (DecovSpec(layer="decoder", factor=factor),) if factor > 0 else ()
    return Spec(
        name=f"reverse-decov{factor:g}-seed{seed}",
        source=TokenSideSpec(embedding=32), target=TokenSideSpec(embedding=32),
        encoder=EncoderSpec(cell=LstmSpec(), hidden=64),
        decoder=DecoderSpec(cell=LstmSpec(), hidden=64, attention=AttentionSpec()),
        regularizers=regularizers,
        training=TrainingSpec(seed=seed, epochs=epochs, batch_size=64,
                              optimizer=OptimizerSpec(lr=3e-3)),
        data=DataSpec(task="reverse", train_size=train_size, dev_size=500, test_size=10,
                      min_length=3, max_length=10, symbols=12, seed=seed),
    )


@torch.no_grad()
def layer_statistics(model: Any, dataset: Any) -> dict[str, float]:
    """Covariance statistics of the top decoder layer over every valid dev step."""
    from assembly_regularizers.penalties import covariance, decov_penalty

    states = []
    for _, outputs in teacher_forced(model, dataset):
        states.append(outputs.decoder_outputs[outputs.mask])  # (N_b, H)
    x = torch.cat(states)[:, None, :]  # (N, 1, H): each step one observation
    mask = torch.ones(x.shape[0], 1, dtype=torch.bool)
    c = covariance(x, mask)
    std = c.diagonal().clamp(min=1e-12).sqrt()
    correlation = c / (std[:, None] * std[None, :])
    off = ~torch.eye(c.shape[0], dtype=torch.bool)
    return {"decov": float(decov_penalty(x, mask)),
            "mean_abs_offdiag_correlation": float(correlation[off].abs().mean()),
            "mean_abs_offdiag_covariance": float(c[off].abs().mean()),
            "mean_variance": float(c.diagonal().mean()), "observations": int(x.shape[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=float, nargs="+", default=[0.0, 0.1, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.factors, args.seeds, args.epochs, args.train_size = [0.0, 1.0], [1], 1, 500
    torch.set_num_threads(args.threads)
    from assembly.evaluate import evaluate

    reg = registry()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for factor in args.factors:
            for seed in args.seeds:
                spec = make_spec(factor, seed, args.epochs, args.train_size)
                trainer, result, seconds = train(spec, Path(tmp) / spec.name, reg)
                dev, _ = evaluate(trainer.model, trainer.data.dev, trainer.decoder,
                                  target_vocab=trainer.data.target_vocab,
                                  metrics=("exact_match",), with_loss=False)
                row = {"factor": factor, "seed": seed, "updates": result.updates,
                       "seconds": round(seconds, 1), "dev_exact_match": dev["exact_match"],
                       **layer_statistics(trainer.model, trainer.data.dev)}
                runs.append(row)
                print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()},
                      flush=True)
    summary = summarise(runs, "factor", args.factors, 5)
    path = write_result("regularizers_decov", {
        "task": "reverse, lengths 3-10, 12 symbols",
        "model": "attentional LSTM 64/64, embeddings 32, Adam 3e-3, batch 64",
        "penalty": "decov on the top decoder layer",
        "epochs": args.epochs, "train_size": args.train_size, "quick": args.quick,
        "summary": summary, "runs": runs})
    report(path, summary)


if __name__ == "__main__":
    main()
