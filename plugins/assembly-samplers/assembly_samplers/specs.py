"""The sampler specs: frozen, keyword-only attrs classes (no torch here).

Every field is a decode-time option: changing one never requires rebuilding or retraining
the model. ``max_length`` (from :class:`~assembly.plugin.SamplerSpec`) caps the number of
output steps (EOS included); ``None`` keeps the model's own rule (2·|source| + 10).
"""

from __future__ import annotations

from typing import Any

import attrs
from assembly.plugin import SamplerSpec, positive, probability


def _non_negative(_instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0; got {value!r}")


def _integer(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{attribute.name} must be an integer; got {value!r}")


def _nucleus(_instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{attribute.name} must lie in (0, 1] (1.0 switches it off); "
                         f"got {value!r}")


def _at_most_width(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value > instance.width:
        raise ValueError(f"{attribute.name} ({value}) must not exceed width ({instance.width})")


@attrs.frozen(kw_only=True)
class SampleSpec(SamplerSpec):
    """Ancestral sampling inside the decoding loop: at every step each row draws its next
    token from softmax(log p / ``temperature``), restricted to the ``top_k`` most probable
    tokens (0: off) and then to the nucleus of mass ``top_p`` (1.0: off), renormalised;
    the draw is fed back as the next input. ``n`` samples are drawn per input and
    returned best first by their log-probability under the model (temperature 1,
    unfiltered).

    Seeded decoding (``decode(..., seed=s)``) gives a row the same samples alone as in any
    batch."""

    temperature: float = attrs.field(default=1.0, validator=positive)
    top_k: int = attrs.field(default=0, validator=[_integer, _non_negative])
    top_p: float = attrs.field(default=1.0, validator=_nucleus)
    n: int = attrs.field(default=1, validator=[_integer, positive])


@attrs.frozen(kw_only=True)
class BeamSpec(SamplerSpec):
    """Beam search over ``width`` hypotheses per input.

    - ``length_penalty``: GNMT's α; a finished hypothesis of ``L`` steps (EOS included)
      scores log p / ((5 + L) / 6)^α. 0 ranks by the plain log-probability.
    - ``n_best``: how many hypotheses to return per input (≤ ``width``), best first.
    - ``early_finish``: stop an input once ``width`` hypotheses have finished (the usual
      heuristic; it may miss a longer, better one). An input always stops once its
      ``n_best`` finished hypotheses can no longer be beaten by any live one, which
      never changes the result.
    """

    width: int = attrs.field(default=5, validator=[_integer, positive])
    length_penalty: float = attrs.field(default=0.0, validator=_non_negative)
    n_best: int = attrs.field(default=1, validator=[_integer, positive, _at_most_width])
    early_finish: bool = True


@attrs.frozen(kw_only=True)
class DiverseBeamSpec(SamplerSpec):
    """Diverse beam search (Vijayakumar et al. 2016): ``width`` is the TOTAL number of
    beams, split into ``groups`` groups of ``width / groups`` beams each (``width`` must be
    a multiple of ``groups``). At each step the groups choose in turn; group g's
    candidates are scored log p(token) − ``diversity`` · (how many beams of groups
    0 … g−1 chose that token at this step) (Hamming diversity). Each group runs beam
    search on these augmented scores; the returned ``n_best`` hypotheses (≤ ``width``,
    over all groups) are ranked and scored by their true log-probability (length
    penalised like :class:`BeamSpec`). ``groups = 1`` (or ``diversity = 0`` with one
    group) is plain beam search."""

    width: int = attrs.field(default=6, validator=[_integer, positive])
    groups: int = attrs.field(default=3, validator=[_integer, positive])
    diversity: float = attrs.field(default=0.5, validator=_non_negative)
    length_penalty: float = attrs.field(default=0.0, validator=_non_negative)
    n_best: int = attrs.field(default=1, validator=[_integer, positive, _at_most_width])
    early_finish: bool = True

    @groups.validator
    def _divides(self, attribute: attrs.Attribute, value: int) -> None:
        if self.width % value:
            raise ValueError(f"width ({self.width}) must be a multiple of groups ({value})")


@attrs.frozen(kw_only=True)
class HiddenAverageSpec(SamplerSpec):
    """Greedy decoding with hidden-state averaging: at step t the cell receives
    (1 − α)·s_{t−1} + α·mean(s_0 … s_{t−1}) with α = ``average_hidden_state_influence``,
    applied to every state tensor of every decoder layer (an LSTM's h and c alike; the
    input-feeding vector is not a cell state and is fed unchanged). The states the cell
    returns are stored unchanged, so the mean is always over the true states. α = 0 is
    exactly greedy decoding."""

    average_hidden_state_influence: float = attrs.field(default=0.5, validator=probability)
