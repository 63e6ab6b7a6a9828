"""The trainer: spec + data → a trained run directory, resumable exactly.

One update: teacher-forced forward (shifted by one step; optional scheduled sampling),
summed token loss / number of target tokens, plus every regulariser's penalty (each
logged on its own), backward, gradient clipping, optimiser step. Evaluation (greedy
decoding of the dev set and its loss) and a checkpoint follow each epoch (and every
``eval_every`` / ``checkpoint_every`` updates). A non-finite loss stops the run with a
clear message; the last good checkpoint stays.

Exact resume: the batch order is a pure function of (seed, epoch), the checkpoint holds
the position inside the epoch, the weights, the optimiser, the schedule, the torch RNG
state and the regularisers' state, so a run killed at any point and resumed ends with
the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from assembly.build import build_model, count_parameters
from assembly.data.batching import BucketBatchSampler, collate_arrays, collate_tokens, make_loader
from assembly.errors import UserError
from assembly.evaluate import evaluate
from assembly.placement import place_model, set_threads
from assembly.plan import plan_model
from assembly.plugin import RegularizerContext
from assembly.spec import dump_spec
from assembly.spec.model import Spec
from assembly.train.checkpoint import (
    latest_checkpoint,
    load_training,
    load_weights,
    save_checkpoint,
    save_weights,
)
from assembly.train.data_setup import DataBundle, prepare_data
from assembly.train.logs import MetricsLog, plot_attention, plot_learning_curves
from assembly.train.schedule import LearningRate, make_optimizer
from assembly.train.slowdown import SlowdownWatch

HIGHER_IS_BETTER = {"loss": False, "token_accuracy": True, "exact_match": True, "bleu": True,
                    "chrf": True, "mse": False}


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


@attrs.define
class TrainResult:
    run_dir: Path
    updates: int
    epochs: int
    best: float | None
    dev: dict[str, float]
    seconds: float
    train_tokens_per_second: float
    stopped_early: bool


class Trainer:
    """Train ``spec`` into ``run_dir``. ``spec_dir``: where relative data paths start.
    ``resume``: continue from the run's latest checkpoint. ``log``: a callable for
    progress lines (``print`` by default); ``progress``: tqdm bars. ``device`` puts the
    whole model there instead of the spec's placement; ``threads`` overrides
    ``training.threads`` (torch intra-op threads) for this process only."""

    def __init__(self, spec: Spec, run_dir: str | Path, *, registry: Any = None,
                 spec_dir: str | Path = ".", resume: bool = False, progress: bool = True,
                 log: Callable[[str], None] = print, device: str | None = None,
                 threads: int | None = None) -> None:
        if registry is None:
            from assembly.registry import make_registry

            registry = make_registry()
        self.registry = registry
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.log = log
        self.resume = resume
        self.rank, self.world = _distributed()
        self.is_main = self.rank == 0
        checkpoint = latest_checkpoint(self.run_dir) if resume else None
        if resume and checkpoint is None:
            raise UserError(f"{self.run_dir}: nothing to resume (no checkpoint)")
        if resume:
            from assembly.spec import load_spec

            saved = load_spec(self.run_dir / "spec.toml", registry)
            spec = _extended(saved, spec)
        elif latest_checkpoint(self.run_dir) is not None:
            raise UserError(f"{self.run_dir} already holds a run; use --resume to continue it "
                            f"or choose another --out")
        if not resume:
            spec = absolute_data_paths(spec, Path(spec_dir))
        self.data: DataBundle = prepare_data(spec, Path(spec_dir),
                                             self.run_dir if resume else None)
        self.spec = self.data.spec
        training = self.spec.training
        set_threads(training.threads if threads is None else threads)
        self.plan = plan_model(self.spec, registry)
        self.model = build_model(self.plan, registry, seed=training.seed)
        self.model, self.placement = place_model(self.model, self.spec, registry, device)
        self.device = self.placement.input_device(self.model)
        self.forward_model = self._wrap_distributed(self.model)
        self.regularizers = self._build_regularizers()
        self.optimizer = make_optimizer(training.optimizer, self.model.parameters())
        self.sampler = BucketBatchSampler(
            self.data.train.target_lengths, training.batch_size,
            source_lengths=self.data.train.source_lengths, shuffle=True, seed=training.seed,
            pool_batches=100 if training.bucketing else 1, num_replicas=self.world,
            rank=self.rank)
        planned = training.max_updates or training.epochs * len(self.sampler)
        self.learning_rate = LearningRate(training.schedule, self.optimizer, planned,
                                          HIGHER_IS_BETTER[_resolve_metric(self.spec)])
        self.decoder = registry.record_of(self.spec.sampler).build(self.spec.sampler)
        self.generator = torch.Generator().manual_seed(training.seed + 1)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best: float | None = None
        self.bad_evaluations = 0
        self.last_eval_step = -1
        self.metric = _resolve_metric(self.spec)
        self.last_dev: dict[str, float] = {}
        self.train_tokens = 0
        self.train_seconds = 0.0
        self.scaler = self._amp_scaler()
        self.metrics = MetricsLog(self.run_dir, enabled=self.is_main)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint is not None:
            self._restore(checkpoint)
            if self.is_main:
                dump_spec(self.spec, self.run_dir / "spec.toml", self.registry)
        elif self.is_main:
            self._write_model_files()

    # -- set-up -----------------------------------------------------------------------
    def _wrap_distributed(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def _build_regularizers(self) -> list[Any]:
        context = RegularizerContext(
            encoder_sizes=tuple(layer.output_size for layer in self.plan.encoder),
            decoder_sizes=tuple(layer.output_size for layer in self.plan.decoder),
            output_size=self.plan.classes, token_mode=self.spec.token_mode)
        built = []
        for spec in self.spec.regularizers:
            record = self.registry.record_of(spec)
            regularizer = record.build(spec, context)
            if getattr(regularizer, "name", "regularizer") == "regularizer":
                regularizer.name = record.name
            built.append(regularizer.to(self.device))
        names = [r.name for r in built]
        for index, regularizer in enumerate(built):
            if names.count(regularizer.name) > 1:
                regularizer.name = f"{regularizer.name}.{index}"
        return built

    def _amp_scaler(self) -> Any:
        if not self.spec.training.amp:
            return None
        if self.device.type != "cuda":
            self.log("note: training.amp applies on CUDA only; this run trains in float32 on "
                     f"{self.device}")
            return None
        return torch.amp.GradScaler("cuda")

    def _write_model_files(self) -> None:
        dump_spec(self.spec, self.run_dir / "spec.toml", self.registry)
        if self.data.source_vocab is not None:
            self.data.source_vocab.save(self.run_dir / "vocab.source.json")
            self.data.target_vocab.save(self.run_dir / "vocab.target.json")

    # -- checkpoints ------------------------------------------------------------------
    def _training_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "python_rng": list(random.getstate()[1]),
            "regularizers": [r.state_dict() for r in self.regularizers],
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
        }

    def _plain_state(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "best": self.best, "bad_evaluations": self.bad_evaluations,
                "learning_rate": self.learning_rate.state_dict(), "last_dev": self.last_dev,
                "train_tokens": self.train_tokens, "train_seconds": self.train_seconds,
                "last_eval_step": self.last_eval_step,
                "metric_records": self.metrics.count(),
                "regularizers": [r.extra_state() for r in self.regularizers]}

    def checkpoint(self) -> None:
        if not self.is_main:
            return
        save_checkpoint(self.run_dir, self.step, self.model, self._training_state(),
                        self._plain_state(), self.spec.training.keep_checkpoints)
        self.metrics.flush()

    def _restore(self, folder: Path) -> None:
        load_weights(self.model, folder / "model.safetensors")
        training, state = load_training(folder)
        self.optimizer.load_state_dict(training["optimizer"])
        torch.set_rng_state(training["torch_rng"])
        self.generator.set_state(training["generator"])
        random.setstate((3, tuple(training["python_rng"]), None))
        for regularizer, tensors, extra in zip(self.regularizers, training["regularizers"],
                                               state["regularizers"], strict=True):
            regularizer.load_state_dict(tensors)
            regularizer.load_extra_state(extra)
        if self.scaler is not None and training["scaler"]:
            self.scaler.load_state_dict(training["scaler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.best, self.bad_evaluations = state["best"], state["bad_evaluations"]
        self.learning_rate.load_state_dict(state["learning_rate"])
        self.last_dev = state["last_dev"]
        self.train_tokens, self.train_seconds = state["train_tokens"], state["train_seconds"]
        self.last_eval_step = state["last_eval_step"]
        self.metrics.truncate_to(state["metric_records"])
        self.log(f"resumed {self.run_dir} at update {self.step} (epoch {self.epoch + 1}, "
                 f"batch {self.batch_in_epoch})")

    # -- the loop -----------------------------------------------------------------------
    def _curriculum_limit(self) -> int | None:
        """The length curriculum's target-length limit for this epoch (None: no limit)."""
        curriculum = self.spec.training.curriculum
        if curriculum is None:
            return None
        limit = curriculum.start + curriculum.step * (self.epoch // curriculum.every)
        return limit if curriculum.end is None else min(limit, curriculum.end)

    def update(self, batch: Any) -> dict[str, float]:
        """One optimiser update on ``batch``; returns the logged values."""
        training = self.spec.training
        self.model.train()
        lr = self.learning_rate.apply(self.step)
        autocast = torch.autocast("cuda", enabled=self.scaler is not None)
        with autocast:
            outputs = self.forward_model(batch.source, batch.source_lengths, batch.target,
                                         batch.target_lengths, training.scheduled_sampling,
                                         self.generator)
            total, count = self.model.loss(outputs, batch.target, training.label_smoothing)
            main, shown = self._per_token(total, count)
            loss = main
            values = {"loss": shown}
            for regularizer in self.regularizers:
                penalty = regularizer.penalty(outputs, batch, self)
                loss = loss + penalty
                values[regularizer.name] = float(penalty.detach())
        if not math.isfinite(values["loss"]) or not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {float(loss.detach())} at update {self.step + 1} (epoch "
                f"{self.epoch + 1}); training stopped. The last good checkpoint stays in "
                f"{self.run_dir}. Try a lower learning rate or gradient clipping.")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        limit = training.clip if training.clip is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit))
        values["grad_norm"] = grad_norm
        if not math.isfinite(grad_norm) and self.scaler is None:
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(
                f"the gradient norm became {grad_norm} at update {self.step + 1} (epoch "
                f"{self.epoch + 1}); training stopped before applying it. The last good "
                f"checkpoint stays in {self.run_dir}. Try a lower learning rate.")
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        for regularizer in self.regularizers:
            regularizer.after_update(self)
        values["lr"] = lr
        self.train_tokens += int(count)
        return values

    def _per_token(self, total: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(loss to differentiate, value to log): the summed loss per target token.

        Data-parallel, the tokens are counted over all ranks (one all-reduce of the summed
        loss and the count) and the loss is scaled by the world size, because DDP averages
        the ranks' gradients: an update then equals a single process's update on the union
        of the ranks' batches, and every rank logs the global per-token loss."""
        if self.world == 1:
            main = total / count.clamp(min=1)
            return main, float(main.detach())
        sums = torch.stack([total.detach().float(), count.to(total.device, torch.float32)])
        torch.distributed.all_reduce(sums)
        tokens = sums[1].clamp(min=1)
        return total * (self.world / tokens), float(sums[0] / tokens)

    def evaluate_dev(self) -> dict[str, float]:
        """The dev metrics ({} without a dev set).

        Data-parallel, rank 0 alone decodes the dev set (the replicas hold the same
        weights) while the others wait for its results, which it broadcasts: every rank
        then takes the same decisions from the same numbers (best weights, plateau
        schedule, early stopping), so no rank stops while another goes on."""
        if self.data.dev is None:
            return {}
        if self.world == 1:
            return self._decode_dev()
        shared = [self._decode_dev() if self.is_main else None]
        torch.distributed.broadcast_object_list(shared, src=0)
        return shared[0]

    def _decode_dev(self) -> dict[str, float]:
        results, _ = evaluate(self.model, self.data.dev, self.decoder,
                              target_vocab=self.data.target_vocab,
                              tokenizer=self.spec.data.tokenizer, batch_size=500)
        return results

    def _after_evaluation(self, results: dict[str, float], epoch: int) -> bool:
        """Log, keep the best weights, step the plateau schedule; True to stop early."""
        metric = self.metric
        self.last_dev = results
        if not results:
            return False
        self.metrics.write({"kind": "dev", "step": self.step, "epoch": epoch, **results})
        if metric not in results:
            return False
        value = results[metric]
        self.learning_rate.observe(value)
        better = self.best is None or (value > self.best if HIGHER_IS_BETTER[metric]
                                       else value < self.best)
        if better:
            self.best, self.bad_evaluations = value, 0
            if self.is_main:
                save_weights(self.model, self.run_dir / "best.safetensors")
        else:
            self.bad_evaluations += 1
        patience = self.spec.training.early_stopping
        return patience is not None and self.bad_evaluations >= patience

    def fit(self) -> TrainResult:
        """Train to the end (epochs, max_updates or early stopping)."""
        training = self.spec.training
        collate = collate_tokens if self.spec.token_mode else collate_arrays
        if self.step == 0 and self.is_main:
            self.log(f"training {self.spec.name}: {count_parameters(self.model):,} parameters, "
                     f"{len(self.data.train):,} training pairs, device {self.device}")
        if self.step == 0:
            for regularizer in self.regularizers:
                regularizer.on_train_start(self)
        early = False
        slowdown = SlowdownWatch(torch.get_num_threads() if self.device.type == "cpu" else 1,
                                 self.log if self.is_main else lambda _line: None)

        def budget_spent() -> bool:
            return bool(training.max_updates and self.step >= training.max_updates)

        while self.epoch < training.epochs and not early and not budget_spent():
            self.sampler.max_length = self._curriculum_limit()
            self.sampler.set_epoch(self.epoch, start_batch=self.batch_in_epoch)
            epoch_batches = self.batch_in_epoch + len(self.sampler)
            loader = make_loader(self.data.train, self.sampler, collate,
                                 num_workers=training.workers)
            bar = _bar(len(self.sampler), self.progress and self.is_main,
                       f"epoch {self.epoch + 1}/{training.epochs}")
            # the training clock: evaluations and checkpoints inside the epoch move
            # ``started`` (and the logged interval's start) forward by their duration
            started = time.perf_counter()
            interval_start, interval_tokens = started, self.train_tokens
            completed = True
            for batch in loader:
                if budget_spent():
                    completed = False
                    break
                values = self.update(batch.to(self.device))
                self.batch_in_epoch += 1
                if self.step % LOG_EVERY == 0 or self.batch_in_epoch == epoch_batches \
                        or budget_spent():
                    now = time.perf_counter()
                    rate = (self.train_tokens - interval_tokens) / max(now - interval_start,
                                                                       1e-9)
                    self.metrics.write({"kind": "train", "step": self.step,
                                        "epoch": self.epoch + 1, **values,
                                        "tokens_per_s": round(rate, 1)})
                    slowdown.observe(rate, self.step)
                    interval_start, interval_tokens = now, self.train_tokens
                bar.update(1)
                bar.set_postfix(loss=f"{values['loss']:.3f}", refresh=False)
                paused = time.perf_counter()
                if training.eval_every and self.step % training.eval_every == 0:
                    early = self._evaluate_and_log(self.epoch + 1)
                if training.checkpoint_every and self.step % training.checkpoint_every == 0:
                    self.checkpoint()
                spent = time.perf_counter() - paused
                started += spent
                interval_start += spent
                if early:
                    completed = False
                    break
            self.train_seconds += time.perf_counter() - started
            bar.close()
            evaluated_epoch = self.epoch + 1
            if completed:
                self.epoch += 1
                self.batch_in_epoch = 0
            if self.last_eval_step != self.step:
                early = self._evaluate_and_log(evaluated_epoch) or early
            self.checkpoint()
        for regularizer in self.regularizers:
            regularizer.on_train_end(self)
        return self._finish(early)

    def _evaluate_and_log(self, epoch: int) -> bool:
        """Evaluate on the dev set (once per update count), log it; True to stop early."""
        results = self.evaluate_dev()
        self.last_eval_step = self.step
        if results and self.is_main:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in results.items())
            self.log(f"epoch {epoch}, update {self.step}: dev {shown}")
        return self._after_evaluation(results, epoch)

    def _finish(self, stopped: bool) -> TrainResult:
        if self.is_main:
            best = self.run_dir / "best.safetensors"
            if best.exists() and not self.regularizers_changed_weights():
                best.replace(self.run_dir / "model.safetensors")
            else:
                save_weights(self.model, self.run_dir / "model.safetensors")
            self.metrics.flush()
            self._plots()
        rate = self.train_tokens / self.train_seconds if self.train_seconds else 0.0
        return TrainResult(self.run_dir, self.step, self.epoch, self.best, self.last_dev,
                           self.train_seconds, rate, stopped)

    def regularizers_changed_weights(self) -> bool:
        """Objectives that rewrite the weights at the end (e.g. averaging parameter sets)
        say so with ``final_weights = True``; the final model is then the last one."""
        return any(getattr(r, "final_weights", False) for r in self.regularizers)

    def _plots(self) -> None:
        plot_learning_curves(self.metrics.records(), self.run_dir / "learning_curves.png")
        if not self.spec.token_mode or self.data.dev_pairs is None \
                or self.spec.decoder.attention is None:
            return
        from assembly.decode.generate import generate
        from assembly.run import LoadedRun

        run = LoadedRun(self.model.eval(), self.spec, self.data.source_vocab,
                        self.data.target_vocab, self.registry, self.run_dir)
        joiner = "" if self.spec.data.tokenizer == "char" else " "
        texts = [joiner.join(source) for source, _ in self.data.dev_pairs[:3]]
        for index, result in enumerate(generate(run, texts)):
            if result.attention[0] is not None:
                plot_attention(result.attention[0], result.source, result.hypotheses[0],
                               self.run_dir / f"attention_{index + 1}.png")


def _extended(saved: Spec, given: Spec | None) -> Spec:
    """The spec a resumed run continues with: its own, where only ``training.epochs`` and
    ``training.max_updates`` may be changed (to extend it), and ``training.threads`` (a
    setting of the machine, not of the model); the run's spec.toml is rewritten when
    they are."""
    if given is None or given == saved:
        return saved
    allowed = attrs.evolve(saved, training=attrs.evolve(
        saved.training, epochs=given.training.epochs, max_updates=given.training.max_updates,
        threads=given.training.threads))
    if allowed != given:
        raise UserError("a resumed run keeps its spec; only training.epochs, "
                        "training.max_updates and training.threads may change")
    return given


def absolute_data_paths(spec: Spec, base: Path) -> Spec:
    """The spec with its data files made absolute (resolved against ``base``), so the
    run's own spec.toml finds them from anywhere (resume, evaluate)."""
    data = spec.data

    def resolve(files: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str((base / f).resolve()) for f in files)

    return attrs.evolve(spec, data=attrs.evolve(
        data, train=resolve(data.train), dev=resolve(data.dev), test=resolve(data.test)))


LOG_EVERY = 20
"""Training records are written every this many updates and at each epoch's end."""


def _resolve_metric(spec: Spec) -> str:
    """The dev metric that picks the best weights: ``auto`` is exact match in token mode
    and the decoded vectors' mean squared error in continuous mode."""
    metric = spec.training.metric
    if metric == "auto":
        return "exact_match" if spec.token_mode else "mse"
    return metric


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _bar(total: int, enabled: bool, description: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=description, leave=False,
                dynamic_ncols=True)
