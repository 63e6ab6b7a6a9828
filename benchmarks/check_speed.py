"""How fast a spec is checked: CLI wall time and in-process planning rate.

1. ``python -m assembly check specs/reference.toml`` as a subprocess, median of ``--runs``
   (target < 0.3 s); when over target, the slowest imports from ``python -X importtime``.
2. ``plan_model`` over varied specs (depth, sizes, cells, attention, bridge) in process,
   specs per second (target >= 10,000/s).

    python benchmarks/check_speed.py [--runs 10] [--plans 3000]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import ROOT, machine_info, reference_spec, write_json

COMMAND = [sys.executable, "-m", "assembly", "check", "specs/reference.toml"]


def import_profile(top: int = 12) -> list[tuple[str, float]]:
    """The ``top`` imports with the largest cumulative time (seconds)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *COMMAND[1:]], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    rows = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match and len(match[3]) <= 3:  # top-level imports (indent 1-2)
            rows.append((match[4], int(match[2]) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def timed_check(runs: int, env: dict[str, str]) -> list[float]:
    walls = []
    for _ in range(runs):
        begin = time.perf_counter()
        proc = subprocess.run(COMMAND, cwd=ROOT, capture_output=True, text=True, check=False,
                              env=env)
        walls.append(time.perf_counter() - begin)
        if proc.returncode != 0:
            raise SystemExit(f"check failed: {proc.stdout}{proc.stderr}")
    return walls


def varied_specs(registry: object) -> list[object]:
    from assembly.spec import AttentionSpec

    base = reference_spec()
    conv = registry.converter  # type: ignore[attr-defined]
    from assembly.plugin import CellSpec

    cells = [conv.structure({"type": t}, CellSpec) for t in ("lstm", "gru")]
    specs = []
    for depth, hidden, cell, bridge, score in itertools.product(
            (1, 2, 4), (64, 128), cells, ("linear", "copy", "zero"),
            ("additive", "dot", "general")):
        encoder = attrs.evolve(base.encoder, hidden=hidden // 2, cell=cell)
        decoder = attrs.evolve(base.decoder, hidden=hidden, cell=cell,
                               attention=AttentionSpec(score=score, input_feeding=True))
        specs.append(attrs.evolve(base, depth=depth, encoder=encoder, decoder=decoder,
                                  bridge=attrs.evolve(base.bridge, type=bridge)))
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--plans", type=int, default=3000)
    args = parser.parse_args()
    walls = timed_check(args.runs, dict(os.environ))
    # the same with bytecode caching on (this machine sets PYTHONDONTWRITEBYTECODE=1, so
    # every module is compiled from source on every start); cache kept outside the repo
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        timed_check(1, env)  # fills the cache
        cached = timed_check(args.runs, env)
    baseline = []
    for _ in range(args.runs):
        begin = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        baseline.append(time.perf_counter() - begin)
    cli = statistics.median(walls)

    from assembly.plan import plan_model
    from assembly.registry import make_registry

    registry = make_registry()
    specs = varied_specs(registry)
    for spec in specs:  # warm-up and validity
        plan_model(spec, registry)
    begin = time.perf_counter()
    for i in range(args.plans):
        plan_model(specs[i % len(specs)], registry)
    rate = args.plans / (time.perf_counter() - begin)

    profile = import_profile() if cli >= 0.3 else []
    print(f"check CLI: median {cli:.3f} s of {args.runs} (min {min(walls):.3f}; bare "
          f"interpreter {statistics.median(baseline):.3f} s) -> target < 0.3 s: "
          f"{'met' if cli < 0.3 else 'MISSED'}")
    print(f"check CLI with bytecode caching on: median {statistics.median(cached):.3f} s "
          f"(PYTHONDONTWRITEBYTECODE is {os.environ.get('PYTHONDONTWRITEBYTECODE')!r} here)")
    print(f"plan_model: {rate:,.0f} specs/s over {len(specs)} varied specs -> target "
          f">= 10,000/s: {'met' if rate >= 10_000 else 'MISSED'}")
    if profile:
        print("slowest top-level imports of `check` (python -X importtime, cumulative s):")
        for name, seconds in profile:
            print(f"  {seconds:7.3f}  {name}")
    write_json("check_speed", {
        "check_cli_median_s": round(cli, 4), "check_cli_runs_s": [round(w, 4) for w in walls],
        "check_cli_bytecode_cached_median_s": round(statistics.median(cached), 4),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "bare_python_median_s": round(statistics.median(baseline), 4),
        "check_target": "< 0.3 s", "check_met": cli < 0.3,
        "plan_specs_per_s": round(rate, 1), "plan_varied_specs": len(specs),
        "plan_target": ">= 10,000/s", "plan_met": rate >= 10_000,
        "slowest_imports_s": profile,
        "how_measured": f"python benchmarks/check_speed.py --runs {args.runs} --plans "
                        f"{args.plans}: subprocess wall time of `python -m assembly check "
                        "specs/reference.toml` (median); plan_model calls per second in "
                        "process, cycling through the varied specs",
        "machine": machine_info()})


if __name__ == "__main__":
    main()
