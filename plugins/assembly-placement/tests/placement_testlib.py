"""Helpers of the placement tests: tiny specs, batches and the data-parallel workers.

The workers run in processes started by ``torch.multiprocessing.spawn``, so they live in
a module (not a test file) that the children can import.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from pathlib import Path
from typing import Any

import torch
from assembly.registry import make_registry

from assembly_placement import PlacementPlugin

MODEL_TOML = """
name = "placed"
depth = [2, 3]
[source]
vocab_size = 11
embedding = 6
[target]
vocab_size = 13
embedding = 5
[encoder]
hidden = [7, 8]
[decoder]
hidden = 9
"""
"""A token-mode model with two encoder and three decoder layers of different sizes."""

VARIANTS: dict[str, str] = {
    "plain": "",
    "attention-after": '[decoder.attention]\nscore = "additive"\n',
    "input-feeding-query-all": ('[decoder.attention]\nscore = "general"\nquery = "all"\n'
                                'input_feeding = true\n'),
    "attention-before-peek": ('[decoder.attention]\nposition = "before"\n'
                              '[decoder.peek]\nmode = "projected-add"\n'),
    "bidirectional-linear-sync": ('[encoder]\nbidirectional = true\n[bridge]\ntype = "linear"'
                                  '\n[decoder]\ninner_sync = true\n'),
    "gru-maxout-tied": ('[encoder.cell]\ntype = "gru"\n[decoder.cell]\ntype = "gru"\n'
                        '[output]\ntype = "maxout"\ntied = true\n'),
}
"""Model variants covering every path activations and states take between devices."""

DDP_TOML = """
name = "ddp"
[source]
embedding = 8
[target]
embedding = 8
[encoder]
hidden = 16
[decoder]
hidden = 16
[decoder.attention]
score = "dot"
[training]
batch_size = 8
epochs = 1
max_updates = 6
checkpoint_every = 3
seed = 3
[data]
task = "reverse"
train_size = 160
dev_size = 16
test_size = 8
max_length = 8
symbols = 6
[placement]
type = "data-parallel"
device = "cpu"
"""
"""A tiny data-parallel run: 20 batches of 8 per epoch, 10 per rank with two ranks."""


def registry() -> Any:
    """A registry with the placement plugin and no other installed plugin."""
    return make_registry(plugins=[PlacementPlugin()], entrypoints=False, strict=True)


def model_toml(variant: str) -> str:
    """The TOML of :data:`MODEL_TOML` merged with a variant's tables."""
    import tomli_w
    from assembly.spec.io import parse_text

    data = parse_text(MODEL_TOML, "toml")
    for key, value in parse_text(VARIANTS[variant], "toml").items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = _merge(data[key], value)
        else:
            data[key] = value
    return tomli_w.dumps(data)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merge(base[key], value)
        else:
            merged[key] = value
    return merged


def token_batch(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """source (3, 6), source lengths, target (3, 5), target lengths; padded with 0."""
    generator = torch.Generator().manual_seed(seed)
    source = torch.randint(4, 11, (3, 6), generator=generator)
    target = torch.randint(4, 13, (3, 5), generator=generator)
    source_lengths = torch.tensor([6, 2, 4])
    target_lengths = torch.tensor([5, 3, 1])
    for row in range(3):
        source[row, int(source_lengths[row]):] = 0
        target[row, int(target_lengths[row]):] = 0
    return source, source_lengths, target, target_lengths


# -- data-parallel workers ------------------------------------------------------------------
GROUP_TIMEOUT = datetime.timedelta(seconds=300)
"""A rank left waiting for another (ranks that disagree on when to stop) fails the test
after this long instead of hanging it."""


def _join(rank: int, world: int, rendezvous: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", init_method=f"file://{rendezvous}",
                                         rank=rank, world_size=world, timeout=GROUP_TIMEOUT)


def union_batches(trainer: Any, world: int) -> list[list[int]]:
    """The batches a single process must take so that its update k sees the union of what
    ranks 0..world-1 see at their update k (the sampler gives rank r every world-th batch
    of the epoch's shuffled batch list)."""
    batches = trainer.sampler.epoch_batches()
    usable = len(batches) - len(batches) % world
    return [[index for batch in batches[k:k + world] for index in batch]
            for k in range(0, usable, world)]


def train_steps(trainer: Any, batches: list[list[int]]) -> list[float]:
    """Run ``trainer.update`` on the given index batches; the logged losses."""
    from assembly.data.batching import collate_tokens

    losses = []
    for indices in batches:
        batch = collate_tokens([trainer.data.train[i] for i in indices])
        losses.append(trainer.update(batch.to(trainer.device))["loss"])
    return losses


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters()}


class Interrupted(Exception):
    """Raised to stop a training run right after a checkpoint, as a kill would."""


def ddp_worker(rank: int, world: int, rendezvous: str, base: str, updates: int) -> None:
    """Rank ``rank`` of four data-parallel runs in one process group (one start-up):

    1. ``updates`` updates on its own batches; rank 0 saves the logged losses and the final
       parameters to ``base/trajectory.pt``;
    2. the DDP spec trained straight through into ``base/straight``;
    3. the same, interrupted right after the checkpoint at update 3 and resumed, into
       ``base/resumed``;
    4. :func:`early_stopping_run` into ``base/early``."""
    from assembly.spec import loads_spec
    from assembly.train.trainer import Trainer

    _join(rank, world, rendezvous)
    quiet: dict[str, Any] = {"progress": False, "log": lambda line: None}
    try:
        registry_ = registry()
        spec = loads_spec(DDP_TOML, registry=registry_)
        trainer = Trainer(spec, Path(base) / "trajectory", registry=registry_, **quiet)
        assert (trainer.rank, trainer.world) == (rank, world)
        losses = train_steps(trainer, trainer.sampler.epoch_batches()[:updates])
        if rank == 0:
            torch.save({"losses": losses, "parameters": parameters(trainer.model)},
                       Path(base) / "trajectory.pt")

        Trainer(spec, Path(base) / "straight", registry=registry_, **quiet).fit()

        trainer = Trainer(spec, Path(base) / "resumed", registry=registry_, **quiet)
        save = trainer.checkpoint

        def save_then_stop() -> None:
            save()
            if trainer.step == 3:
                raise Interrupted

        trainer.checkpoint = save_then_stop  # type: ignore[method-assign]
        with contextlib.suppress(Interrupted):
            trainer.fit()
        torch.distributed.barrier()  # rank 0 has written the checkpoint
        Trainer(None, Path(base) / "resumed", registry=registry_, resume=True,  # type: ignore[arg-type]
                **quiet).fit()

        early_stopping_run(rank, spec, registry_, Path(base))
    finally:
        torch.distributed.destroy_process_group()


def early_stopping_run(rank: int, spec: Any, registry_: Any, base: Path) -> None:
    """Train with a dev evaluation every 2 updates, a plateau schedule and early stopping
    into ``base/early``; each rank saves what it decided to ``base/early-RANK.pt``: how
    often it decoded the dev set itself, the results it acted on, where it stopped, its
    best value, its learning rate.

    On ranks other than 0 the dev metrics are falsified (worse at every evaluation), so a
    rank that evaluated for itself would act on other numbers than rank 0 — and stop
    early at its second evaluation while rank 0 goes on (the group timeout then fails
    the run rather than hang it)."""
    import attrs
    from assembly.spec import ScheduleSpec
    from assembly.train import trainer as trainer_module

    training = attrs.evolve(spec.training, max_updates=10, eval_every=2, early_stopping=1,
                            metric="loss", schedule=ScheduleSpec(type="plateau", patience=1))
    spec = attrs.evolve(spec, training=training)
    evaluate = trainer_module.evaluate
    calls: list[int] = []

    def own_evaluation(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        results, extra = evaluate(*args, **kwargs)
        if rank != 0:
            results = {key: value + 10.0 * len(calls) for key, value in results.items()}
        return results, extra

    trainer_module.evaluate = own_evaluation
    try:
        trainer = trainer_module.Trainer(spec, base / "early", registry=registry_,
                                         progress=False, log=lambda line: None)
        seen: list[dict[str, float]] = []
        decide = trainer._after_evaluation

        def record(results: dict[str, float], epoch: int) -> bool:
            seen.append(dict(results))
            return decide(results, epoch)

        trainer._after_evaluation = record  # type: ignore[method-assign]
        result = trainer.fit()
    finally:
        trainer_module.evaluate = evaluate
    torch.save({"evaluations": len(calls), "seen": seen, "step": trainer.step,
                "best": trainer.best, "bad_evaluations": trainer.bad_evaluations,
                "stopped_early": result.stopped_early,
                "lr": [group["lr"] for group in trainer.optimizer.param_groups]},
               base / f"early-{rank}.pt")
