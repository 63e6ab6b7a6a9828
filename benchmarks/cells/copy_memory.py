"""The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky, Shah & Bengio 2015, §4.1):
uRNN vs LSTM at a long delay.

Input: 10 symbols drawn from {1..8}, then T − 1 blanks (0), the delimiter 9, and 10 more
blanks (T + 20 steps, one-hot). Target: T + 10 blanks, then the 10 symbols. The loss is the
cross-entropy averaged over all T + 20 steps; a model that outputs blanks and then guesses
uniformly scores the baseline ``10 log 8 / (T + 20)``. "Recall accuracy" is the accuracy on
the 10 symbols to be reproduced (chance: 1/8).

Models, as in the paper: ``urnn`` (this package, N = 128 complex units, real readout of
[Re h; Im h]) and ``lstm`` (torch.nn.LSTM, 128 units, forget-gate bias 1.0); ``irnn``
(128) optionally. Training: RMSProp (lr 1e-3, decay 0.9), batch 20, fresh random batches,
gradient-norm clipping at 1, the same seed and data for every model, a fixed number of
updates (with a wall-clock cap).

    python benchmarks/cells/copy_memory.py                  # T = 200, ~1–4 min per model
    python benchmarks/cells/copy_memory.py --delay 500 --name cells_copy_memory_T500

Writes ``benchmarks/results/cells_copy_memory.json``.
"""

from __future__ import annotations

import argparse
import math

import torch
from common import Budget, SequenceModel, TorchRNN, cell_layer, write_results
from torch import Tensor, nn

SYMBOLS, RECALL, CLASSES = 8, 10, 10


def batch(size: int, delay: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """x (B, T+20, 10) one-hot, y (B, T+20) class ids."""
    symbols = torch.randint(1, SYMBOLS + 1, (size, RECALL), generator=generator)
    steps = delay + 2 * RECALL
    ids = torch.zeros(size, steps, dtype=torch.long)
    ids[:, :RECALL] = symbols
    ids[:, RECALL + delay - 1] = SYMBOLS + 1  # the delimiter
    target = torch.zeros(size, steps, dtype=torch.long)
    target[:, -RECALL:] = symbols
    return nn.functional.one_hot(ids, CLASSES).float(), target


def make_model(name: str, hidden: int) -> nn.Module:
    if name == "lstm":
        return SequenceModel(TorchRNN("lstm", CLASSES, hidden, forget_bias=1.0), CLASSES)
    return SequenceModel(cell_layer(name, CLASSES, hidden), CLASSES)


def evaluate(model: nn.Module, test: tuple[Tensor, Tensor]) -> tuple[float, float]:
    x, y = test
    with torch.no_grad():
        logits = model(x)  # (B, T+20, K)
        loss = nn.functional.cross_entropy(logits.transpose(1, 2), y).item()
        recall = (logits[:, -RECALL:].argmax(-1) == y[:, -RECALL:]).float().mean().item()
    return loss, recall


def train(name: str, args: argparse.Namespace, test: tuple[Tensor, Tensor]) -> dict:
    torch.manual_seed(args.seed)
    model = make_model(name, args.hidden)
    optimiser = torch.optim.RMSprop(model.parameters(), lr=args.lr, alpha=0.9)
    generator = torch.Generator().manual_seed(args.seed + 1)
    budget = Budget(args.seconds)
    curve = []
    update = 0
    while update < args.updates and not budget.spent():
        x, y = batch(args.batch, args.delay, generator)
        loss = nn.functional.cross_entropy(model(x).transpose(1, 2), y)
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimiser.step()
        update += 1
        if update % args.eval_every == 0:
            test_loss, recall = evaluate(model, test)
            curve.append({"update": update, "seconds": round(budget.elapsed, 1),
                          "test_loss": test_loss, "recall_accuracy": recall})
            print(f"  {name:5s} update {update:5d}  {budget.elapsed:5.0f}s  "
                  f"test loss {test_loss:.4f}  recall accuracy {recall:.3f}", flush=True)
    test_loss, recall = evaluate(model, test)
    return {"model": name, "hidden": args.hidden,
            "parameters": sum(p.numel() for p in model.parameters()),
            "updates": update, "seconds": round(budget.elapsed, 1),
            "final_test_loss": test_loss, "final_recall_accuracy": recall, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delay", type=int, default=200, help="T")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--updates", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="wall-clock cap per model")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--models", default="urnn,lstm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--name", default="cells_copy_memory", help="results file name (no .json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    baseline = RECALL * math.log(SYMBOLS) / (args.delay + 2 * RECALL)
    test = batch(500, args.delay, torch.Generator().manual_seed(12345))
    runs = []
    for name in args.models.split(","):
        print(f"{name}: T = {args.delay}, hidden {args.hidden}", flush=True)
        runs.append(train(name, args, test))
    print(f"\ncopy memory, T = {args.delay} (baseline loss {baseline:.4f}, chance recall 0.125)")
    for run in runs:
        print(f"  {run['model']:5s} {run['parameters']:7,d} parameters, {run['updates']:5d} "
              f"updates in {run['seconds']:4.0f}s: test loss {run['final_test_loss']:.4f}, "
              f"recall accuracy {run['final_recall_accuracy']:.3f}")
    path = write_results(args.name, {"task": "copy-memory", "config": vars(args),
                                               "baseline_loss": baseline, "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
