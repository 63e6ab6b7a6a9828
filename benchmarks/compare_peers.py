"""Ours vs OpenNMT-py 3.0.4 and JoeyNMT 2.3.0 on the same data and (nearly) the same model.

Ours: assembly's Trainer on specs/reference.toml with its data pointed at the files the peer
harness writes (``run_peers.write_data(folder, seed=1)``: 20,000 / 500 / 1,000 reverse
pairs), ``max_updates`` 626, training and decoding on torch's default threads (the
spec's ``training.threads`` is 0) as the peers do, then greedy and beam-5 decoding of
the 1,000 test sentences at batch 500 through ``assembly.decode.generate.generate`` (beam:
the ``beam`` sampler of assembly-samplers, width 5), median of ``--repeats`` runs after
one warm-up, and exact match on the test set.

Ours is trained twice: as the spec says (random batches, ``training.bucketing = false``:
they learn this task best, see benchmarks/README.md, accuracy) and with the other batching
(length-sorted pools of 100 batches; OpenNMT-py sorts whole 20,000-pair buckets; JoeyNMT's
are random). Both rows are printed, and the training ratio against OpenNMT-py is given for
each: the spec's batching, and the like-for-like sorted batches.

Training tokens/s, for ours and the peers alike: the median of the throughputs each
toolkit logs per interval (non-padding target tokens incl. EOS per second; ours every 20
updates as ``tokens_per_s`` in metrics.jsonl, the peers' every 50), the first interval
dropped (start-up). Evaluation and checkpoints are outside ours (and no validation set is
configured for the peers). The overall figure (all tokens / all training seconds) is kept
as ``train_tokens_per_s_overall``.

Peers: with ``--run-peers`` they are trained and decoded in this run (side by side) via
``run_peers.run_peer``; otherwise the latest stored harness measurement is reused and the
output says so (NOT side by side: other load, other time).

    python benchmarks/compare_peers.py [--updates 626] [--repeats 3] [--rounds 1]
        [--run-peers]

``--rounds N`` measures everything N times in turn (ours on both batchings, then each
peer) and judges the targets on the median of the rounds' ratios: this machine's speed
drifts by up to 1.5× within minutes, and one round's ratio moves with it (six single
rounds of the same code in one session gave OpenNMT-py 21.9k–30.1k tok/s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import ROOT, SPEC_PATH, machine_info, write_json

sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
import run_peers

STORED = [ROOT / "benchmarks" / "results" / "peers.json",
          ROOT / "benchmarks" / "peers" / "work" / "second_run.json"]


def train_ours(data: Path, run_dir: Path, updates: int,
               adjust: Callable[[Any], Any] | None = None) -> tuple[Any, Any]:
    """Train specs/reference.toml on the peers' data files (``adjust``: a last change to
    the spec, e.g. another seed)."""
    from assembly.spec import load_spec
    from assembly.train.trainer import Trainer

    spec = load_spec(SPEC_PATH)
    data_spec = attrs.evolve(spec.data, task=None, format="parallel",
                             train=(str(data / "train.src"), str(data / "train.tgt")),
                             dev=(str(data / "dev.src"), str(data / "dev.tgt")),
                             test=(str(data / "test.src"), str(data / "test.tgt")))
    spec = attrs.evolve(spec, data=data_spec, training=attrs.evolve(
        spec.training, max_updates=updates, epochs=100))
    if adjust is not None:
        spec = adjust(spec)
    trainer = Trainer(spec, run_dir, progress=False, log=lambda line: None)
    return trainer, trainer.fit()


def decode_ours(run_dir: Path, sources: list[str], references: list[str], repeats: int
                ) -> dict[str, Any]:
    import assembly.plugin
    from assembly.decode.generate import generate
    from assembly.run import load_run

    run = load_run(str(run_dir))
    registry = run.registry if hasattr(run, "registry") else None
    if registry is None:
        from assembly.registry import make_registry

        registry = make_registry()
    samplers = {
        "greedy": registry.converter.structure({"type": "greedy"}, assembly.plugin.SamplerSpec),
        "beam5": registry.converter.structure({"type": "beam", "width": 5},
                                              assembly.plugin.SamplerSpec),
    }
    out: dict[str, Any] = {}
    for name, sampler in samplers.items():
        generate(run, sources, sampler=sampler, batch_size=500)  # warm-up
        runs, results = [], None
        for _ in range(repeats):
            begin = time.perf_counter()
            results = generate(run, sources, sampler=sampler, batch_size=500)
            runs.append(time.perf_counter() - begin)
        assert results is not None
        hyps = [" ".join(r.hypotheses[0]) for r in results]
        seconds = statistics.median(runs)
        out[f"{name}_sent_per_s"] = round(len(sources) / seconds, 1)
        out[f"{name}_runs_s"] = [round(r, 4) for r in runs]
        key = "exact_match" if name == "greedy" else "beam5_exact_match"
        out[key] = round(run_peers.exact_match(hyps, references), 4)
        if name == "greedy":
            out["token_accuracy"] = round(run_peers.token_accuracy(hyps, references), 4)
    return out


def measure_ours(data: Path, run_dir: Path, updates: int, repeats: int, sources: list[str],
                 references: list[str], decode_threads: int,
                 bucketing: bool | None = None) -> dict[str, Any]:
    """Train the reference spec (``bucketing``: override its training.bucketing) on the
    peers' data, then decode as :func:`decode_ours` does; the row of the table."""
    adjust = None if bucketing is None else (lambda spec: attrs.evolve(
        spec, training=attrs.evolve(spec.training, bucketing=bucketing)))
    trainer, result = train_ours(data, run_dir, updates, adjust)
    intervals = [r["tokens_per_s"] for r in map(json.loads, (
        run_dir / "metrics.jsonl").read_text().splitlines()) if r.get("kind") == "train"]
    ours: dict[str, Any] = {
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "updates": result.updates,
        "bucketing": trainer.spec.training.bucketing,
        # the peers' rule: median of the logged intervals, the first dropped
        "train_tokens_per_s": round(run_peers.steady_state_rate(intervals), 1),
        "train_interval_tokens_per_s": intervals,
        "train_tokens_per_s_overall": round(result.train_tokens_per_second, 1),
        "train_seconds": round(result.seconds, 2),
        "train_threads": torch.get_num_threads(),  # the spec's training.threads
    }
    torch.set_num_threads(decode_threads)  # decoding: torch's default, as the peers
    ours["decode_threads"] = decode_threads
    ours.update(decode_ours(run_dir, sources, references, repeats))
    return ours


def stored_peers() -> tuple[dict[str, Any], str]:
    for path in STORED:
        if path.exists():
            rows = json.loads(path.read_text())
            if all(rows.get(p, {}).get("updates") == 626 for p in run_peers.PEERS):
                return rows, str(path.relative_to(ROOT))
    raise SystemExit("no stored 626-update peer measurement; use --run-peers")


def run_round(args: argparse.Namespace, scratch: Path, data: Path, sources: list[str],
              references: list[str], decode_threads: int) -> dict[str, Any]:
    """Ours on both batchings, then the peers (or their stored figures): one table."""
    ours = measure_ours(data, scratch / "run", args.updates, args.repeats, sources,
                        references, decode_threads)
    # the same with the other batching: length-sorted pools, as OpenNMT-py batches (or
    # random batches, should the reference spec bucket)
    other = measure_ours(data, scratch / "run-other", args.updates, args.repeats, sources,
                         references, decode_threads, bucketing=not ours["bucketing"])
    if args.run_peers:
        run_peers.PEER_THREADS = args.peer_threads or None
        peers = {name: run_peers.run_peer(name, scratch / "peers", args.updates,
                                          args.repeats) for name in run_peers.PEERS}
        source = "measured in this run, side by side"
    else:
        peers, stored = stored_peers()
        for row in peers.values():  # recompute with today's harness rule (see README)
            intervals = row.get("train_interval_tokens_per_s")
            if intervals:
                row["train_tokens_per_s_as_stored"] = row["train_tokens_per_s"]
                row["train_tokens_per_s"] = round(run_peers.steady_state_rate(intervals), 1)
        source = (f"REUSED from {stored} (the peer harness, measured earlier at another "
                  "load; NOT side by side with ours)")
    return {"assembly": ours, "assembly_other_batching": other, "peers": peers,
            "peers_source": source}


def ratios(measured: dict[str, Any]) -> dict[str, float]:
    """The four targets' ratios of one round."""
    ours, other, peers = (measured[k] for k in ("assembly", "assembly_other_batching", "peers"))
    onmt = peers["opennmt"]
    fastest = {k: max(peers[p][f"{k}_sent_per_s"] for p in run_peers.PEERS)
               for k in ("greedy", "beam5")}
    bucketed = ours if ours["bucketing"] else other
    return {
        "train >= 1.5x OpenNMT tok/s": ours["train_tokens_per_s"]
        / onmt["train_tokens_per_s"],
        "train, sorted batches as OpenNMT-py's, >= 1.5x OpenNMT tok/s":
            bucketed["train_tokens_per_s"] / onmt["train_tokens_per_s"],
        "greedy >= 2x faster peer": ours["greedy_sent_per_s"] / fastest["greedy"],
        "beam5 >= 2x faster peer": ours["beam5_sent_per_s"] / fastest["beam5"],
    }


def print_round(measured: dict[str, Any]) -> None:
    print(f"peers: {measured['peers_source']}")
    header = f"{'system':<12} {'params':>8} {'train tok/s':>11} {'greedy s/s':>10} " \
             f"{'beam5 s/s':>9} {'exact':>6} {'beam5 exact':>11}"
    print(header)
    print("-" * len(header))
    batching = {True: "sorted", False: "random"}
    ours, other = measured["assembly"], measured["assembly_other_batching"]
    table = {f"ours {batching[ours['bucketing']]}": ours,
             f"ours {batching[other['bucketing']]}": other, **measured["peers"]}
    for name, r in table.items():
        print(f"{name:<12} {r['parameters']:>8} {r['train_tokens_per_s']:>11.0f} "
              f"{r['greedy_sent_per_s']:>10.0f} {r['beam5_sent_per_s']:>9.0f} "
              f"{r['exact_match']:>6.3f} {r['beam5_exact_match']:>11.3f}")


def print_ratios(values: dict[str, float], label: str = "") -> None:
    for name, ratio in values.items():
        need = 1.5 if name.startswith("train") else 2.0
        print(f"{label}{name}: {ratio:.2f}x -> {'met' if ratio >= need else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=626)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure everything this many times in turn; the ratios are "
                             "the medians of the rounds' ratios")
    parser.add_argument("--run-peers", action="store_true")
    parser.add_argument("--peer-threads", type=int, default=0,
                        help="torch threads for the peers' runs (0: torch's default)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for ours (0: torch's default, as the peers ran)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    decode_threads = torch.get_num_threads()
    load_before = os.getloadavg()[0]
    rounds = []
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        run_peers.write_data(data, seed=1)
        sources = (data / "test.src").read_text().splitlines()
        references = (data / "test.tgt").read_text().splitlines()
        for index in range(args.rounds):
            measured = run_round(args, Path(scratch) / f"round{index}", data, sources,
                                 references, decode_threads)
            measured["ratios"] = ratios(measured)
            if args.rounds > 1:
                print(f"round {index + 1} of {args.rounds}")
            print_round(measured)
            print_ratios(measured["ratios"])
            rounds.append(measured)
    medians = {name: statistics.median(r["ratios"][name] for r in rounds)
               for name in rounds[0]["ratios"]}
    if args.rounds > 1:
        print(f"median of {args.rounds} rounds:")
        print_ratios(medians, "  ")
    last = rounds[-1]
    write_json("compare_peers", {
        "assembly": last["assembly"], "assembly_other_batching": last["assembly_other_batching"],
        "peers": last["peers"], "peers_source": last["peers_source"],
        "ratios": {k: round(v, 3) for k, v in medians.items()},
        "rounds": [{"ratios": {k: round(v, 3) for k, v in r["ratios"].items()},
                    "train_tokens_per_s": {
                        "assembly": r["assembly"]["train_tokens_per_s"],
                        "assembly_other_batching":
                            r["assembly_other_batching"]["train_tokens_per_s"],
                        **{p: row["train_tokens_per_s"] for p, row in r["peers"].items()}},
                    "greedy_sent_per_s": {
                        "assembly": r["assembly"]["greedy_sent_per_s"],
                        **{p: row["greedy_sent_per_s"] for p, row in r["peers"].items()}},
                    "beam5_sent_per_s": {
                        "assembly": r["assembly"]["beam5_sent_per_s"],
                        **{p: row["beam5_sent_per_s"] for p, row in r["peers"].items()}}}
                   for r in rounds],
        "load_average_before": round(load_before, 2),
        "how_measured": f"python benchmarks/compare_peers.py --updates {args.updates} "
                        f"--repeats {args.repeats} --rounds {args.rounds} "
                        f"--threads {args.threads}"
                        f"{' --run-peers' if args.run_peers else ''}"
                        f"{f' --peer-threads {args.peer_threads}' if args.peer_threads else ''}",
        "machine": machine_info()})


if __name__ == "__main__":
    main()
