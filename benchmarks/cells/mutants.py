"""GRU mutants (Jozefowicz, Zaremba & Sutskever 2015) vs the GRU on a small sequence task.

The task is the paper's "arithmetic" in sequence-to-sequence form: the source is the
decimal digits of two numbers joined by ``+`` (one character per token, 3–11 tokens), the
target the digits of their sum (the framework's built-in ``addition`` generator). Each cell
is used in the same attentional model, built by the framework from a spec: embeddings 32,
a bidirectional encoder (2 × 64, concatenated), a linear bridge, a decoder of 128 units,
additive attention after the step (no input feeding, so teacher-forced decoding runs the
whole sequence through ``forward``), Adam 3e-3, batch 64, clip 1.0. Every cell trains for
the same number of updates on the same batches from the same seed; we report greedy
exact match and teacher-forced token accuracy on 1,000 held-out pairs, and the time.

    python benchmarks/cells/mutants.py                       # gru, jzs1, jzs2, jzs3; 1 seed
    python benchmarks/cells/mutants.py --seeds 0,1 --updates 2000

Writes ``benchmarks/results/cells_mutants.json``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import torch
from common import registry, write_results
from torch import Tensor

from assembly.build import build_model
from assembly.data.tasks import generate_pairs
from assembly.plugin import EOS_ID, PAD_ID
from assembly.spec import (
    AttentionSpec,
    BridgeSpec,
    DecoderSpec,
    EncoderSpec,
    Spec,
    TokenSideSpec,
)

CHARACTERS = list("0123456789+")
VOCAB = 4 + len(CHARACTERS)  # <pad> <s> </s> <unk> + characters
IDS = {c: 4 + i for i, c in enumerate(CHARACTERS)}


def encode(pairs: list[tuple[list[str], list[str]]]) -> list[tuple[list[int], list[int]]]:
    return [([IDS[c] for c in s], [IDS[c] for c in t] + [EOS_ID]) for s, t in pairs]


def pad(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(r) for r in rows])
    out = torch.full((len(rows), int(lengths.max())), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r)
    return out, lengths


def model_spec(cell: str, registry: Any) -> Spec:
    cell_spec = registry.get("cell", cell).spec()
    return Spec(
        name=f"addition-{cell}",
        source=TokenSideSpec(vocab_size=VOCAB, embedding=32),
        target=TokenSideSpec(vocab_size=VOCAB, embedding=32),
        encoder=EncoderSpec(cell=cell_spec, hidden=64, bidirectional=True),
        bridge=BridgeSpec(type="linear"),
        decoder=DecoderSpec(cell=cell_spec, hidden=128,
                            attention=AttentionSpec(score="additive", input_feeding=False)),
    )


def evaluate(model: Any, sampler: Any, data: list[tuple[list[int], list[int]]]
             ) -> dict[str, float]:
    model.eval()
    exact = correct = tokens = 0
    with torch.no_grad():
        for start in range(0, len(data), 500):
            chunk = data[start:start + 500]
            source, source_lengths = pad([s for s, _ in chunk])
            target, target_lengths = pad([t for _, t in chunk])
            hypotheses = sampler.decode(model, source, source_lengths)
            for hyp, (_, t) in zip(hypotheses.best(), chunk, strict=True):
                exact += hyp == t[:-1]
            outputs = model(source, source_lengths, target, target_lengths)
            predicted = outputs.predictions.argmax(-1)
            mask = outputs.mask
            correct += int(((predicted == target) & mask).sum())
            tokens += int(mask.sum())
    model.train()
    return {"exact_match": exact / len(data), "token_accuracy": correct / tokens}


def train(cell: str, seed: int, args: argparse.Namespace, train_data: list, dev: list,
          reg: Any) -> dict[str, Any]:
    spec = model_spec(cell, reg)
    model = build_model(spec, reg, seed=seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    sampler = reg.get("sampler", "greedy").build(reg.get("sampler", "greedy").spec())
    order = random.Random(seed)
    started = time.perf_counter()
    curve = []
    for update in range(1, args.updates + 1):
        chunk = order.sample(train_data, args.batch)
        source, source_lengths = pad([s for s, _ in chunk])
        target, target_lengths = pad([t for _, t in chunk])
        outputs = model(source, source_lengths, target, target_lengths)
        loss, count = model.loss(outputs, target)
        optimiser.zero_grad()
        (loss / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        if update % args.eval_every == 0 or update == args.updates:
            elapsed = time.perf_counter() - started
            results = evaluate(model, sampler, dev)
            started += time.perf_counter() - started - elapsed  # evaluation is not timed
            curve.append({"update": update, "train_seconds": round(elapsed, 1), **results})
            print(f"  {cell:5s} seed {seed} update {update:5d} {elapsed:5.0f}s  "
                  f"loss {(loss / count).item():.3f}  exact {results['exact_match']:.3f}  "
                  f"token acc {results['token_accuracy']:.3f}", flush=True)
    return {"cell": cell, "seed": seed,
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_seconds": curve[-1]["train_seconds"], **{k: curve[-1][k] for k in
                                                            ("exact_match", "token_accuracy")},
            "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default="gru,jzs1,jzs2,jzs3")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--updates", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--max-length", type=int, default=11)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reg = registry()
    train_data = encode(generate_pairs("addition", 20000, seed=1, min_length=3,
                                       max_length=args.max_length))
    dev = encode(generate_pairs("addition", 1000, seed=2, min_length=3,
                                max_length=args.max_length))
    seen = {tuple(s) for s, _ in train_data}
    dev = [pair for pair in dev if tuple(pair[0]) not in seen]
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for cell in args.cells.split(","):
            runs.append(train(cell, seed, args, train_data, dev, reg))
    summary = {}
    print(f"\naddition ({len(dev)} held-out pairs), {args.updates} updates per run")
    for cell in args.cells.split(","):
        mine = [r for r in runs if r["cell"] == cell]
        summary[cell] = {
            "parameters": mine[0]["parameters"],
            "exact_match_mean": statistics.mean(r["exact_match"] for r in mine),
            "token_accuracy_mean": statistics.mean(r["token_accuracy"] for r in mine),
            "train_seconds_mean": statistics.mean(r["train_seconds"] for r in mine),
        }
        s = summary[cell]
        print(f"  {cell:5s} {s['parameters']:7,d} parameters  exact match "
              f"{s['exact_match_mean']:.3f}  token accuracy {s['token_accuracy_mean']:.3f}  "
              f"{s['train_seconds_mean']:5.0f}s  (seeds: "
              + ", ".join(f"{r['exact_match']:.3f}" for r in mine) + ")")
    path = write_results("cells_mutants", {"task": "addition", "config": vars(args),
                                           "dev_pairs": len(dev), "summary": summary,
                                           "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
