"""Framework overhead: the assembled model vs a hand-written plain-torch twin.

The reference model (``build_model`` from specs/reference.toml) and a deep 4+4-layer
variant (the same spec with ``depth = 4``) are rebuilt by hand in plain torch (nn.Embedding,
nn.LSTM bidirectional packed, one nn.Linear bridge per state tensor h and c, an nn.LSTMCell
decoder loop with input feeding, additive attention as in assembly/nn/attention.py — its
scores through the same sigmoid form 2 vᵀσ(2z) (see that module), so that the ratio
measures framework overhead and not the formula — the attentional tanh(W[c; h]) layer and
a linear output). The assembled model's weights are
copied in, the outputs are checked equal (eval mode, atol 1e-5), then forward + backward
(train mode, same dropout placement; dropout masks differ between the two, which does not
change the work) is timed on the same batches, alternating the two models repeat by
repeat, and the median per-batch time is compared.

    python benchmarks/overhead.py [--batches 20] [--repeats 7] [--out ...]

This file also holds the small helpers the other benchmark scripts share.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPEC_PATH = ROOT / "specs" / "reference.toml"
SPECIALS = 4  # PAD, BOS, EOS, UNK (assembly.data.vocab order)
BOS, EOS = 1, 2

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- shared helpers


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def reference_spec(depth: int = 1) -> Any:
    from assembly.spec import load_spec

    spec = load_spec(SPEC_PATH)
    return spec if depth == 1 else attrs.evolve(spec, depth=depth)


def make_batches(count: int, batch: int = 64, seed: int = 1, min_length: int = 3,
                 max_length: int = 20) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Random reverse-task batches: (source, source_lengths, target+EOS, target_lengths)."""
    rng = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        lengths = torch.randint(min_length, max_length + 1, (batch,), generator=rng)
        steps = int(lengths.max())
        source = torch.randint(SPECIALS, SPECIALS + 20, (batch, steps), generator=rng)
        valid = torch.arange(steps)[None, :] < lengths[:, None]
        source = source * valid
        target = torch.zeros(batch, steps + 1, dtype=torch.long)
        for i, n in enumerate(lengths.tolist()):
            target[i, :n] = source[i, :n].flip(0)
            target[i, n] = EOS
        out.append((source, lengths, target, lengths + 1))
    return out


def interleaved(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 1
                ) -> dict[str, list[float]]:
    """Run every fn ``warmup`` times, then ``repeats`` rounds alternating the order
    (ABAB / BABA ...); returns each fn's seconds per round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            begin = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - begin)
    return times


def timed_update(model: Any, batch: tuple[Tensor, ...]) -> float:
    """Seconds of one forward + per-token loss + backward of an assembled ``model`` on
    ``batch`` (source, source lengths, target, target lengths), gradients cleared first."""
    model.zero_grad(set_to_none=True)
    begin = time.perf_counter()
    outputs = model(*batch)
    total, count = model.loss(outputs, batch[2])
    (total / count).backward()
    return time.perf_counter() - begin


def paired(run: Callable[[Any, bool], float], batches: list[Any], repeats: int,
           warmup: int = 2) -> tuple[list[float], list[float], list[float]]:
    """``run(batch, first) -> seconds`` for two variants, alternated batch by batch (AB,
    then BA for the next batch, ...) after ``warmup`` batches of each; returns the first
    variant's times, the second's, and each pair's ratio second / first."""
    for batch in batches[:warmup]:
        run(batch, True)
        run(batch, False)
    firsts, seconds, ratios = [], [], []
    for repeat in range(repeats):
        for index, batch in enumerate(batches):
            if (repeat + index) % 2 == 0:
                a = run(batch, True)
                b = run(batch, False)
            else:
                b = run(batch, False)
                a = run(batch, True)
            firsts.append(a)
            seconds.append(b)
            ratios.append(b / a)
    return firsts, seconds, ratios


# --------------------------------------------------------------------------- plain torch twin


class PlainSeq2Seq(nn.Module):
    """Embeddings 32, L-layer bi-LSTM (packed), linear bridge per h and c and layer,
    L LSTMCells with input feeding, additive attention after the step, linear output."""

    def __init__(self, vocab: int, emb: int, enc_hidden: int, dec_hidden: int, layers: int,
                 dropout: float) -> None:
        super().__init__()
        self.src_emb = nn.Embedding(vocab, emb, padding_idx=0)
        self.tgt_emb = nn.Embedding(vocab, emb, padding_idx=0)
        self.encoder = nn.LSTM(emb, enc_hidden, num_layers=layers, bidirectional=True,
                               batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.bridge_h = nn.ModuleList(nn.Linear(2 * enc_hidden, dec_hidden)
                                      for _ in range(layers))
        self.bridge_c = nn.ModuleList(nn.Linear(2 * enc_hidden, dec_hidden)
                                      for _ in range(layers))
        self.cells = nn.ModuleList(
            nn.LSTMCell(emb + dec_hidden if i == 0 else dec_hidden, dec_hidden)
            for i in range(layers))
        self.query_map = nn.Linear(dec_hidden, dec_hidden, bias=False)
        self.key_map = nn.Linear(2 * enc_hidden, dec_hidden)
        self.vector = nn.Linear(dec_hidden, 1, bias=False)
        self.attentional = nn.Linear(2 * enc_hidden + dec_hidden, dec_hidden)
        self.out = nn.Linear(dec_hidden, vocab)
        self.drop = nn.Dropout(dropout)
        self.layers = layers
        self.dec_hidden = dec_hidden

    def forward(self, source: Tensor, source_lengths: Tensor, target: Tensor) -> Tensor:
        batch, steps = target.shape
        packed = pack_padded_sequence(self.drop(self.src_emb(source)), source_lengths,
                                      batch_first=True, enforce_sorted=False)
        enc_out, (h_n, c_n) = self.encoder(packed)
        values, _ = pad_packed_sequence(enc_out, batch_first=True,
                                        total_length=source.shape[1])
        keys = self.key_map(values) * 2  # 2 U k: vᵀ tanh(z) = 2 vᵀ σ(2z) − Σv, as the framework
        mask = torch.arange(source.shape[1])[None, :] < source_lengths[:, None]
        h_n = h_n.view(self.layers, 2, batch, -1)
        c_n = c_n.view(self.layers, 2, batch, -1)
        hs = [self.bridge_h[i](torch.cat([h_n[i, 0], h_n[i, 1]], -1))
              for i in range(self.layers)]
        cs = [self.bridge_c[i](torch.cat([c_n[i, 0], c_n[i, 1]], -1))
              for i in range(self.layers)]
        previous = torch.cat([torch.full((batch, 1), BOS, dtype=torch.long), target[:, :-1]], 1)
        embedded = self.drop(self.tgt_emb(previous))
        feed = values.new_zeros(batch, self.dec_hidden)
        features = []
        for t in range(steps):
            x = torch.cat([embedded[:, t], feed], -1)
            for i, cell in enumerate(self.cells):
                hs[i], cs[i] = cell(x, (hs[i], cs[i]))
                x = self.drop(hs[i]) if i < self.layers - 1 else hs[i]
            squashed = torch.sigmoid(keys + (self.query_map(x) * 2).unsqueeze(1))
            scores = self.vector(squashed).squeeze(2) * 2
            weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
            context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)
            feed = self.drop(torch.tanh(self.attentional(torch.cat([context, x], -1))))
            features.append(feed)
        return self.out(torch.stack(features, 1))


def copy_weights(model: Any, plain: PlainSeq2Seq) -> None:
    """Copy the assembled model's weights into the plain twin (names differ, shapes not)."""
    with torch.no_grad():
        plain.src_emb.weight.copy_(model.source_embedding.weight)
        plain.tgt_emb.weight.copy_(model.target_embedding.weight)
        for i, layer in enumerate(model.encoder.layers):
            directions = (("", layer.forward_layer), ("_reverse", layer.backward_layer))
            for suffix, direction in directions:
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(plain.encoder, f"{name}_l{i}{suffix}").copy_(getattr(direction, name))
        for i, maps in enumerate(model.bridge.maps):
            for target, source in zip((plain.bridge_h[i], plain.bridge_c[i]), maps, strict=True):
                target.load_state_dict(source.state_dict())
        for cell, layer in zip(plain.cells, model.decoder.layers, strict=True):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(layer, name))
        attention = model.decoder.attention
        plain.query_map.load_state_dict(attention.query_map.state_dict())
        plain.key_map.load_state_dict(attention.key_map.state_dict())
        plain.vector.load_state_dict(attention.vector.state_dict())
        plain.attentional.load_state_dict(model.decoder.attentional.state_dict())
        plain.out.load_state_dict(model.output.proj.state_dict())


def twins(depth: int) -> tuple[Any, PlainSeq2Seq]:
    from assembly.build import build_model

    spec = reference_spec(depth)
    model = build_model(spec, seed=1)
    plain = PlainSeq2Seq(spec.source.vocab_size, spec.source.embedding, 64, 128, depth, 0.1)
    copy_weights(model, plain)
    n_ours = sum(p.numel() for p in model.parameters())
    n_plain = sum(p.numel() for p in plain.parameters())
    assert n_ours == n_plain, (n_ours, n_plain)
    return model, plain


def check_equal(model: Any, plain: PlainSeq2Seq, batch: tuple[Tensor, ...]) -> float:
    source, source_lengths, target, target_lengths = batch
    model.eval()
    plain.eval()
    with torch.no_grad():
        ours = model(source, source_lengths, target, target_lengths).predictions
        theirs = plain(source, source_lengths, target)
    valid = (torch.arange(target.shape[1])[None, :] < target_lengths[:, None])
    diff = float((ours - theirs)[valid].abs().max())
    assert torch.allclose(ours[valid], theirs[valid], atol=1e-5), diff
    return diff


def train_step_fns(model: Any, plain: PlainSeq2Seq, batches: list[tuple[Tensor, ...]]
                   ) -> dict[str, Callable[[], None]]:
    loss_fn = nn.CrossEntropyLoss(ignore_index=0, reduction="sum")
    model.train()
    plain.train()

    def ours() -> None:
        for source, source_lengths, target, target_lengths in batches:
            model.zero_grad(set_to_none=True)
            out = model(source, source_lengths, target, target_lengths)
            total, count = model.loss(out, target)
            (total / count).backward()

    def hand() -> None:
        for source, source_lengths, target, _ in batches:
            plain.zero_grad(set_to_none=True)
            logits = plain(source, source_lengths, target)
            count = (target != 0).sum()
            (loss_fn(logits.reshape(-1, logits.shape[-1]), target.reshape(-1)) / count).backward()

    return {"assembly": ours, "plain_torch": hand}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=4, help="batches of 64 per round")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = make_batches(args.batches)
    rows = {}
    for depth, label in ((1, "reference (1+1 layers)"), (4, "deep (4+4 layers)")):
        model, plain = twins(depth)
        diff = check_equal(model, plain, batches[0])
        times = interleaved(train_step_fns(model, plain, batches), args.repeats)
        ours = statistics.median(times["assembly"]) / args.batches
        hand = statistics.median(times["plain_torch"]) / args.batches
        # per-round ratios: each round ran both models back to back
        pair_ratios = [a / b for a, b in zip(times["assembly"], times["plain_torch"],
                                             strict=True)]
        rows[label] = {
            "depth": depth, "parameters": sum(p.numel() for p in model.parameters()),
            "max_abs_output_diff": diff,
            "assembly_ms_per_batch": round(ours * 1e3, 3),
            "plain_torch_ms_per_batch": round(hand * 1e3, 3),
            "ratio": round(ours / hand, 4),
            "median_of_paired_ratios": round(statistics.median(pair_ratios), 4),
            "paired_ratios": [round(r, 4) for r in pair_ratios],
            "target": "ratio <= 1.03", "met": ours / hand <= 1.03,
        }
    print(f"{'model':<24} {'params':>8} {'max|diff|':>10} {'ours ms':>9} {'plain ms':>9} "
          f"{'ratio':>7} {'paired':>7} {'<=1.03':>7}")
    for label, r in rows.items():
        print(f"{label:<24} {r['parameters']:>8} {r['max_abs_output_diff']:>10.2e} "
              f"{r['assembly_ms_per_batch']:>9.2f} {r['plain_torch_ms_per_batch']:>9.2f} "
              f"{r['ratio']:>7.3f} {r['median_of_paired_ratios']:>7.3f} {r['met']!s:>7}")
    write_json("overhead", {
        "what": "forward+backward per batch of 64 reverse-task pairs (3-20 tokens), train "
                "mode, assembled model vs hand-written plain torch with the same weights",
        "how_measured": f"python benchmarks/overhead.py --batches {args.batches} --repeats "
                        f"{args.repeats}: {args.batches} batches per round, rounds alternate "
                        "the two models (ABBA...), one warm-up round, median round / batches",
        "rows": rows, "machine": machine_info()})


if __name__ == "__main__":
    main()
