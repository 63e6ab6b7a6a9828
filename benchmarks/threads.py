"""Training threads: a whole update of the reference model on one thread vs on all cores.

Whether a small model trains faster on one torch intra-op thread or on one per core depends
on the machine: on two real cores the per-step (64 × 288 × 512) matmuls, the deferred
weight gradients and the encoder's oneDNN kernels all split well, on two hyperthreads of
one core they do not, and on cores other jobs use, waiting threads spin. This measures it
where it runs: ``Trainer.update`` (forward, loss, backward, clipping, Adam) of
specs/reference.toml on batches of its built-in reverse task, the thread count switched
batch by batch (``torch.set_num_threads``; one thread, then ``--threads``, then the other
order for the next batch) after two warm-up batches each; the figure is the median of the
per-batch ratios, with the target tokens per second of each setting.

    python benchmarks/threads.py [--batches 100] [--repeats 2] [--threads N]
        [--busy [--busy-nice N]] [--out]

``--threads`` defaults to torch's default (one per core). ``--busy`` runs a busy loop in
another process beside the measurement, at normal priority (``--busy-nice N`` lowers it):
a machine another job shares (results/threads_busy.json). Measured on a 2-core AMD EPYC
(family 23, model 49; two real cores, idle, 2026-11-23): see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import SPEC_PATH, machine_info, paired, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="the thread count compared with one (default: torch's, "
                             f"{torch.get_num_threads()} here)")
    parser.add_argument("--busy", action="store_true",
                        help="a busy loop in another process beside the measurement")
    parser.add_argument("--busy-nice", type=int, default=0,
                        help="the busy process's niceness (0: normal priority)")
    parser.add_argument("--out", action="store_true", help="write benchmarks/results/...")
    args = parser.parse_args()

    from assembly.data.batching import collate_tokens, make_loader
    from assembly.spec import load_spec
    from assembly.train.trainer import Trainer

    spec = load_spec(SPEC_PATH)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(spec, scratch, progress=False, log=lambda line: None)
        trainer.sampler.set_epoch(0, start_batch=0)
        loader = make_loader(trainer.data.train, trainer.sampler, collate_tokens,
                             num_workers=0)
        batches = [batch for _, batch in zip(range(args.batches), loader, strict=False)]

        def run(batch: object, one: bool) -> float:
            torch.set_num_threads(1 if one else args.threads)
            begin = time.perf_counter()
            trainer.update(batch)
            return time.perf_counter() - begin

        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                preexec_fn=lambda: os.nice(args.busy_nice)) if args.busy else None
        try:
            ones, many, ratios = paired(run, batches, args.repeats)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    tokens = statistics.fmean(int(b.target_lengths.sum()) for b in batches)
    quartiles = statistics.quantiles([1 / r for r in ratios], n=4)
    speedup = statistics.median(1 / r for r in ratios)  # t(1 thread) / t(N threads)
    one_ms, many_ms = statistics.median(ones) * 1e3, statistics.median(many) * 1e3
    print(f"1 thread: {one_ms:.1f} ms per update ({tokens / one_ms * 1e3:,.0f} target tok/s)")
    print(f"{args.threads} threads: {many_ms:.1f} ms per update "
          f"({tokens / many_ms * 1e3:,.0f} target tok/s)")
    print(f"speed-up of {args.threads} threads over 1: median {speedup:.3f} "
          f"(quartiles {quartiles[0]:.3f}–{quartiles[2]:.3f}, {len(ratios)} pairs)")
    if args.out:
        write_json("threads_busy" if args.busy else "threads", {
            "threads": args.threads, "one_thread_ms": round(one_ms, 2),
            "many_threads_ms": round(many_ms, 2), "speedup_median": round(speedup, 4),
            "speedup_quartiles": [round(q, 4) for q in quartiles], "pairs": len(ratios),
            "mean_target_tokens": round(tokens, 1), "busy_process_beside": args.busy,
            "busy_nice": args.busy_nice if args.busy else None,
            "how_measured": f"python benchmarks/threads.py --batches {args.batches} "
                            f"--repeats {args.repeats} --threads {args.threads}"
                            f"{f' --busy --busy-nice {args.busy_nice}' if args.busy else ''} --out",
            "machine": machine_info()})


if __name__ == "__main__":
    main()
