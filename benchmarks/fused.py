"""Built-in fused encoder layers vs raw torch.nn.LSTM / nn.GRU on the same packed batch.

assembly's FusedLSTM / FusedGRU (bidirectional: two of them in a BidirectionalLayer, which
runs both directions in one kernel call; unidirectional: one layer) against nn.LSTM /
nn.GRU with the same weights, input (B=64, lengths 3-20, 32 features) and packing;
forward + backward of the summed outputs, the two timed alternately, median.

    python benchmarks/fused.py [--batches 20] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import interleaved, machine_info, write_json


def build(cell: str, bidirectional: bool, input_size: int, hidden: int
          ) -> tuple[nn.Module, nn.Module]:
    from assembly.builtin.cells import GruSpec, LstmSpec
    from assembly.nn.fused import FusedGRU, FusedLSTM
    from assembly.nn.layers import BidirectionalLayer

    torch.manual_seed(1)
    layer_cls, spec, raw_cls = ((FusedLSTM, LstmSpec(), nn.LSTM) if cell == "lstm"
                                else (FusedGRU, GruSpec(), nn.GRU))
    forward = layer_cls(spec, input_size, hidden)
    ours: nn.Module = forward
    directions = [("", forward)]
    if bidirectional:
        backward = layer_cls(spec, input_size, hidden)
        ours = BidirectionalLayer(forward, backward, "concat")
        directions.append(("_reverse", backward))
    raw = raw_cls(input_size, hidden, batch_first=True, bidirectional=bidirectional)
    with torch.no_grad():
        for suffix, layer in directions:
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(raw, f"{name}_l0{suffix}").copy_(getattr(layer, name))
    return ours, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(1)
    data = []
    for _ in range(args.batches):
        lengths = torch.randint(3, 21, (64,), generator=gen)
        data.append((torch.randn(64, int(lengths.max()), 32, generator=gen), lengths))
    rows = {}
    for cell in ("lstm", "gru"):
        for bidirectional in (True, False):
            ours, raw = build(cell, bidirectional, 32, 64)

            def run_ours(ours: nn.Module = ours, bidirectional: bool = bidirectional) -> None:
                for x, lengths in data:
                    x = x.requires_grad_()
                    out = ours(x, lengths)[0]
                    out.sum().backward()

            def run_raw(raw: nn.Module = raw) -> None:
                for x, lengths in data:
                    x = x.requires_grad_()
                    packed = pack_padded_sequence(x, lengths, batch_first=True,
                                                  enforce_sorted=False)
                    out, _ = raw(packed)
                    out, _ = pad_packed_sequence(out, batch_first=True,
                                                 total_length=x.shape[1])
                    out.sum().backward()

            x, lengths = data[0]
            with torch.no_grad():
                mine = ours(x, lengths)[0]
                theirs, _ = pad_packed_sequence(
                    raw(pack_padded_sequence(x, lengths, batch_first=True,
                                             enforce_sorted=False))[0],
                    batch_first=True, total_length=x.shape[1])
            diff = float((mine - theirs).abs().max())
            assert diff < 1e-5, diff
            times = interleaved({"assembly": run_ours, "torch": run_raw}, args.repeats)
            a = statistics.median(times["assembly"]) / args.batches
            b = statistics.median(times["torch"]) / args.batches
            label = f"{cell} {'bidirectional' if bidirectional else 'unidirectional'}"
            rows[label] = {"max_abs_output_diff": diff, "assembly_ms": round(a * 1e3, 3),
                           "torch_ms": round(b * 1e3, 3), "ratio": round(a / b, 4),
                           "target": "ratio <= 1.05", "met": a / b <= 1.05}
    print(f"{'layer':<22} {'ours ms':>8} {'torch ms':>9} {'ratio':>7} {'<=1.05':>7}")
    for label, r in rows.items():
        print(f"{label:<22} {r['assembly_ms']:>8.3f} {r['torch_ms']:>9.3f} {r['ratio']:>7.3f} "
              f"{r['met']!s:>7}")
    write_json("fused", {
        "what": "one encoder layer, 32 -> 64 per direction, batch 64, lengths 3-20, packed; "
                "forward + backward of the summed outputs (ms per batch)",
        "how_measured": f"python benchmarks/fused.py --batches {args.batches} --repeats "
                        f"{args.repeats} --threads {args.threads}: alternating rounds, median",
        "rows": rows, "machine": machine_info()})


if __name__ == "__main__":
    main()
