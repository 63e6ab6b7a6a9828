"""Metrics logs (JSON lines and CSV, optionally TensorBoard) and PNG plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends one JSON object per record to ``metrics.jsonl``; rewrites ``metrics.csv``
    (columns: the union of keys) on :meth:`flush`. With ``tensorboard=True`` (the
    optional extra) scalars also go to ``RUN/tensorboard``."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = False) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.csv_path = run_dir / "metrics.csv"
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{record.get('kind', 'train')}/{key}", value,
                                           record.get("step", 0))

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    def count(self) -> int:
        """How many records are written (stored in checkpoints)."""
        return len(self.records()) if self.enabled else 0

    def truncate_to(self, count: int) -> None:
        """Keep the first ``count`` records: a resumed run writes the rest again."""
        if not self.enabled or not self.path.exists():
            return
        kept = self.records()[:count]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def flush(self) -> None:
        if not self.enabled:
            return
        rows = self.records()
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        tmp = self.csv_path.with_name(self.csv_path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.csv_path)
        if self.writer is not None:
            self.writer.flush()


def plot_learning_curves(records: list[dict[str, Any]], path: Path) -> None:
    """Train loss per logged step, dev loss and dev metrics per evaluation, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train"]
    dev = [r for r in records if r.get("kind") == "dev"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        left.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if dev and "loss" in dev[0]:
        left.plot([r["step"] for r in dev], [r["loss"] for r in dev], "o-", label="dev loss")
    left.set_xlabel("update")
    left.set_ylabel("loss per target token")
    if left.get_lines():
        left.legend()
    for key in ("exact_match", "token_accuracy", "bleu", "chrf", "mse"):
        if dev and key in dev[0]:
            values = [r[key] / (100 if key in ("bleu", "chrf") else 1) for r in dev]
            right.plot([r["step"] for r in dev], values, "o-",
                       label=key + (" / 100" if key in ("bleu", "chrf") else ""))
    right.set_xlabel("update")
    right.set_title("dev")
    if right.get_lines():
        right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_attention(weights: Any, source: list[str], output: list[str], path: Path) -> None:
    """A heat map of attention weights (T, S): output steps down, source tokens across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = weights.detach().cpu().numpy()
    figure, axes = plt.subplots(figsize=(max(3, 0.35 * len(source) + 1.5),
                                         max(3, 0.35 * len(output) + 1.5)))
    axes.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(source)), source, rotation=90)
    labels = [*output, "</s>"][: weights.shape[0]]
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("source")
    axes.set_ylabel("output")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
