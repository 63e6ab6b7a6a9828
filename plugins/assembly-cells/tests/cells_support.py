"""Helpers shared by the test files: one spec variant per cell, building a layer in float64,
and randomising every parameter (so that special initial values hide no bug)."""

from __future__ import annotations

from typing import Any

import torch

from assembly_cells import RECORDS

CELLS = tuple(record.name for record in RECORDS)
RECORD = {record.name: record for record in RECORDS}

VARIANTS: dict[str, dict[str, Any]] = {
    "jzs1": {},
    "jzs2": {},
    "jzs3": {},
    "irnn": {"scale": 0.9},
    "urnn": {},
    "layernorm-lstm": {},
    "layernorm-gru": {},
    "layernorm-gru-cho": {"update": "cho"},
}
"""Spec keyword sets exercised by the equation tests (name → cell + options)."""


def cell_of(variant: str) -> str:
    return "layernorm-gru" if variant == "layernorm-gru-cho" else variant


def make_spec(cell: str, **options: Any) -> Any:
    return RECORD[cell].spec(**options)


def build(cell: str, input_size: int, hidden: int, *, seed: int = 0, dtype: torch.dtype =
          torch.float64, **options: Any) -> Any:
    """A layer of ``cell`` in ``dtype`` (float64 by default, for exact comparisons)."""
    torch.manual_seed(seed)
    spec = make_spec(cell, **options)
    return RECORD[cell].build(spec, input_size, hidden).to(dtype)


def randomise(module: torch.nn.Module, seed: int = 1, scale: float = 0.5) -> None:
    """Replace every parameter by N(0, scale²) draws (gains around 1), in place."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            value = noise * scale + (1.0 if "gain" in name else 0.0)
            parameter.copy_(value.to(parameter.dtype))
