"""The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015, §4.1):
IRNN vs a tanh RNN (and an LSTM).

Each input step has two channels: a value drawn from U(0, 1) and a marker; exactly two
steps are marked, one in each half of the sequence. The target is the sum of the two marked
values, read from the last step's output. Predicting the constant 1 gives MSE ≈ 0.167
(the variance of the sum), the baseline a model must beat to have learned anything.

Models (hidden 100 as in the paper): ``irnn`` (this package: W_h = I, b = 0,
W_x ~ N(0, 0.001²), ReLU), ``tanh-rnn`` (torch.nn.RNN, torch's default initialisation),
``lstm`` (torch.nn.LSTM, forget-gate bias 1.0). Training: Adam (lr 1e-3), batch 64,
gradient-norm clipping at 1, 4,000 updates on fresh random batches, the same seed and data
for every model; the test MSE on 1,000 fixed sequences is recorded along the way. (The
paper used SGD with a searched learning rate and clipping, batch 16, for up to 10⁶
updates; see benchmarks/cells/README.md for the deviations.)

    python benchmarks/cells/adding.py                     # T = 100, ~2–3 min per model
    python benchmarks/cells/adding.py --length 150 --updates 8000
    python benchmarks/cells/adding.py --optimizer sgd --lr 0.01 --clip 10 --batch 16

Writes ``benchmarks/results/cells_adding.json``.
"""

from __future__ import annotations

import argparse

import torch
from common import Budget, SequenceModel, TorchRNN, cell_layer, write_results
from torch import Tensor, nn

BASELINE = 1.0 / 6.0  # Var(U1 + U2): the MSE of always predicting 1


def batch(size: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """x (B, T, 2) = (value, marker); y (B,) the sum of the two marked values."""
    values = torch.rand(size, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (size,), generator=generator)
    second = torch.randint(half, length, (size,), generator=generator)
    markers = torch.zeros(size, length)
    rows = torch.arange(size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    return torch.stack([values, markers], dim=-1), values[rows, first] + values[rows, second]


def make_model(name: str, hidden: int) -> nn.Module:
    if name == "irnn":
        layer = cell_layer("irnn", 2, hidden)
    elif name == "tanh-rnn":
        layer = TorchRNN("rnn", 2, hidden)
    else:
        layer = TorchRNN("lstm", 2, hidden, forget_bias=1.0)
    return SequenceModel(layer, 1)


def train(name: str, args: argparse.Namespace, test: tuple[Tensor, Tensor]) -> dict:
    torch.manual_seed(args.seed)
    model = make_model(name, args.hidden)
    lr = args.lr if name != "lstm" else args.lstm_lr
    if args.optimizer == "sgd":
        optimiser: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    elif args.optimizer == "rmsprop":
        optimiser = torch.optim.RMSprop(model.parameters(), lr=lr, alpha=0.9)
    else:
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(args.seed + 1)
    budget = Budget(args.seconds)
    curve = []
    update = 0
    x_test, y_test = test

    def test_mse() -> float:
        with torch.no_grad():
            return nn.functional.mse_loss(model(x_test)[:, -1, 0], y_test).item()

    while update < args.updates and not budget.spent():
        x, y = batch(args.batch, args.length, generator)
        loss = nn.functional.mse_loss(model(x)[:, -1, 0], y)
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimiser.step()
        update += 1
        if update % args.eval_every == 0:
            mse = test_mse()
            curve.append({"update": update, "seconds": round(budget.elapsed, 1),
                          "test_mse": mse})
            print(f"  {name:9s} update {update:6d}  {budget.elapsed:6.0f}s  test MSE {mse:.4f}",
                  flush=True)
            if mse != mse:  # NaN: diverged
                break
    final = test_mse()
    below = next((p["update"] for p in curve if p["test_mse"] < args.solved), None)
    return {"model": name, "lr": lr, "updates": update, "seconds": round(budget.elapsed, 1),
            "final_test_mse": final, "best_test_mse": min([p["test_mse"] for p in curve]
                                                          + [final]),
            "first_update_below_solved": below, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lstm-lr", type=float, default=1e-3)
    parser.add_argument("--optimizer", choices=("sgd", "rmsprop", "adam"), default="adam")
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--updates", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="wall-clock cap per model")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--solved", type=float, default=0.01, help="MSE counted as solved")
    parser.add_argument("--models", default="irnn,tanh-rnn,lstm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--name", default="cells_adding", help="results file name (no .json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    test = batch(1000, args.length, torch.Generator().manual_seed(12345))
    runs = []
    for name in args.models.split(","):
        print(f"{name}: T = {args.length}, hidden {args.hidden}", flush=True)
        runs.append(train(name, args, test))
    print(f"\nadding problem, T = {args.length} (baseline MSE {BASELINE:.3f})")
    for run in runs:
        print(f"  {run['model']:9s} {run['updates']:6d} updates in {run['seconds']:5.0f}s: "
              f"final test MSE {run['final_test_mse']:.4f}, best {run['best_test_mse']:.4f}, "
              f"below {args.solved} at update {run['first_update_below_solved']}")
    path = write_results(args.name, {"task": "adding", "config": vars(args),
                                          "baseline_mse": BASELINE, "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
