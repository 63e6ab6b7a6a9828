"""Test accuracy of the reference model after the peers' 626 updates, over several seeds.

``compare_peers.py`` trains every system once; single runs after two epochs vary a lot
(PERF-NOTES: 36–92 % between runs; JoeyNMT gave 42.8 % and 97.5 % in two runs of this
session that differed only in its thread count). This script trains ours on the same
data files (``run_peers.write_data(seed=1)``) once per ``training.seed`` and reports greedy
exact match on the 1,000 test sentences per seed, with the mean and the range.

    python benchmarks/seeds.py [--seeds 1,2,3,4,5] [--updates 626]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_peers import train_ours
from overhead import ROOT, machine_info, write_json

sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
import run_peers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--updates", type=int, default=626)
    args = parser.parse_args()
    from assembly.decode.generate import generate

    seeds = [int(s) for s in args.seeds.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        run_peers.write_data(data, seed=1)
        sources = (data / "test.src").read_text().splitlines()
        references = (data / "test.tgt").read_text().splitlines()
        for seed in seeds:
            run_dir = Path(scratch) / f"run{seed}"
            _trainer, result = train_ours(
                data, run_dir, args.updates,
                adjust=lambda spec, s=seed: attrs.evolve(
                    spec, training=attrs.evolve(spec.training, seed=s)))
            outputs = generate(str(run_dir), sources, batch_size=500)
            hyps = [" ".join(r.hypotheses[0]) for r in outputs]
            rows[seed] = {"exact_match": round(run_peers.exact_match(hyps, references), 4),
                          "train_tokens_per_s": round(result.train_tokens_per_second, 1)}
            print(f"seed {seed}: exact match {rows[seed]['exact_match']:.3f}", flush=True)
    exact = [r["exact_match"] for r in rows.values()]
    summary = {"mean": round(statistics.fmean(exact), 4), "min": min(exact), "max": max(exact),
               "stdev": round(statistics.stdev(exact), 4) if len(exact) > 1 else 0.0}
    print(f"exact match over {len(exact)} seeds: mean {summary['mean']:.3f}, "
          f"range {summary['min']:.3f}–{summary['max']:.3f}")
    write_json("seeds", {"seeds": rows, "exact_match": summary, "updates": args.updates,
                         "how_measured": f"python benchmarks/seeds.py --seeds {args.seeds} "
                                         f"--updates {args.updates}",
                         "machine": machine_info()})


if __name__ == "__main__":
    main()
