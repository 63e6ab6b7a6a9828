"""The component specs: frozen, keyword-only attrs classes (no torch here).

Layer names (``targets``, ``layer``, ``layers``) read the model's :class:`ForwardOutputs`:

==================  =====================================================================
``encoder``         norm-stabilizer / activation-l2: every encoder layer's outputs (one
                    term per layer, summed); decov: the top encoder layer's outputs
``encoder:<k>``     encoder layer k's outputs (k = 0 is the lowest layer)
``decoder``         norm-stabilizer / activation-l2: every decoder layer's outputs (one
                    term per layer, summed); decov: the top decoder layer's outputs
``decoder:<k>``     decoder layer k's outputs
``logits``          the output layer's predictions (logits, or vectors in continuous mode)
==================  =====================================================================

Only valid steps count: the encoder's source mask for encoder layers, the target mask for
decoder layers and logits. Layer indices are checked against the model when the
regulariser is built.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from assembly.plugin import RegularizerSpec, SamplerSpec, one_of, positive

LAYER_PATTERN = re.compile(r"^(?:(?:encoder|decoder)(?::(?:0|[1-9][0-9]*))?|logits)$")
"""``encoder``, ``decoder``, ``encoder:<k>``, ``decoder:<k>`` or ``logits``."""

LAYER_NAMES = ("encoder", "decoder", "encoder:<k>", "decoder:<k>", "logits")


def _non_negative(_instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if isinstance(value, bool) or value < 0:
        raise ValueError(f"{attribute.name} must be >= 0; got {value!r}")


def _integer(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{attribute.name} must be an integer; got {value!r}")


def _layer_name(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not LAYER_PATTERN.match(value):
        raise ValueError(f"{attribute.name} must be one of {', '.join(LAYER_NAMES)}; "
                         f"got {value!r}")


def _layer_names(_instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must name at least one of {', '.join(LAYER_NAMES)}")
    for name in value:
        _layer_name(_instance, attribute, name)
    if len(set(value)) != len(value):
        raise ValueError(f"{attribute.name} names a layer twice: {list(value)!r}")


def _path(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name} must name a trained run directory; got {value!r}")


def _at_most_width(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value > instance.width:
        raise ValueError(f"{attribute.name} ({value}) must not exceed width ({instance.width})")


def _tuple(value: Any) -> Any:
    """Lists from a spec file become tuples; a single string becomes a 1-tuple."""
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, list) else value


# -- regularisers -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class NormStabilizerSpec(RegularizerSpec):
    """Norm stabiliser (Krueger & Memisevic 2015): ``beta · mean_t (‖h_t‖₂ − ‖h_{t−1}‖₂)²``.

    For each sequence the mean runs over its consecutive pairs of valid steps (padding
    never counts; a sequence of one step has no pair and is left out), then the means
    are averaged over the batch. ``targets``: ``encoder`` / ``decoder`` (every layer of
    the stack, one term per layer), ``encoder:<k>`` / ``decoder:<k>`` (one layer) and/or
    ``logits``; the terms are summed. ``beta``: the factor (the old add-on used 50).
    """

    targets: tuple[str, ...] = attrs.field(default=("decoder",), converter=_tuple,
                                           validator=_layer_names)
    beta: float = attrs.field(default=50.0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class DecovSpec(RegularizerSpec):
    """DeCov (Cogswell et al. 2015): ``factor · ½ (‖C‖²_F − ‖diag C‖²₂)``.

    C (H, H) is the covariance of the chosen ``layer``'s activations over the batch, every
    valid step of every sequence one observation (normalised by their number N, as in the
    paper). ``layer``: ``encoder`` / ``decoder`` (the top layer of the stack),
    ``encoder:<k>``, ``decoder:<k>`` or ``logits``.
    """

    layer: str = attrs.field(default="decoder", validator=_layer_name)
    factor: float = attrs.field(default=0.1, validator=_non_negative)


@attrs.frozen(kw_only=True)
class ActivationL2Spec(RegularizerSpec):
    """Activation L2: ``factor · mean(h²)`` over the valid steps and units of each layer in
    ``layers`` (``encoder`` / ``decoder``: every layer of the stack), summed over layers."""

    layers: tuple[str, ...] = attrs.field(default=("decoder",), converter=_tuple,
                                          validator=_layer_names)
    factor: float = attrs.field(default=1.0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class WeightL2Spec(RegularizerSpec):
    """Weight L2: ``factor · Σ ‖θ‖²₂`` over the model's trainable parameters (a tied weight
    counts once). ``exclude_biases`` leaves out bias vectors (every 1-d parameter);
    ``exclude_embeddings`` leaves out embedding tables (and an output layer tied to one).
    Unlike an optimiser's ``weight_decay`` this term passes through Adam's scaling."""

    factor: float = attrs.field(default=1e-5, validator=_non_negative)
    exclude_biases: bool = True
    exclude_embeddings: bool = False


@attrs.frozen(kw_only=True)
class RelaxationSpec(RegularizerSpec):
    """Neural GPU parameter-sharing relaxation (Kaiser & Sutskever 2015).

    ``sets`` copies of the model's parameters are used in turn: each update trains the
    live set, then the next set becomes live. The penalty ``pull · Σ_i ‖θ_i − θ̄‖²`` pulls
    every set towards their mean θ̄; ``pull = min(pull_max, pull_start ·
    pull_growth^⌊updates / pull_every⌋)``. At the end of training the sets are averaged
    into one model. The optimiser state (e.g. Adam's moments) is shared by the sets.
    """

    sets: int = attrs.field(default=2, validator=[_integer, positive])
    pull_start: float = attrs.field(default=5e-4, validator=_non_negative)
    pull_growth: float = attrs.field(default=1.2, validator=_non_negative)
    pull_every: int = attrs.field(default=500, validator=[_integer, positive])
    pull_max: float = attrs.field(default=1.0, validator=_non_negative)

    @sets.validator
    def _two_or_more(self, attribute: attrs.Attribute, value: int) -> None:
        if value < 2:
            raise ValueError(f"sets must be at least 2 (one set is no relaxation); got {value}")

    @pull_growth.validator
    def _grows(self, attribute: attrs.Attribute, value: float) -> None:
        if value < 1.0:
            raise ValueError(f"pull_growth must be >= 1 (the pull only rises); got {value!r}")


@attrs.frozen(kw_only=True)
class ProfessorForcingSpec(RegularizerSpec):
    """Professor Forcing (Lamb et al. 2016).

    A discriminator (bidirectional GRU of ``discriminator_hidden`` units per direction over
    the valid steps, then an MLP) tells teacher-forced decoder top-layer state sequences
    from free-running ones (``greedy`` or ``sample``\\ d tokens fed back through the step
    API, as many steps as the target). The generator penalty ``factor · −log D(free)``
    makes free-running states look teacher-forced; after each update the discriminator
    takes one step of its own Adam (``lr``) on ``−log D(teacher) − log(1 − D(free))``.
    Neither side's gradient reaches the other. The penalty counts only after ``warmup``
    discriminator updates (it is still computed and logged).
    """

    factor: float = attrs.field(default=1.0, validator=_non_negative)
    discriminator_hidden: int = attrs.field(default=64, validator=[_integer, positive])
    lr: float = attrs.field(default=1e-3, validator=positive)
    free_running: str = attrs.field(default="greedy", validator=one_of("greedy", "sample"))
    warmup: int = attrs.field(default=0, validator=[_integer, _non_negative])


# -- samplers ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class MmiAntiLmSpec(SamplerSpec):
    """MMI-antiLM beam search (Li et al. 2016): hypotheses are scored
    ``log p(T|S) − lam · log U(T)`` where ``U`` is a target-side language model whose
    penalty counts only on the first ``gamma`` tokens of T (EOS included).

    ``lm``: the run directory of the language model (train it from
    ``assembly_regularizers.mmi.lm_spec(spec)`` so that the vocabularies agree).
    ``width`` beams per input, ``n_best`` (≤ width) returned best first by that score;
    ``early_finish`` stops an input once ``width`` hypotheses have finished. With
    ``lam = 0`` this is plain beam search.
    """

    lm: str = attrs.field(validator=_path)
    lam: float = attrs.field(default=0.5, validator=_non_negative)
    gamma: int = attrs.field(default=5, validator=[_integer, _non_negative])
    width: int = attrs.field(default=5, validator=[_integer, positive])
    n_best: int = attrs.field(default=1, validator=[_integer, positive, _at_most_width])
    early_finish: bool = True


@attrs.frozen(kw_only=True)
class MmiBidiSpec(SamplerSpec):
    """MMI-bidi reranking (Li et al. 2016): beam search (``width`` beams) gives an n-best
    list of ``n_best`` hypotheses, reranked by
    ``log p(T|S) + lam · log p(S|T) + length_bonus · |T|`` (|T| without EOS) and returned
    in that order with that score.

    ``reverse``: the run directory of the reverse (target → source) model (train it from
    ``assembly_regularizers.mmi.reverse_spec(spec)``). With ``lam = 0`` and no length
    bonus the forward ranking is kept.
    """

    reverse: str = attrs.field(validator=_path)
    lam: float = attrs.field(default=0.5, validator=_non_negative)
    length_bonus: float = 0.0
    width: int = attrs.field(default=10, validator=[_integer, positive])
    n_best: int = attrs.field(default=10, validator=[_integer, positive, _at_most_width])
    early_finish: bool = False


__all__ = [
    "LAYER_NAMES",
    "ActivationL2Spec",
    "DecovSpec",
    "MmiAntiLmSpec",
    "MmiBidiSpec",
    "NormStabilizerSpec",
    "ProfessorForcingSpec",
    "RelaxationSpec",
    "WeightL2Spec",
]
