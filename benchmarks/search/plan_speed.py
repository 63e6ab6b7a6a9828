"""How many generated specs are planned per second, without torch.

Specs come from the example space (``benchmarks/search/space.toml`` over
``benchmarks/search/base.toml``: depth, cells, sizes, bridge, attention with conditional
options, output layer, learning rate). Three figures, each the best of ``--repeats``
runs over ``--count`` distinct valid specs:

- ``plan``: :func:`assembly.plan.plan_model` alone on already-built specs (the planner's
  own speed: the figure the ≥ 10,000 specs/s target is about);
- ``generate``: drawing an assignment and building the validated spec
  (:meth:`Space.draw` + :meth:`Space.build`);
- ``pipeline``: :meth:`Space.specs`: draw, build, deduplicate, plan (with the search's
  architecture-keyed :class:`~assembly.search.space.PlanCache`), filter by size.

Rates are given per second of this process's CPU time (``time.process_time``; what one
core does, whatever else the machine runs) and per second of wall-clock time, with the
load average at the start, since a busy machine slows the wall-clock figures. The run
fails if torch was imported. Results go to ``benchmarks/results/search_plan_speed.json``.

Usage::

    python benchmarks/search/plan_speed.py [--count 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from assembly.plan import plan_model
from assembly.registry import make_registry
from assembly.search import RandomDrawer, load_space
from assembly.search.space import PlanCache
from assembly.spec import load_spec

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results" / "search_plan_speed.json"
TARGET = 10_000


def timed(work: Callable[[], int], repeats: int) -> dict[str, float]:
    """The best CPU and wall-clock rates (items per second) of ``repeats`` runs."""
    best_cpu = best_wall = 0.0
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        items = work()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        best_cpu, best_wall = max(best_cpu, items / cpu), max(best_wall, items / wall)
    return {"per_cpu_second": round(best_cpu), "per_wall_second": round(best_wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    registry = make_registry(entrypoints=False)
    base = load_spec(HERE / "base.toml", registry)
    space = load_space(HERE / "space.toml", base, registry)
    specs = [spec for spec, _ in space.specs(args.count, seed=0)]  # also warms up

    def plan_all() -> int:
        for spec in specs:
            plan_model(spec, registry)
        return len(specs)

    def generate_all() -> int:
        drawer = RandomDrawer(2)
        for _ in range(args.count):
            space.build(space.draw(drawer))
        return args.count

    seed = [10]

    def pipeline() -> int:
        seed[0] += 1
        fresh = load_space(HERE / "space.toml", base, registry)  # an empty plan cache
        return sum(1 for _ in fresh.specs(args.count, seed=seed[0], max_parameters=10**9))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report = {
        "count": args.count, "repeats": args.repeats, "load_average_1min": load,
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "machine": platform.machine(),
        "plan": timed(plan_all, args.repeats),
        "generate": timed(generate_all, args.repeats),
        "pipeline": timed(pipeline, args.repeats),
        "distinct_architectures": len({PlanCache.key(s) for s in specs}),
        "torch_imported": "torch" in sys.modules,
        "target_per_second": TARGET,
    }
    report["plan_meets_target"] = report["plan"]["per_cpu_second"] >= TARGET
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    if report["torch_imported"]:
        raise SystemExit("torch was imported while planning")


if __name__ == "__main__":
    main()
