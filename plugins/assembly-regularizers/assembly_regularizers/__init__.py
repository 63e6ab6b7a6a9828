"""Regularisers, training objectives and MMI decoding for ``assembly``.

Regularisers (hook ``assembly_regularizers``):

=====================  ===================================================================
``norm-stabilizer``    β · mean_t (‖h_t‖ − ‖h_{t−1}‖)² (Krueger & Memisevic 2015)
``decov``              ½ (‖C‖²_F − ‖diag C‖²) of a layer's batch covariance (Cogswell 2015)
``activation-l2``      factor · mean h² of chosen layers' activations
``weight-l2``          factor · Σ ‖θ‖² (optionally without biases / embeddings)
``relaxation``         Neural GPU parameter-set relaxation (Kaiser & Sutskever 2015)
``professor-forcing``  a discriminator on teacher-forced vs free-running states (Lamb 2016)
=====================  ===================================================================

Samplers (hook ``assembly_samplers``): ``mmi-antilm`` and ``mmi-bidi`` (Li et al. 2016);
the language model and reverse model they need are derived from a spec by
:func:`assembly_regularizers.mmi.lm_spec` / :func:`~assembly_regularizers.mmi.reverse_spec`
and trained by the normal trainer.

Importing this package imports no torch; the modules load on first build. Installed, the
entry point ``regularizers`` (group ``assembly``) makes them available to every spec::

    [[regularizers]]
    type = "norm-stabilizer"
    targets = ["decoder"]
    beta = 50.0

From Python, pass the plugin object in::

    from assembly.registry import make_registry
    registry = make_registry(plugins=[RegularizersPlugin()], entrypoints=False)
"""

from __future__ import annotations

from typing import Any

from assembly.plugin import RegularizerPlugin, SamplerPlugin, hookimpl

from assembly_regularizers.specs import (
    ActivationL2Spec,
    DecovSpec,
    MmiAntiLmSpec,
    MmiBidiSpec,
    NormStabilizerSpec,
    ProfessorForcingSpec,
    RelaxationSpec,
    WeightL2Spec,
)

__version__ = "0.1.0"


def build_norm_stabilizer(spec: NormStabilizerSpec, context: Any) -> Any:
    """The :class:`~assembly_regularizers.penalties.NormStabilizer` for ``spec``."""
    from assembly_regularizers.penalties import NormStabilizer

    return NormStabilizer(spec, context)


def build_decov(spec: DecovSpec, context: Any) -> Any:
    """The :class:`~assembly_regularizers.penalties.Decov` for ``spec``."""
    from assembly_regularizers.penalties import Decov

    return Decov(spec, context)


def build_activation_l2(spec: ActivationL2Spec, context: Any) -> Any:
    """The :class:`~assembly_regularizers.penalties.ActivationL2` for ``spec``."""
    from assembly_regularizers.penalties import ActivationL2

    return ActivationL2(spec, context)


def build_weight_l2(spec: WeightL2Spec, context: Any) -> Any:
    """The :class:`~assembly_regularizers.penalties.WeightL2` for ``spec``."""
    from assembly_regularizers.penalties import WeightL2

    return WeightL2(spec, context)


def build_relaxation(spec: RelaxationSpec, context: Any) -> Any:
    """The :class:`~assembly_regularizers.relaxation.Relaxation` for ``spec``."""
    from assembly_regularizers.relaxation import Relaxation

    return Relaxation(spec, context)


def build_professor_forcing(spec: ProfessorForcingSpec, context: Any) -> Any:
    """The :class:`~assembly_regularizers.professor.ProfessorForcing` for ``spec``."""
    from assembly_regularizers.professor import ProfessorForcing

    return ProfessorForcing(spec, context)


def relaxation_parameters(spec: RelaxationSpec, context: Any) -> int:
    """Relaxation adds no trainable parameters (its extra sets are state, not weights)."""
    return 0


def professor_parameters(spec: ProfessorForcingSpec, context: Any) -> int:
    """The discriminator's parameters: a bidirectional GRU (O → H per direction) and an
    MLP 2H → H → 1."""
    inputs, hidden = context.decoder_sizes[-1], spec.discriminator_hidden
    gru = 2 * 3 * hidden * (inputs + hidden + 2)
    return gru + (2 * hidden * hidden + hidden) + (hidden + 1)


def build_antilm(spec: MmiAntiLmSpec) -> Any:
    """The :class:`~assembly_regularizers.mmi_search.MmiAntiLm` sampler for ``spec``."""
    from assembly_regularizers.mmi_search import MmiAntiLm

    return MmiAntiLm(spec)


def build_bidi(spec: MmiBidiSpec) -> Any:
    """The :class:`~assembly_regularizers.mmi_search.MmiBidi` sampler for ``spec``."""
    from assembly_regularizers.mmi_search import MmiBidi

    return MmiBidi(spec)


class RegularizersPlugin:
    """The plugin object the entry point names; stateless."""

    @hookimpl
    def assembly_regularizers(self) -> list[RegularizerPlugin]:
        return [
            RegularizerPlugin(name="norm-stabilizer", spec=NormStabilizerSpec,
                              build=build_norm_stabilizer,
                              summary="β·mean_t (‖h_t‖−‖h_{t−1}‖)² on encoder/decoder states "
                                      "or logits (Krueger & Memisevic 2015)"),
            RegularizerPlugin(name="decov", spec=DecovSpec, build=build_decov,
                              summary="½(‖C‖²_F−‖diag C‖²) of a layer's batch covariance "
                                      "(Cogswell et al. 2015)"),
            RegularizerPlugin(name="activation-l2", spec=ActivationL2Spec,
                              build=build_activation_l2,
                              summary="factor·mean h² of chosen layers' activations"),
            RegularizerPlugin(name="weight-l2", spec=WeightL2Spec, build=build_weight_l2,
                              summary="factor·Σ‖θ‖², optionally without biases/embeddings"),
            RegularizerPlugin(name="relaxation", spec=RelaxationSpec, build=build_relaxation,
                              parameters=relaxation_parameters,
                              summary="Neural GPU relaxation: parameter sets in turn, pulled "
                                      "together, averaged at the end"),
            RegularizerPlugin(name="professor-forcing", spec=ProfessorForcingSpec,
                              build=build_professor_forcing, parameters=professor_parameters,
                              summary="discriminator on teacher-forced vs free-running "
                                      "decoder states (Lamb et al. 2016)"),
        ]

    @hookimpl
    def assembly_samplers(self) -> list[SamplerPlugin]:
        return [
            SamplerPlugin(name="mmi-antilm", spec=MmiAntiLmSpec, build=build_antilm,
                          summary="beam search on log p(T|S) − λ log U(T), LM penalty on the "
                                  "first γ tokens (Li et al. 2016)"),
            SamplerPlugin(name="mmi-bidi", spec=MmiBidiSpec, build=build_bidi,
                          summary="n-best reranked by log p(T|S) + λ log p(S|T) + length "
                                  "bonus (Li et al. 2016)"),
        ]


__all__ = [
    "ActivationL2Spec",
    "DecovSpec",
    "MmiAntiLmSpec",
    "MmiBidiSpec",
    "NormStabilizerSpec",
    "ProfessorForcingSpec",
    "RegularizersPlugin",
    "RelaxationSpec",
    "WeightL2Spec",
]
