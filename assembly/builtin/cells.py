"""Built-in cells ``lstm`` and ``gru``: torch's fused kernels, registered like any plugin.

This module imports no torch; the layers are built by :mod:`assembly.nn.fused`.
"""

from __future__ import annotations

from typing import Any

import attrs

from assembly.plugin import CellPlugin, CellSpec, hookimpl, one_of


@attrs.frozen(kw_only=True)
class LstmSpec(CellSpec):
    """LSTM (Hochreiter & Schmidhuber 1997) as in torch.nn.LSTM.

    ``forget_bias`` initialises the forget-gate bias (held in ``bias_ih``; ``bias_hh``'s
    forget part starts at 0); the stored cell state is never squashed.
    """

    forget_bias: float = 1.0


@attrs.frozen(kw_only=True)
class GruSpec(CellSpec):
    """GRU (Cho et al. 2014) as in torch.nn.GRU.

    ``update = "torch"``: ``h' = (1 − z) ⊙ n + z ⊙ h`` (torch, TensorFlow, Keras);
    ``"cho"``: ``h' = z ⊙ n + (1 − z) ⊙ h`` (the paper's and the mutants' convention),
    computed by the same fused kernel with the update gate's weights negated.
    """

    update: str = attrs.field(default="torch", validator=one_of("torch", "cho"))


def lstm_parameters(spec: LstmSpec, input_size: int, hidden: int) -> int:
    return 4 * hidden * (input_size + hidden) + (8 * hidden if spec.bias else 0)


def gru_parameters(spec: GruSpec, input_size: int, hidden: int) -> int:
    return 3 * hidden * (input_size + hidden) + (6 * hidden if spec.bias else 0)


def lstm_state_sizes(spec: LstmSpec, hidden: int) -> tuple[int, ...]:
    return (hidden, hidden)


def build_lstm(spec: LstmSpec, input_size: int, hidden: int) -> Any:
    from assembly.nn.fused import FusedLSTM

    return FusedLSTM(spec, input_size, hidden)


def build_gru(spec: GruSpec, input_size: int, hidden: int) -> Any:
    from assembly.nn.fused import FusedGRU

    return FusedGRU(spec, input_size, hidden)


class BuiltinCells:
    """Registers ``lstm`` and ``gru`` through the ordinary ``assembly_cells`` hook."""

    @hookimpl
    def assembly_cells(self) -> list[CellPlugin]:
        return [
            CellPlugin(
                name="lstm",
                spec=LstmSpec,
                build=build_lstm,
                parameters=lstm_parameters,
                state_sizes=lstm_state_sizes,
                summary="LSTM on torch's fused kernel (cuDNN/oneDNN)",
            ),
            CellPlugin(
                name="gru",
                spec=GruSpec,
                build=build_gru,
                parameters=gru_parameters,
                summary="GRU on torch's fused kernel (cuDNN/oneDNN)",
            ),
        ]
