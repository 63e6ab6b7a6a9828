"""Layer-per-device on real CUDA devices: parity with one device, and a training step's time.

For each configuration below that the machine's GPUs allow, the same randomly initialised
model (seed 0) is built twice, once on ``cuda:0`` alone and once placed by
``layer-per-device``; one teacher-forced training step (forward, loss, backward) and a
greedy decode run on both. Printed as JSON (and written to ``--out`` if given):

- ``loss_rel_diff``: |loss_placed − loss_single| / loss_single;
- ``max_grad_diff``: the largest absolute difference of any gradient element;
- ``greedy_equal``: whether both decode the same tokens;
- ``step_ms``: median time of a full training step (forward, backward, Adam) over
  ``--repeats`` steps after 3 warm-up steps, single device vs placed;
- ``error``: set when the placed model failed (e.g. a device mismatch), with the message.

Configurations: ``one-gpu-lists`` (every layer listed on ``cuda:0``), ``cpu-embeddings``
(embeddings on the CPU, the rest on ``cuda:0``: a real cross-device run with a single
GPU), and with two or more GPUs ``spread`` (encoder and decoder layers round-robin over
all GPUs, attention and output on the last) and ``spread-cpu-embeddings``.

Usage (on a GPU machine, from the repository root)::

    pip install -e . --no-deps && pip install -e plugins/assembly-placement --no-deps
    python benchmarks/placement/gpu_check.py --out benchmarks/results/placement_gpu.json

``--virtual`` runs the same checks on simulated devices on the CPU (``meta:k``, see
``assembly_placement.virtual``), to try the script without a GPU; it is slow, and its
times mean nothing: ``--virtual --hidden 32 --repeats 0``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from assembly_placement import LayerPerDeviceSpec, PlacementPlugin
from assembly_placement.virtual import real, virtual_devices

from assembly.build import build_model
from assembly.builtin.samplers import GreedySpec
from assembly.registry import make_registry
from assembly.spec import AttentionSpec, DecoderSpec, EncoderSpec, Spec, TokenSideSpec

BATCH, SOURCE_STEPS, TARGET_STEPS, VOCAB = 64, 30, 32, 1000


def model_spec(hidden: int, depth: int) -> Spec:
    """An attentional LSTM model of ``depth`` encoder and decoder layers."""
    return Spec(name="gpu-check", depth=depth,
                source=TokenSideSpec(vocab_size=VOCAB, embedding=hidden // 2),
                target=TokenSideSpec(vocab_size=VOCAB, embedding=hidden // 2),
                encoder=EncoderSpec(hidden=hidden),
                decoder=DecoderSpec(hidden=hidden, attention=AttentionSpec(input_feeding=True)))


def configurations(gpus: list[str], depth: int) -> dict[str, LayerPerDeviceSpec]:
    """The placements this machine's devices allow."""
    first = gpus[0]
    found = {
        "one-gpu-lists": LayerPerDeviceSpec(default=first, encoder=(first,) * depth,
                                            decoder=(first,) * depth),
        "cpu-embeddings": LayerPerDeviceSpec(default=first, embeddings="cpu"),
    }
    if len(gpus) > 1:
        encoder = tuple(gpus[i % len(gpus)] for i in range(depth))
        decoder = tuple(gpus[(depth + i) % len(gpus)] for i in range(depth))
        found["spread"] = LayerPerDeviceSpec(default=first, encoder=encoder, decoder=decoder,
                                             output=gpus[-1])
        found["spread-cpu-embeddings"] = attrs.evolve(found["spread"], embeddings="cpu")
    return found


def batch(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    source = torch.randint(4, VOCAB, (BATCH, SOURCE_STEPS), generator=generator)
    target = torch.randint(4, VOCAB, (BATCH, TARGET_STEPS), generator=generator)
    source_lengths = torch.randint(SOURCE_STEPS // 2, SOURCE_STEPS + 1, (BATCH,),
                                   generator=generator)
    target_lengths = torch.randint(TARGET_STEPS // 2, TARGET_STEPS + 1, (BATCH,),
                                   generator=generator)
    source_lengths[0], target_lengths[0] = SOURCE_STEPS, TARGET_STEPS
    for row in range(BATCH):
        source[row, int(source_lengths[row]):] = 0
        target[row, int(target_lengths[row]):] = 0
    return [source, source_lengths, target, target_lengths]


def one_step(model: Any, inputs: list[torch.Tensor]) -> tuple[float, dict[str, torch.Tensor]]:
    """Forward, loss, backward: (loss, gradients on the CPU)."""
    model.zero_grad(set_to_none=True)
    outputs = model(*inputs)
    total, count = model.loss(outputs, inputs[2])
    loss = total / count
    loss.backward()
    grads = {n: real(p.grad).detach().float().cpu() for n, p in model.named_parameters()
             if p.grad is not None}
    return float(real(loss)), grads


def step_time(model: Any, inputs: list[torch.Tensor], repeats: int,
              synchronize: Callable[[], None]) -> float:
    """Median milliseconds of a training step (forward, backward, Adam)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for index in range(repeats + 3):
        synchronize()
        started = time.perf_counter()
        outputs = model(*inputs)
        total, count = model.loss(outputs, inputs[2])
        optimizer.zero_grad(set_to_none=True)
        (total / count).backward()
        optimizer.step()
        synchronize()
        if index >= 3:
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def check(name: str, placement_spec: LayerPerDeviceSpec, spec: Spec, registry: Any,
          single_device: str, repeats: int, synchronize: Callable[[], None]) -> dict[str, Any]:
    inputs = batch()
    greedy = GreedySpec(max_length=TARGET_STEPS)
    sampler = registry.record_of(greedy).build(greedy)
    single = build_model(spec, registry, seed=0).to(single_device)
    single_inputs = [t.to(single_device) for t in inputs]
    loss_single, grads_single = one_step(single, single_inputs)
    decoded_single = sampler.decode(single.eval(), single_inputs[0], single_inputs[1]).tokens
    result: dict[str, Any] = {"name": name, "placement": attrs.asdict(placement_spec),
                              "error": None}
    try:
        placement = registry.record_of(placement_spec).build(placement_spec)
        placed = placement.apply(build_model(spec, registry, seed=0))
        device = placement.input_device(placed)
        placed_inputs = [t.to(device) for t in inputs]
        loss_placed, grads_placed = one_step(placed, placed_inputs)
        decoded = sampler.decode(placed.eval(), placed_inputs[0], placed_inputs[1]).tokens
        result["loss_rel_diff"] = abs(loss_placed - loss_single) / abs(loss_single)
        result["max_grad_diff"] = max(float((grads_placed[n] - g).abs().max())
                                      for n, g in grads_single.items())
        result["greedy_equal"] = decoded == decoded_single
        result["devices"] = sorted({str(p.device) for p in placed.parameters()})
        if repeats:
            result["step_ms"] = {
                "single": step_time(single.train(), single_inputs, repeats, synchronize),
                "placed": step_time(placed.train(), placed_inputs, repeats, synchronize)}
    except Exception as error:  # report every configuration, whatever fails
        result["error"] = f"{type(error).__name__}: {error}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed training steps per configuration (0: no timing)")
    parser.add_argument("--virtual", action="store_true",
                        help="simulate four devices on the CPU instead of using CUDA")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    registry = make_registry(plugins=[PlacementPlugin()], entrypoints=False)
    spec = model_spec(args.hidden, args.depth)
    report: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                              "hidden": args.hidden, "depth": args.depth, "batch": BATCH,
                              "results": []}
    if args.virtual:
        gpus = [f"meta:{i}" for i in range(4)]
        report["device"] = "virtual (meta:0..3 simulated on the CPU)"
        context: Any = virtual_devices()
        single_device = "meta:0"

        def synchronize() -> None:
            return None
    elif torch.cuda.is_available():
        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        report["device"] = [torch.cuda.get_device_name(i) for i in range(len(gpus))]
        context = contextlib.nullcontext()
        single_device = "cuda:0"

        def synchronize() -> None:
            for index in range(len(gpus)):
                torch.cuda.synchronize(index)
    else:
        report["error"] = "no CUDA device (use --virtual to try the script on the CPU)"
        print(json.dumps(report, indent=2))
        raise SystemExit(1)
    report["gpus"] = len(gpus)
    with context:
        for name, placement_spec in configurations(gpus, args.depth).items():
            report["results"].append(check(name, placement_spec, spec, registry,
                                           single_device, args.repeats, synchronize))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
