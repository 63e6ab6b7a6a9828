"""Recurrent cells for ``assembly``, registered through the ``assembly_cells`` hook.

==================  ==========================================================================
``jzs1``            MUT1 of Jozefowicz et al. 2015 (z from x only, tanh(x) in the candidate)
``jzs2``            MUT2 (r = σ(x + W_hr h + b_r))
``jzs3``            MUT3 (z reads tanh(h))
``irnn``            ReLU RNN with identity-initialised recurrence (Le et al. 2015)
``urnn``            unitary RNN, W = D₃R₂F⁻¹D₂ΠR₁FD₁ and modReLU (Arjovsky et al. 2015)
``layernorm-lstm``  LSTM with layer normalisation (Ba et al. 2016)
``layernorm-gru``   GRU with layer normalisation
==================  ==========================================================================

Importing this package imports no torch; the layers load on first build. Installed, the
entry point ``cells`` (group ``assembly``) makes them available to every spec::

    [encoder.cell]
    type = "jzs2"
    gate_bias = 1.0

From Python, pass the plugin object in::

    from assembly.registry import make_registry
    registry = make_registry(plugins=[CellsPlugin()], entrypoints=False)
    layer = registry.get("cell", "urnn").build(UrnnSpec(), 32, 64)   # state (B, 128)

Every record's ``parameters(spec, input_size, hidden)`` is the exact parameter count of
what its ``build`` returns.
"""

from __future__ import annotations

from typing import Any

from assembly.plugin import CellPlugin, hookimpl

from assembly_cells.specs import (
    IrnnSpec,
    Jzs1Spec,
    Jzs2Spec,
    Jzs3Spec,
    LayerNormGruSpec,
    LayerNormLstmSpec,
    UrnnSpec,
    irnn_parameters,
    jzs1_parameters,
    jzs2_parameters,
    jzs3_parameters,
    layernorm_gru_parameters,
    layernorm_lstm_parameters,
    lstm_state_sizes,
    urnn_output_size,
    urnn_parameters,
    urnn_state_sizes,
)

__version__ = "0.1.0"


def build_jzs1(spec: Jzs1Spec, input_size: int, hidden: int) -> Any:
    """One unidirectional JZS1 layer (:class:`~assembly_cells.mutants.Jzs1Layer`)."""
    from assembly_cells.mutants import Jzs1Layer

    return Jzs1Layer(spec, input_size, hidden)


def build_jzs2(spec: Jzs2Spec, input_size: int, hidden: int) -> Any:
    """One unidirectional JZS2 layer (:class:`~assembly_cells.mutants.Jzs2Layer`)."""
    from assembly_cells.mutants import Jzs2Layer

    return Jzs2Layer(spec, input_size, hidden)


def build_jzs3(spec: Jzs3Spec, input_size: int, hidden: int) -> Any:
    """One unidirectional JZS3 layer (:class:`~assembly_cells.mutants.Jzs3Layer`)."""
    from assembly_cells.mutants import Jzs3Layer

    return Jzs3Layer(spec, input_size, hidden)


def build_irnn(spec: IrnnSpec, input_size: int, hidden: int) -> Any:
    """One unidirectional IRNN layer (:class:`~assembly_cells.irnn.IrnnLayer`)."""
    from assembly_cells.irnn import IrnnLayer

    return IrnnLayer(spec, input_size, hidden)


def build_urnn(spec: UrnnSpec, input_size: int, hidden: int) -> Any:
    """One unidirectional uRNN layer of ``hidden`` complex units
    (:class:`~assembly_cells.urnn.UrnnLayer`; state and output size 2·hidden)."""
    from assembly_cells.urnn import UrnnLayer

    return UrnnLayer(spec, input_size, hidden)


def build_layernorm_lstm(spec: LayerNormLstmSpec, input_size: int, hidden: int) -> Any:
    """One layer-normalised LSTM layer (:class:`~assembly_cells.layernorm.LayerNormLstmLayer`)."""
    from assembly_cells.layernorm import LayerNormLstmLayer

    return LayerNormLstmLayer(spec, input_size, hidden)


def build_layernorm_gru(spec: LayerNormGruSpec, input_size: int, hidden: int) -> Any:
    """One layer-normalised GRU layer (:class:`~assembly_cells.layernorm.LayerNormGruLayer`)."""
    from assembly_cells.layernorm import LayerNormGruLayer

    return LayerNormGruLayer(spec, input_size, hidden)


RECORDS: tuple[CellPlugin, ...] = (
    CellPlugin(name="jzs1", spec=Jzs1Spec, build=build_jzs1, parameters=jzs1_parameters,
               summary="GRU mutant MUT1 (Jozefowicz et al. 2015)"),
    CellPlugin(name="jzs2", spec=Jzs2Spec, build=build_jzs2, parameters=jzs2_parameters,
               summary="GRU mutant MUT2 (Jozefowicz et al. 2015)"),
    CellPlugin(name="jzs3", spec=Jzs3Spec, build=build_jzs3, parameters=jzs3_parameters,
               summary="GRU mutant MUT3 (Jozefowicz et al. 2015)"),
    CellPlugin(name="irnn", spec=IrnnSpec, build=build_irnn, parameters=irnn_parameters,
               summary="ReLU RNN with identity-initialised recurrence (Le et al. 2015)"),
    CellPlugin(name="urnn", spec=UrnnSpec, build=build_urnn, parameters=urnn_parameters,
               state_sizes=urnn_state_sizes, output_size=urnn_output_size,
               summary="unitary RNN with modReLU (Arjovsky et al. 2015); output [Re h; Im h]"),
    CellPlugin(name="layernorm-lstm", spec=LayerNormLstmSpec, build=build_layernorm_lstm,
               parameters=layernorm_lstm_parameters, state_sizes=lstm_state_sizes,
               summary="LSTM with layer normalisation (Ba et al. 2016)"),
    CellPlugin(name="layernorm-gru", spec=LayerNormGruSpec, build=build_layernorm_gru,
               parameters=layernorm_gru_parameters,
               summary="GRU with layer normalisation (Ba et al. 2016)"),
)
"""Every cell this package provides, in the order ``assemble components`` lists them."""


class CellsPlugin:
    """The plugin object the entry point names; stateless."""

    @hookimpl
    def assembly_cells(self) -> list[CellPlugin]:
        return list(RECORDS)


__all__ = [
    "RECORDS",
    "CellsPlugin",
    "IrnnSpec",
    "Jzs1Spec",
    "Jzs2Spec",
    "Jzs3Spec",
    "LayerNormGruSpec",
    "LayerNormLstmSpec",
    "UrnnSpec",
]
