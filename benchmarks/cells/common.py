"""Shared pieces of the cell reproductions: the registry, a one-layer sequence model over
any registered cell, a time budget, and JSON results in ``benchmarks/results/``."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from assembly_cells import CellsPlugin
from torch import Tensor, nn

from assembly.registry import make_registry

RESULTS = Path(__file__).resolve().parents[1] / "results"


def registry() -> Any:
    """Built-in cells plus this package's, no other entry points."""
    return make_registry(plugins=[CellsPlugin()], entrypoints=False, strict=True)


class TorchRNN(nn.Module):
    """torch.nn.RNN / LSTM with the layer contract ``forward(x, lengths) -> (outputs, state)``
    (full-length batches only), for baselines the framework does not register."""

    def __init__(self, kind: str, input_size: int, hidden: int, nonlinearity: str = "tanh",
                 forget_bias: float | None = None) -> None:
        super().__init__()
        if kind == "rnn":
            self.rnn: nn.Module = nn.RNN(input_size, hidden, batch_first=True,
                                         nonlinearity=nonlinearity)
        else:
            self.rnn = nn.LSTM(input_size, hidden, batch_first=True)
            if forget_bias is not None:  # total forget bias (held in bias_ih)
                with torch.no_grad():
                    self.rnn.bias_ih_l0[hidden:2 * hidden].fill_(forget_bias)
                    self.rnn.bias_hh_l0[hidden:2 * hidden].zero_()
        self.output_size = hidden

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Any]:
        return self.rnn(x)


class SequenceModel(nn.Module):
    """One recurrent layer and a linear readout of every step's output: (B, T, I) → (B, T, K)."""

    def __init__(self, layer: nn.Module, classes: int) -> None:
        super().__init__()
        self.layer = layer
        self.readout = nn.Linear(layer.output_size, classes)

    def forward(self, x: Tensor) -> Tensor:
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        outputs, _ = self.layer(x, lengths)  # (B, T, O)
        return self.readout(outputs)  # (B, T, K)


def cell_layer(name: str, input_size: int, hidden: int, **options: Any) -> nn.Module:
    """A registered cell's layer (``name`` as in a spec's ``type``)."""
    record = registry().get("cell", name)
    return record.build(record.spec(**options), input_size, hidden)


class Budget:
    """Stops a training loop after ``seconds`` of wall-clock time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def spent(self) -> bool:
        return self.elapsed >= self.seconds


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the machine and torch version added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() \
        else []
    data = {**data, "environment": {"torch": torch.__version__,
                                    "threads": torch.get_num_threads(),
                                    "machine": platform.machine(),
                                    "load_average_at_end": load}}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
