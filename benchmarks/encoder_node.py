"""The LSTM layer node (assembly.nn.lstm_node) vs torch's kernels, paired.

Three measurements, one thread, each pair of variants alternating batch by batch
(ABAB / BABA) on the same batches; the figure is the median of the per-batch ratios
torch / node (> 1: the node is faster):

- ``encoder``: the reference model's encoder (embeddings 32, source dropout, one
  bidirectional LSTM layer of 64 per direction), forward and forward + backward, batch 64,
  with FusedLSTM.use_node on and off;
- ``update``: a whole training update of the reference model (forward, loss, backward),
  the same switch;
- ``kernel`` (``--kernel``): one layer, the node called directly vs ``_VF.lstm``, over
  direction, hidden size, padding and grad mode: the measurements behind
  :func:`lstm_node.applies` (which routes unpadded batches to torch).

Both kinds of batch: ``unpadded`` (every row of a batch the same length, 3–20 across
batches, as length bucketing mostly gives; the layers then use oneDNN either way, so the
ratio shows the switch costs nothing) and ``padded`` (random lengths 3–20 per row).

    python benchmarks/encoder_node.py [--batches 20] [--repeats 5] [--kernel] [--out]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import machine_info, make_batches, reference_spec, timed_update, write_json
from overhead import paired as alternate


def paired(run: Callable[[Any, bool], float], batches: list[Any], repeats: int
           ) -> dict[str, Any]:
    """``run(batch, node) -> seconds``, alternated per batch; medians and the ratio."""
    node_times, torch_times, ratios = alternate(run, batches, repeats)
    return {"node_ms": round(statistics.median(node_times) * 1e3, 3),
            "torch_ms": round(statistics.median(torch_times) * 1e3, 3),
            "torch_over_node": round(statistics.median(ratios), 3),
            "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)],
            "pairs": len(ratios)}


def reference_batches(kind: str, count: int, batch: int) -> list[Any]:
    if kind == "padded":
        return make_batches(count, batch=batch)
    lengths = torch.randint(3, 21, (count,), generator=torch.Generator().manual_seed(2))
    return [make_batches(1, batch=batch, seed=10 + i, min_length=n, max_length=n)[0]
            for i, n in enumerate(lengths.tolist())]


def switch(model: Any, node: bool) -> None:
    from assembly.nn.fused import FusedLSTM

    for module in model.modules():
        if isinstance(module, FusedLSTM):
            module.use_node = node


def encoder_runs(model: Any) -> tuple[Callable[..., float], Callable[..., float]]:
    def forward(batch: Any, node: bool) -> float:
        switch(model, node)
        with torch.no_grad():
            begin = time.perf_counter()
            model.encoder(model.source_dropout(model.source_embedding(batch[0])), batch[1])
            return time.perf_counter() - begin

    def both(batch: Any, node: bool) -> float:
        switch(model, node)
        model.zero_grad(set_to_none=True)
        begin = time.perf_counter()
        encoded = model.encoder(model.source_dropout(model.source_embedding(batch[0])),
                                batch[1])
        loss = encoded.outputs.sum() + sum(t.sum() for s in encoded.states for t in s)
        loss.backward()
        return time.perf_counter() - begin

    return forward, both


def update_run(model: Any) -> Callable[..., float]:
    def run(batch: Any, node: bool) -> float:
        switch(model, node)
        return timed_update(model, batch)

    return run


def kernel_rows(repeats: int) -> dict[str, Any]:
    """One layer, node vs ``_VF.lstm``, input 32, lengths 3–20 (padded) or 13 (unpadded)."""
    from torch import _VF
    from torch.nn.utils.rnn import pack_padded_sequence

    from assembly.nn.lstm_node import LSTMLayer

    rows = {}
    configs = [(64, 64, True), (64, 64, False), (64, 256, True), (64, 256, False),
               (500, 64, True)]
    for batch, hidden, bidirectional in configs:
        directions = 2 if bidirectional else 1
        generator = torch.Generator().manual_seed(0)
        weights = [(torch.randn(shape, generator=generator) / hidden ** 0.5).requires_grad_()
                   for _ in range(directions)
                   for shape in ((4 * hidden, 32), (4 * hidden, hidden), (4 * hidden,),
                                 (4 * hidden,))]
        for padded in (True, False):
            lengths = (torch.randint(3, 21, (batch,), generator=generator) if padded
                       else torch.full((batch,), 13))
            x = torch.randn(batch, int(lengths.max()), 32, generator=generator)
            zeros = torch.zeros(directions, batch, hidden)
            for train in (True, False) if batch == 64 else (False,):
                def run(_: Any, node: bool, x: torch.Tensor = x, lengths: torch.Tensor = lengths,
                        train: bool = train, padded: bool = padded,
                        bidirectional: bool = bidirectional, weights: list = weights,
                        zeros: torch.Tensor = zeros) -> float:
                    inputs = x.detach().requires_grad_(train)
                    begin = time.perf_counter()
                    with torch.set_grad_enabled(train):
                        if padded:
                            packed = pack_padded_sequence(inputs, lengths, batch_first=True,
                                                          enforce_sorted=False)
                            data, sizes = packed.data, packed.batch_sizes
                        else:
                            data, sizes = inputs, torch.full((x.shape[1],), x.shape[0])
                        if node:
                            outputs = LSTMLayer.apply(True, tuple(sizes.tolist()), data, None,
                                                      None, *weights)[:-2]
                            output = torch.cat(outputs, -1)
                        elif padded:
                            output = _VF.lstm(data, sizes, (zeros, zeros), weights, True, 1,
                                              0.0, train, bidirectional)[0]
                        else:
                            output = _VF.lstm(data, (zeros, zeros), weights, True, 1, 0.0,
                                              train, bidirectional, True)[0]
                        if train:
                            output.sum().backward()
                    return time.perf_counter() - begin

                label = (f"B={batch} H={hidden} {'bi' if bidirectional else 'uni'} "
                         f"{'padded' if padded else 'unpadded'} "
                         f"{'train' if train else 'eval'}")
                count = max(2, 8 * 64 * 64 // (batch * hidden))
                rows[label] = paired(run, list(range(count)), repeats)
                print(f"  {label}: {rows[label]}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kernel", action="store_true", help="also the one-layer matrix")
    parser.add_argument("--out", action="store_true", help="write benchmarks/results/...")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from assembly.build import build_model
    from assembly.registry import make_registry

    registry = make_registry(entrypoints=False)
    model = build_model(reference_spec(), registry, seed=0)
    model.train()
    result: dict[str, Any] = {
        "model": f"reference, batch {args.batch_size}, train mode, {args.threads} thread(s)"}
    for kind in ("unpadded", "padded"):
        batches = reference_batches(kind, args.batches, args.batch_size)
        forward, both = encoder_runs(model)
        result[f"encoder_forward_{kind}"] = paired(forward, batches, args.repeats)
        result[f"encoder_forward_backward_{kind}"] = paired(both, batches, args.repeats)
        result[f"update_{kind}"] = paired(update_run(model), batches, args.repeats)
        for key in ("encoder_forward", "encoder_forward_backward", "update"):
            print(f"{key}_{kind}: {result[f'{key}_{kind}']}", flush=True)
    if args.kernel:
        print("kernel (one layer, node vs _VF.lstm):")
        result["kernel"] = kernel_rows(args.repeats)
    result["machine"] = machine_info()
    if args.out:
        write_json("encoder_node", result)


if __name__ == "__main__":
    main()
