"""Test accuracy of the reference model after the peers' 626 updates, over several seeds.

``compare_peers.py`` trains every system once; single runs after two epochs vary a lot
(PERF-NOTES: 36–92 % between runs; JoeyNMT gave 42.8 % and 97.5 % in two runs of this
session that differed only in its thread count). This script trains ours on the same
data files (``run_peers.write_data(seed=1)``) once per ``training.seed`` and reports greedy
exact match on the 1,000 test sentences per seed, with the mean and the range.

With ``--peers opennmt,joeynmt`` it then also trains each named peer once per seed, on the
same data files (the DATA seed stays 1; only the TRAINING seed changes: OpenNMT-py's
``seed:``, JoeyNMT's ``random_seed:`` and ``set_seed``), through
``run_peers.run_peer(..., seed=s, greedy_only=True)``: training plus one greedy decode, no
beam, no repeats. The peers run on torch's default thread count (``--peer-threads`` to
fix it; the thread count changes their numerics). Results per system and seed, with
mean/min/max/stdev, go to benchmarks/results/seeds.json (ours under ``seeds`` and
``exact_match`` as before, the peers under ``peers``) and a table is printed.

    python benchmarks/seeds.py [--seeds 1,2,3,4,5] [--updates 626] \\
        [--peers opennmt,joeynmt] [--peer-threads N] [--bucketing | --no-bucketing]
        [--out NAME]

``--bucketing`` trains ours on length-sorted pools of 100 batches and ``--no-bucketing``
on random batches, whatever ``training.bucketing`` of specs/reference.toml says (it says
random); ``--out`` names the results file (results/NAME.json).

Cost per seed at 626 updates on the idle 2-core machine: ours ≈ 35 s, OpenNMT-py ≈ 45 s,
JoeyNMT ≈ 75 s (training with start-up, plus one greedy decode); 10 seeds of all three
took 26 minutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_peers import train_ours
from overhead import ROOT, machine_info, write_json

sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
import run_peers


def summarise(exact: list[float]) -> dict[str, Any]:
    """Mean, min, max and sample stdev of per-seed exact-match values."""
    return {"mean": round(statistics.fmean(exact), 4), "min": min(exact), "max": max(exact),
            "stdev": round(statistics.stdev(exact), 4) if len(exact) > 1 else 0.0}


def run_peer_seeds(names: list[str], seeds: list[int], updates: int, workdir: Path,
                   data_md5: dict[str, str]) -> dict[str, Any]:
    """Train + greedy-decode each peer once per training seed; return ``{peer: {...}}``.

    A failed run is recorded as ``{"error": ...}`` for that seed and left out of the
    summary, so that one crash does not lose the other results.
    """
    peers: dict[str, Any] = {name: {"toolkit": run_peers.VERSIONS[name], "seeds": {}}
                             for name in names}
    for seed in seeds:
        for name in names:
            try:
                row = run_peers.run_peer(name, workdir, updates, seed=seed, greedy_only=True)
            except run_peers.PeerRunError as error:
                print(f"{name} seed {seed}: FAILED: {error}", flush=True)
                peers[name]["seeds"][seed] = {"error": str(error)[-2000:]}
                continue
            if row["data_md5"] != data_md5:  # the data must not depend on the training seed
                raise SystemExit(f"{name} seed {seed} trained on other data: {row['data_md5']}")
            peers[name]["seeds"][seed] = {
                "exact_match": row["exact_match"], "token_accuracy": row["token_accuracy"],
                "train_tokens_per_s": row["train_tokens_per_s"],
                "train_wall_s": row["train_wall_s"], "greedy_wall_s": row["greedy_wall_s"],
                "greedy_output_md5": row["greedy_output_md5"], "parameters": row["parameters"],
                "load_average_before": row["load_average_before"],
                "load_average_after": row["load_average_after"]}
            print(f"{name} seed {seed}: exact match {row['exact_match']:.3f} "
                  f"(token accuracy {row['token_accuracy']:.3f}, "
                  f"training {row['train_wall_s']:.0f} s)", flush=True)
    for name in names:
        exact = [r["exact_match"] for r in peers[name]["seeds"].values() if "error" not in r]
        peers[name]["failed_seeds"] = [s for s, r in peers[name]["seeds"].items() if "error" in r]
        peers[name]["exact_match"] = summarise(exact) if exact else None
    return peers


def format_table(systems: dict[str, dict[int, dict[str, Any]]], seeds: list[int]) -> str:
    """One row per system: mean, range, stdev and the per-seed exact match."""
    header = (f"{'system':<9} {'mean':>6} {'range':>13} {'stdev':>6}  per seed "
              f"({', '.join(map(str, seeds))})")
    lines = [header, "-" * len(header)]
    for name, rows in systems.items():
        exact = [r["exact_match"] for r in rows.values() if "error" not in r]
        values = " ".join(f"{rows[s]['exact_match']:.3f}" if "error" not in rows[s] else "fail"
                          for s in seeds)
        if exact:
            summary = summarise(exact)
            lines.append(f"{name:<9} {summary['mean']:>6.3f} "
                         f"{summary['min']:>6.3f}–{summary['max']:<6.3f} "
                         f"{summary['stdev']:>6.3f}  {values}")
        else:
            lines.append(f"{name:<9} {'-':>6} {'-':>13} {'-':>6}  {values}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--updates", type=int, default=626)
    parser.add_argument("--peers", default="",
                        help="comma-separated peers to train once per seed too "
                             f"({','.join(run_peers.PEERS)}); default none")
    parser.add_argument("--peer-threads", type=int, default=0,
                        help="torch threads for the peers' runs (0: torch's default)")
    parser.add_argument("--bucketing", action=argparse.BooleanOptionalAction, default=None,
                        help="train ours with length-sorted pools (--bucketing) or random "
                             "batches (--no-bucketing); default: the spec's (random)")
    parser.add_argument("--out", default="seeds", help="results/<OUT>.json (default seeds)")
    args = parser.parse_args()
    from assembly.decode.generate import generate

    seeds = [int(s) for s in args.seeds.split(",")]
    if len(set(seeds)) != len(seeds):
        parser.error("--seeds has a seed twice")
    peer_names = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peer_names if p not in run_peers.PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {unknown}; choose from {run_peers.PEERS}")
    try:  # before training anything: a missing venv should not cost ours' runs
        for name in peer_names:
            run_peers.venv_dir(name)
    except run_peers.SetupError as error:
        raise SystemExit(f"error: {error}") from None
    run_peers.PEER_THREADS = args.peer_threads or None
    override = {} if args.bucketing is None else {"bucketing": args.bucketing}
    rows = {}
    peers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        data_info = run_peers.write_data(data, seed=1)
        sources = (data / "test.src").read_text().splitlines()
        references = (data / "test.tgt").read_text().splitlines()
        for seed in seeds:
            run_dir = Path(scratch) / f"run{seed}"
            trainer, result = train_ours(
                data, run_dir, args.updates,
                adjust=lambda spec, s=seed: attrs.evolve(
                    spec, training=attrs.evolve(spec.training, seed=s, **override)))
            bucketing = trainer.spec.training.bucketing
            outputs = generate(str(run_dir), sources, batch_size=500)
            hyps = [" ".join(r.hypotheses[0]) for r in outputs]
            rows[seed] = {"exact_match": round(run_peers.exact_match(hyps, references), 4),
                          "train_tokens_per_s": round(result.train_tokens_per_second, 1)}
            print(f"seed {seed}: exact match {rows[seed]['exact_match']:.3f}", flush=True)
        if peer_names:
            peers = run_peer_seeds(peer_names, seeds, args.updates, Path(scratch) / "peers",
                                   data_info["md5"])
    exact = [r["exact_match"] for r in rows.values()]
    summary = summarise(exact)
    print(f"exact match over {len(exact)} seeds: mean {summary['mean']:.3f}, "
          f"range {summary['min']:.3f}–{summary['max']:.3f}")
    flag = {None: "", True: " --bucketing", False: " --no-bucketing"}[args.bucketing]
    payload: dict[str, Any] = {
        "seeds": rows, "exact_match": summary, "updates": args.updates,
        "bucketing": bucketing,
        "how_measured": f"python benchmarks/seeds.py --seeds {args.seeds} "
                        f"--updates {args.updates}"
                        f"{f' --peers {args.peers}' if peer_names else ''}"
                        f"{f' --peer-threads {args.peer_threads}' if args.peer_threads else ''}"
                        f"{flag}"
                        f"{f' --out {args.out}' if args.out != 'seeds' else ''}",
        "machine": machine_info()}
    if peer_names:
        print()
        print(f"greedy exact match on the 1,000 test sentences after {args.updates} updates")
        print(format_table({"assembly": rows, **{n: peers[n]["seeds"] for n in peer_names}},
                           seeds))
        payload["peers"] = peers
        payload["peer_threads"] = args.peer_threads or "torch default"
    write_json(args.out, payload)


if __name__ == "__main__":
    main()
