"""Decoding speed: greedy and beam-5 sentences per second at batch 500.

The reference-sized model of ``benchmarks/peers`` (embeddings 32, bidirectional LSTM 2×64
concatenated, linear bridge, LSTM decoder 128, additive attention with input feeding;
vocabulary 24 = 4 specials + 20 symbols), by default trained for 626 updates (batch 64,
Adam 1e-3, clip 1.0) on the built-in reverse task like the peers, so that outputs stop
at EOS as a trained model's do; ``--train-updates 0`` measures a random model instead
(its outputs mostly run to the length limit). Decoding: 1,000 reverse-task sources of
3–20 symbols (seed 3, the peers' test split), sorted by length and cut into batches of
500 (as ``assembly.decode.generate`` does), each sampler run once to warm up and then
``--repeats`` times; the median decode time gives sentences/s. Results go to
``benchmarks/results/decode_speed.json``.

Usage::

    pip install -e . --no-deps && pip install -e plugins/assembly-samplers --no-deps
    python benchmarks/decode/speed.py                      # trains 626 updates first
    python benchmarks/decode/speed.py --train-updates 0    # random weights
    python benchmarks/decode/speed.py --profile            # torch.profiler table of beam-5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from assembly_samplers import BeamSpec, SamplersPlugin

from assembly.build import build_model
from assembly.builtin.samplers import GreedySpec
from assembly.data.tasks import generate_pairs, symbol_names
from assembly.registry import make_registry
from assembly.spec import AttentionSpec, BridgeSpec, DecoderSpec, EncoderSpec, Spec, TokenSideSpec

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "decode_speed.json"
SPECIALS = 4  # PAD, BOS, EOS, UNK
EOS = 2


def reference_spec() -> Spec:
    side = TokenSideSpec(vocab_size=SPECIALS + 20, embedding=32, dropout=0.1)
    return Spec(
        source=side, target=side,
        encoder=EncoderSpec(hidden=64, bidirectional=True, merge="concat"),
        bridge=BridgeSpec(type="linear"),
        decoder=DecoderSpec(hidden=128, attention=AttentionSpec(score="additive",
                                                                input_feeding=True,
                                                                dropout=0.1)),
    )


def encode_pairs(pairs: list[tuple[list[str], list[str]]]) -> list[tuple[list[int], list[int]]]:
    ids = {name: SPECIALS + i for i, name in enumerate(symbol_names(20))}
    return [([ids[t] for t in s], [ids[t] for t in t_]) for s, t_ in pairs]


def pad(rows: list[list[int]], extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(r) + extra for r in rows])
    out = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
        if extra:
            out[i, len(r)] = EOS
    return out, lengths


def train(model: Any, updates: int, seed: int = 1) -> float:
    """Teacher-forced training on the reverse task; returns the wall time."""
    if updates == 0:
        return 0.0
    pairs = encode_pairs(generate_pairs("reverse", 20_000, seed))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    begin = time.perf_counter()
    for update in range(updates):
        index = torch.randint(0, len(pairs), (64,), generator=generator).tolist()
        source, source_lengths = pad([pairs[i][0] for i in index])
        target, target_lengths = pad([pairs[i][1] for i in index], extra=1)  # + EOS
        outputs = model(source, source_lengths, target, target_lengths)
        loss, count = model.loss(outputs, target)
        optimizer.zero_grad()
        (loss / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if update % 200 == 0:
            print(f"  update {update}: loss {float(loss.detach() / count):.3f}", flush=True)
    return time.perf_counter() - begin


def batches(sources: list[list[int]], size: int) -> list[tuple[list[int], Any, Any]]:
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out = []
    for begin in range(0, len(order), size):
        chunk = order[begin:begin + size]
        source, lengths = pad([sources[i] for i in chunk])
        out.append((chunk, source, lengths))
    return out


def decode_all(sampler: Any, model: Any, prepared: list[Any], count: int
               ) -> tuple[float, float, list[list[int]]]:
    """(wall seconds, process CPU seconds, best output per source in input order)."""
    outputs: list[list[int]] = [[] for _ in range(count)]
    begin, cpu = time.perf_counter(), time.process_time()
    for chunk, source, lengths in prepared:
        hyps = sampler.decode(model, source, lengths)
        for row, i in enumerate(chunk):
            outputs[i] = hyps.tokens[row][0]
    return time.perf_counter() - begin, time.process_time() - cpu, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-updates", type=int, default=626)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--profile", action="store_true", help="profile one beam-5 decode")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--weights", type=Path, default=None,
                        help="reuse trained weights from this file (written after training "
                             "when missing)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = make_registry(plugins=[SamplersPlugin()], entrypoints=False)
    model = build_model(reference_spec(), registry, seed=1)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"model: {parameters} parameters; training {args.train_updates} updates", flush=True)
    if args.weights is not None and args.weights.exists():
        model.load_state_dict(torch.load(args.weights, weights_only=True))
        train_s = None
        print(f"  loaded {args.weights}")
    else:
        train_s = train(model, args.train_updates)
        if args.weights is not None:
            torch.save(model.state_dict(), args.weights)
    model.eval()
    pairs = encode_pairs(generate_pairs("reverse", args.sentences, 3))
    sources = [s for s, _ in pairs]
    prepared = batches(sources, args.batch)
    samplers = {
        "greedy": registry.get("sampler", "greedy").build(GreedySpec()),
        "beam5": registry.get("sampler", "beam").build(BeamSpec(width=5)),
    }
    if args.profile:
        from torch.profiler import profile

        with torch.no_grad(), profile() as prof:
            decode_all(samplers["beam5"], model, prepared, len(sources))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        return
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    for name, sampler in samplers.items():
        decode_all(sampler, model, prepared, len(sources))  # warm-up
        runs, cpu_runs = [], []
        for _ in range(args.repeats):
            seconds, cpu, outputs = decode_all(sampler, model, prepared, len(sources))
            runs.append(seconds)
            cpu_runs.append(cpu)
        median = statistics.median(runs)
        cpu_median = statistics.median(cpu_runs)
        exact = sum(o == t for o, (_, t) in zip(outputs, pairs, strict=True)) / len(pairs)
        mean_length = sum(len(o) for o in outputs) / len(outputs)
        results[name] = {"sent_per_s": round(len(sources) / median, 1),
                         "decode_s": round(median, 4), "runs_s": [round(r, 4) for r in runs],
                         "best_run_sent_per_s": round(len(sources) / min(runs), 1),
                         "cpu_s": round(cpu_median, 4),
                         "sent_per_cpu_s": round(len(sources) / cpu_median, 1),
                         "exact_match": round(exact, 4), "mean_output_tokens": mean_length}
        print(f"{name}: {results[name]['sent_per_s']} sent/s (median of {args.repeats}: "
              f"{median:.3f} s wall, {cpu_median:.3f} s CPU; exact match {exact:.3f}; "
              f"mean length {mean_length:.1f})",
              flush=True)
    report = {
        "model": "emb 32, bi-LSTM 2x64 concat, linear bridge, LSTM 128, additive attention, "
                 "input feeding; vocab 24",
        "parameters": parameters,
        "train_updates": args.train_updates,
        "train_s": None if train_s is None else round(train_s, 1),
        "weights": "trained in this run" if train_s is not None else f"loaded {args.weights}",
        "sentences": len(sources),
        "batch": args.batch,
        "max_length": "2·|source| + 10 (the model's default rule)",
        **results,
        "how_measured": "benchmarks/decode/speed.py: sources sorted by length, batches of "
                        f"{args.batch}, Sampler.decode wall time (encoder included; "
                        "cpu_s: process CPU time of the same runs), median "
                        f"of {args.repeats} runs after one warm-up; beam5 = "
                        "assembly-samplers 'beam' width 5, no length penalty, n_best 1, "
                        "early_finish",
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "load_average_before": round(load_before, 2),
                    "load_average_after": round(os.getloadavg()[0], 2),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %z")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
