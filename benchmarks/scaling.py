"""Training step time and peak memory vs sequence length and depth.

The reference model (specs/reference.toml; ``depth`` varied) trains on batches of 16
reverse-task pairs of one fixed length L (source L, target L + EOS). Per point: one warm-up
update, then the median of ``--repeats`` updates (forward, loss, backward, Adam step).
Peak memory: each point runs in a fresh subprocess and reports the growth of the
process's peak resident set (``ru_maxrss``) over the model's built state, i.e. the
activations and gradients one update needs. Lengths 10..400 at depth 1; depths 1..8 at
length 20; and lengths again for the same model without attention (``--no-attention``
series), which separates the recurrent part (linear in length) from attention, whose work
is one score per (target step, source step) pair — O(T·S), quadratic when both grow.
Linear least-squares fits (time = a + b·x) with R² describe linearity.

    python benchmarks/scaling.py [--lengths 10,25,50,100,200,400] [--depths 1,2,4,8]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import RESULTS, machine_info, reference_spec, write_json

BATCH = 16


def point(length: int, depth: int, repeats: int, threads: int,
          attention: bool = True) -> dict[str, float]:
    """One measurement, in this process (call through a subprocess for memory)."""
    import attrs

    from assembly.build import build_model

    torch.set_num_threads(threads)
    spec = reference_spec(depth)
    if not attention:
        spec = attrs.evolve(spec, decoder=attrs.evolve(spec.decoder, attention=None))
    model = build_model(spec, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    source = torch.randint(4, 24, (BATCH, length), generator=gen)
    target = torch.cat([source.flip(1), torch.full((BATCH, 1), 2)], 1)
    lengths = torch.full((BATCH,), length)
    model.train()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def update() -> None:
        out = model(source, lengths, target, lengths + 1)
        total, count = model.loss(out, target)
        optimizer.zero_grad(set_to_none=True)
        (total / count).backward()
        optimizer.step()

    update()
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        update()
        times.append(time.perf_counter() - begin)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"step_s": statistics.median(times), "peak_rss_growth_mb": (peak - base) / 1024}


def measure(length: int, depth: int, repeats: int, threads: int,
            attention: bool = True) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--point", f"{length},{depth},{int(attention)}",
         "--repeats", str(repeats), "--threads", str(threads)],
        capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys) or 1.0
    return {"intercept": intercept, "slope": slope, "r2": 1 - ss_res / ss_tot}


def plot(name: str, xs: list[int], rows: list[dict[str, float]], xlabel: str,
         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, left = plt.subplots(figsize=(6, 4))
    left.plot(xs, [r["step_s"] * 1e3 for r in rows], "o-", color="tab:blue")
    left.set_xlabel(xlabel)
    left.set_ylabel("training step (ms, batch 16)", color="tab:blue")
    right = left.twinx()
    right.plot(xs, [r["peak_rss_growth_mb"] for r in rows], "s--", color="tab:red")
    right.set_ylabel("peak RSS growth (MB)", color="tab:red")
    left.set_title(f"{title}: {xlabel}")
    fig.tight_layout()
    fig.savefig(RESULTS / f"scaling_{name}.png", dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="10,25,50,100,200,400")
    parser.add_argument("--depths", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--point", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        length, depth, attention = map(int, args.point.split(","))
        print(json.dumps(point(length, depth, args.repeats, args.threads, bool(attention))))
        return
    lengths = [int(x) for x in args.lengths.split(",")]
    depths = [int(x) for x in args.depths.split(",")]
    by_length = [measure(n, 1, args.repeats, args.threads) for n in lengths]
    by_depth = [measure(20, d, args.repeats, args.threads) for d in depths]
    plain = [measure(n, 1, args.repeats, args.threads, attention=False) for n in lengths]
    report = {}
    for name, xs, rows, label, title in (
            ("length", lengths, by_length, "sequence length", "reference model"),
            ("depth", depths, by_depth, "depth (encoder = decoder)", "reference model"),
            ("length_no_attention", lengths, plain, "sequence length",
             "reference model without attention")):
        time_fit = fit(xs, [r["step_s"] for r in rows])
        memory_fit = fit(xs, [r["peak_rss_growth_mb"] for r in rows])
        per_unit = [r["step_s"] / x for r, x in zip(rows, xs, strict=True)]
        report[name] = {"x": xs, "points": rows, "time_fit": time_fit,
                        "memory_fit": memory_fit,
                        "step_s_per_unit_first_last": [per_unit[0], per_unit[-1]]}
        plot(name, xs, rows, label, title)
        print(f"{label:<26} {'step ms':>9} {'ms/unit':>8} {'peak MB':>8}")
        for x, r in zip(xs, rows, strict=True):
            print(f"{x:<26} {r['step_s'] * 1e3:>9.1f} {r['step_s'] * 1e3 / x:>8.2f} "
                  f"{r['peak_rss_growth_mb']:>8.1f}")
        print(f"  time ≈ {time_fit['intercept'] * 1e3:.1f} ms + {time_fit['slope'] * 1e3:.2f} "
              f"ms·x (R² {time_fit['r2']:.3f}); memory ≈ {memory_fit['intercept']:.1f} MB + "
              f"{memory_fit['slope']:.2f} MB·x (R² {memory_fit['r2']:.3f})")
    write_json("scaling", {
        **report, "batch": BATCH,
        "how_measured": f"python benchmarks/scaling.py --lengths {args.lengths} --depths "
                        f"{args.depths} --repeats {args.repeats} --threads {args.threads}: "
                        "one subprocess per point; median update time after a warm-up; "
                        "memory = ru_maxrss growth over the built model (includes allocator "
                        "slack, so a coarse upper bound of the activation memory)",
        "machine": machine_info()})


if __name__ == "__main__":
    main()
