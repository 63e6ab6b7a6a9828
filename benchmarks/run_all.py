"""Run every benchmark of this folder in turn; each prints its table and writes its JSON.

    python benchmarks/run_all.py [--skip compare_peers,scaling] [--quick]

``--quick`` passes small sizes (a smoke run, not for reporting). The peer comparison
reuses the stored peer measurement unless ``--run-peers`` is given (see compare_peers.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("overhead", "fused", "teacher_forcing", "encoder_node", "threads", "check_speed",
           "scaling", "compare_peers")
QUICK = {
    "teacher_forcing": ["--batches", "4", "--repeats", "1"],
    "encoder_node": ["--batches", "4", "--repeats", "1"],
    "threads": ["--batches", "4", "--repeats", "1"],
    "overhead": ["--batches", "2", "--repeats", "3"],
    "fused": ["--batches", "4", "--repeats", "3"],
    "check_speed": ["--runs", "3", "--plans", "500"],
    "scaling": ["--lengths", "10,20,40", "--depths", "1,2", "--repeats", "1"],
    "compare_peers": ["--updates", "20", "--repeats", "1"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip", default="", help="comma-separated script names")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--run-peers", action="store_true")
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    failed = []
    for name in SCRIPTS:
        if name in skip:
            continue
        extra = list(QUICK[name]) if args.quick else []
        if name in ("teacher_forcing", "encoder_node", "threads") and not args.quick:
            extra.append("--out")
        if name == "encoder_node" and not args.quick:
            extra.append("--kernel")
        if name == "compare_peers" and args.run_peers:
            extra.append("--run-peers")
        print(f"\n=== {name} (load average {os.getloadavg()[0]:.2f}) ===", flush=True)
        begin = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *extra])
        print(f"=== {name}: exit {code}, {time.perf_counter() - begin:.0f} s ===", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
