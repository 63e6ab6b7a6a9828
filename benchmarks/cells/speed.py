"""Forward + backward speed of one layer of each cell, against torch.nn.GRU in the same run.

    python benchmarks/cells/speed.py                   # batch 64, 50 steps, 256 → 256
    python benchmarks/cells/speed.py --threads 1 --repeats 15

Every repeat times each candidate once, in a rotating order, so that a busy machine slows
all of them alike; the headline is the median over repeats of the *paired* ratio
(candidate time / nn.GRU time in the same repeat), next to the medians and minima of the
raw times. One timed call is: forward over the whole batch (no padding), ``sum`` of the
outputs and final state, backward, gradients cleared.

Extra rows show where time goes elsewhere: nn.GRU fed a PackedSequence (what the built-in
``gru`` does), and JZS2 run by the core's generic ``CellLayer.forward`` loop instead of this
package's ``SequenceCell.forward``. ``--step-variants`` also times JZS2 with its per-step
function under ``torch.jit.script`` and ``torch.compile`` (to decide whether either pays on
this CPU). Results go to ``benchmarks/results/cells_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from assembly_cells import CellsPlugin
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from assembly.plugin import CellLayer
from assembly.registry import make_registry

RESULTS = Path(__file__).resolve().parents[1] / "results" / "cells_speed.json"
GATED_MUTANTS = ("jzs1", "jzs2", "jzs3")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--size", type=int, default=256, help="input and hidden size")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--step-variants", action="store_true",
                        help="also time JZS2 with a TorchScript / torch.compile step")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


class Candidate:
    """A layer and how to run it: ``run()`` does one forward + backward."""

    def __init__(self, name: str, module: nn.Module, call: Callable[[Tensor], Tensor],
                 note: str = "") -> None:
        self.name = name
        self.module = module
        self.call = call
        self.note = note
        self.times: list[float] = []

    def run(self, x: Tensor) -> float:
        start = time.perf_counter()
        loss = self.call(x)
        loss.backward()
        elapsed = time.perf_counter() - start
        for parameter in self.module.parameters():
            parameter.grad = None
        return elapsed


def candidates(args: argparse.Namespace) -> list[Candidate]:
    size, batch, steps = args.size, args.batch, args.steps
    registry = make_registry(plugins=[CellsPlugin()], entrypoints=False, strict=True)
    lengths = torch.full((batch,), steps)
    made: list[Candidate] = []

    torch.manual_seed(0)
    gru = nn.GRU(size, size, batch_first=True)
    made.append(Candidate("nn.GRU", gru, lambda x: sum_all(*gru(x)), "reference"))
    lstm = nn.LSTM(size, size, batch_first=True)
    made.append(Candidate("nn.LSTM", lstm, lambda x: sum_all(*lstm(x))))
    packed_gru = nn.GRU(size, size, batch_first=True)

    def run_packed(x: Tensor) -> Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, h = packed_gru(packed)
        return sum_all(pad_packed_sequence(output, batch_first=True)[0], h)

    made.append(Candidate("nn.GRU, packed input", packed_gru, run_packed))

    def layer_call(layer: nn.Module) -> Callable[[Tensor], Tensor]:
        return lambda x: sum_all(*layer(x, lengths))

    specs: list[tuple[str, str, int, dict[str, Any]]] = [
        ("gru (built-in, packed)", "gru", size, {}),
        ("jzs1", "jzs1", size, {}), ("jzs2", "jzs2", size, {}), ("jzs3", "jzs3", size, {}),
        ("irnn", "irnn", size, {}),
        (f"urnn (N={size // 2}, state {size})", "urnn", size // 2, {}),
        ("layernorm-lstm", "layernorm-lstm", size, {}),
        ("layernorm-gru", "layernorm-gru", size, {}),
    ]
    for label, cell, hidden, options in specs:
        record = registry.get("cell", cell)
        layer = record.build(record.spec(**options), size, hidden)
        made.append(Candidate(label, layer, layer_call(layer)))
    core_loop = registry.get("cell", "jzs2").build(registry.get("cell", "jzs2").spec(), size,
                                                     size)
    made.append(Candidate("jzs2, core CellLayer.forward loop", core_loop,
                          lambda x: sum_all(*CellLayer.forward(core_loop, x, lengths)),
                          "the core's generic loop instead of SequenceCell.forward"))
    if args.step_variants:
        made.extend(step_variants(registry, size, lengths))
    return made


def sum_all(outputs: Tensor, state: Any) -> Tensor:
    states = state if isinstance(state, tuple) else (state,)
    return outputs.sum() + sum(s.sum() for s in states)


def jzs2_step(projected: Tensor, h: Tensor, w_h_t: Tensor, w_hh_t: Tensor,
              n: int) -> Tensor:
    """JZS2's per-step math as a free function (what the variants compile)."""
    gates = torch.addmm(projected[:, :2 * n], h, w_h_t).sigmoid_()
    z, r = gates[:, :n], gates[:, n:]
    u = torch.addmm(projected[:, 2 * n:], r * h, w_hh_t).tanh_()
    return torch.lerp(h, u, z)


def step_variants(registry: Any, size: int, lengths: Tensor) -> list[Candidate]:
    from assembly_cells.mutants import Jzs2Layer

    record = registry.get("cell", "jzs2")
    compiled: dict[str, Callable[..., Tensor]] = {
        "jzs2 + torch.jit.script step": torch.jit.script(jzs2_step),
        "jzs2 + torch.compile step": torch.compile(jzs2_step, dynamic=False),
    }
    made = []
    for label, function in compiled.items():

        class Variant(Jzs2Layer):
            step_function = staticmethod(function)

            def recur(self, projected: Tensor, state: tuple[Tensor, ...],
                      prepared: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
                new = self.step_function(projected, state[0], prepared[0], prepared[1],
                                         self.hidden_size)
                return new, (new,)

        layer = Variant(record.spec(), size, size)
        made.append(Candidate(label, layer,
                              lambda x, layer=layer: sum_all(*layer(x, lengths)),
                              "variant"))
    return made


def main() -> None:
    args = parse()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.steps, args.size)
    made = candidates(args)
    for _ in range(args.warmup):
        for candidate in made:
            candidate.run(x)
    paired: dict[str, list[float]] = {c.name: [] for c in made}
    for repeat in range(args.repeats):
        order = made[repeat % len(made):] + made[:repeat % len(made)]  # rotate
        times = {c.name: c.run(x) for c in order}
        for c in made:
            c.times.append(times[c.name])
            paired[c.name].append(times[c.name] / times["nn.GRU"])
    reference = made[0]
    rows = []
    for c in made:
        rows.append({
            "cell": c.name,
            "median_ms": 1e3 * statistics.median(c.times),
            "min_ms": 1e3 * min(c.times),
            "ratio_paired_median": statistics.median(paired[c.name]),
            "ratio_of_medians": statistics.median(c.times) / statistics.median(reference.times),
            "ratio_of_minima": min(c.times) / min(reference.times),
            "parameters": sum(p.numel() for p in c.module.parameters()),
        })
    print(f"forward+backward, batch {args.batch}, {args.steps} steps, {args.size} → "
          f"{args.size}, {torch.get_num_threads()} threads, {args.repeats} repeats")
    header = f"{'cell':34s} {'median ms':>10s} {'min ms':>9s} {'× nn.GRU':>9s} {'(min)':>7s}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['cell']:34s} {row['median_ms']:10.1f} {row['min_ms']:9.1f} "
              f"{row['ratio_paired_median']:9.2f} {row['ratio_of_minima']:7.2f}")
    worst = max(r["ratio_paired_median"] for r in rows if r["cell"] in GATED_MUTANTS)
    print(f"slowest gated mutant: {worst:.2f}× nn.GRU (target ≤ 1.5×)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() \
        else []
    args.out.write_text(json.dumps({
        "config": {"batch": args.batch, "steps": args.steps, "size": args.size,
                   "repeats": args.repeats, "threads": torch.get_num_threads(),
                   "torch": torch.__version__, "machine": platform.machine(),
                   "processor": platform.processor(), "load_average_at_end": load},
        "rows": rows,
        "slowest_gated_mutant_ratio": worst,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
