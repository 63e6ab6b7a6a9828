"""Teacher-forced training step: the fused decoder node vs the generic step loop.

The reference model (specs/reference.toml: additive attention after the step, input
feeding, dropout 0.1) in train mode, forward + loss + backward per batch of 64 reverse-task
pairs (lengths 3–20), one thread. The same model runs both ways on the same batches
(``Decoder.fuse_teacher_forcing`` switched per call), alternating fused and generic batch
by batch (ABAB / BABA); the figure is the median of the per-batch ratios generic / fused.

    python benchmarks/teacher_forcing.py [--batches 20] [--repeats 5] [--depth 1]
        [--cell lstm|gru] [--every-row] [--out]

``--cell gru`` runs the same model with a built-in GRU decoder (torch's convention)
instead of the LSTM (results/teacher_forcing_gru_depth1.json).

``--native`` compares the node's C++ step loops (assembly/nn/native, the default where they
build) with its Python loops (``ASSEMBLY_NATIVE=0``), both on packed rows
(results/teacher_forcing_native_depth1*.json). Without it, "fused" is whichever loops
the node runs here.

``--every-row`` compares the node with itself instead: packed rows (step t runs only the
rows whose target is still going, the default) against every row at every step (what the
node did before it packed rows: ``teacher_forcing.schedule`` given no lengths), on the
same random-length batches (results/teacher_forcing_packed_depth1.json).

Measured on an idle 2-core AMD EPYC (2026-11-23, 100 pairs each, with the node's packed
rows): results/teacher_forcing_depth1.json generic 89.5 ms, fused 56.7 ms per update,
median ratio 1.57 (quartiles 1.53–1.62); ``--cell gru`` generic 80.9 ms, fused 51.7 ms,
1.57 (1.52–1.63); ``--every-row`` every row 68.5 ms, packed 54.6 ms, 1.28 (1.24–1.30).
(Before the rows were packed, on a shared machine: 1.18 and 1.36.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import machine_info, make_batches, paired, reference_spec, timed_update, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm",
                        help="the decoder's cell (the encoder stays the reference's LSTM)")
    parser.add_argument("--every-row", action="store_true",
                        help="packed rows against every row at every step, both fused")
    parser.add_argument("--native", action="store_true",
                        help="the node's C++ step loops against its Python loops")
    parser.add_argument("--out", action="store_true", help="write benchmarks/results/...")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import attrs

    from assembly.build import build_model
    from assembly.builtin.cells import GruSpec
    from assembly.registry import make_registry

    registry = make_registry(entrypoints=False)
    spec = reference_spec(args.depth)
    if args.cell == "gru":
        spec = attrs.evolve(spec, decoder=attrs.evolve(spec.decoder, cell=GruSpec()))
    model = build_model(spec, registry, seed=0)
    model.train()
    assert model.decoder.fused_teacher_forcing
    batches = make_batches(args.batches, batch=args.batch_size)

    from assembly.nn import teacher_forcing

    packed_schedule = teacher_forcing.schedule

    def every_row(lengths: torch.Tensor | None, steps: int, batch: int
                  ) -> tuple[tuple[int, ...], torch.Tensor | None]:
        return packed_schedule(None, steps, batch)

    def update(batch: tuple[torch.Tensor, ...], first: bool) -> float:
        if args.native:  # both fused; the first with the C++ loops, the second without
            os.environ["ASSEMBLY_NATIVE"] = "1" if first else "0"
        elif args.every_row:  # both fused; the second runs every row at every step
            teacher_forcing.schedule = packed_schedule if first else every_row
        else:
            model.decoder.fuse_teacher_forcing = first
        return timed_update(model, batch)

    fused_times, generic_times, ratios = paired(update, batches, args.repeats, warmup=3)
    teacher_forcing.schedule = packed_schedule
    if args.native:
        from assembly.nn import native

        assert native.loops() is not None, "the native loops did not build"
        names = ("native", "python")
    else:
        names = ("packed", "every_row") if args.every_row else ("fused", "generic")
    result = {
        "model": f"reference, depth {args.depth}, {args.cell} decoder, batch "
                 f"{args.batch_size}, train mode",
        "threads": args.threads,
        f"{names[0]}_ms": round(statistics.median(fused_times) * 1e3, 2),
        f"{names[1]}_ms": round(statistics.median(generic_times) * 1e3, 2),
        "speedup_median_of_ratios": round(statistics.median(ratios), 3),
        "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)],
        "pairs": len(ratios),
        "machine": machine_info(),
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.out:
        cell = "" if args.cell == "lstm" else f"{args.cell}_"
        variant = "native_" if args.native else "packed_" if args.every_row else ""
        threads = "" if args.threads == 1 else f"_{args.threads}threads"
        write_json(f"teacher_forcing_{variant}{cell}depth{args.depth}{threads}", result)


if __name__ == "__main__":
    main()
