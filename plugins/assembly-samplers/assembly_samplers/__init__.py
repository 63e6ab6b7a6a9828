"""Decoding strategies for ``assembly``, registered through the ``assembly_samplers`` hook.

========================  ================================================================
``sample``                ancestral sampling inside the loop: temperature, top-k, top-p, n
``beam``                  batched beam search: width, GNMT length penalty, n-best, early finish
``diverse-beam``          diverse beam search (Vijayakumar et al. 2016): groups, Hamming penalty
``hidden-average``        greedy with hidden-state averaging (α = average_hidden_state_influence)
========================  ================================================================

Importing this package imports no torch; the samplers load on first build. Installed, the
entry point ``samplers`` (group ``assembly``) makes them available to every spec::

    [sampler]
    type = "beam"
    width = 5
    length_penalty = 0.6

From Python, pass the plugin object in::

    from assembly.registry import make_registry
    registry = make_registry(plugins=[SamplersPlugin()], entrypoints=False)
    sampler = registry.get("sampler", "beam").build(BeamSpec(width=5))
    hypotheses = sampler.decode(model, source, source_lengths)
"""

from __future__ import annotations

from typing import Any

from assembly.plugin import SamplerPlugin, hookimpl

from assembly_samplers.specs import BeamSpec, DiverseBeamSpec, HiddenAverageSpec, SampleSpec

__version__ = "0.1.0"


def build_sample(spec: SampleSpec) -> Any:
    """The :class:`~assembly_samplers.sample.AncestralSampler` for ``spec``."""
    from assembly_samplers.sample import AncestralSampler

    return AncestralSampler(spec)


def build_beam(spec: BeamSpec | DiverseBeamSpec) -> Any:
    """The :class:`~assembly_samplers.beam.BeamSearch` for ``spec`` (plain or diverse)."""
    from assembly_samplers.beam import BeamSearch

    return BeamSearch(spec)


def build_hidden_average(spec: HiddenAverageSpec) -> Any:
    """The :class:`~assembly_samplers.hidden_average.HiddenAverageSampler` for ``spec``."""
    from assembly_samplers.hidden_average import HiddenAverageSampler

    return HiddenAverageSampler(spec)


class SamplersPlugin:
    """The plugin object the entry point names; stateless."""

    @hookimpl
    def assembly_samplers(self) -> list[SamplerPlugin]:
        return [
            SamplerPlugin(name="sample", spec=SampleSpec, build=build_sample,
                          summary="ancestral sampling in the loop: temperature, top-k, "
                                  "top-p, n per input (seeded per row)"),
            SamplerPlugin(name="beam", spec=BeamSpec, build=build_beam,
                          summary="batched beam search: width, length penalty, n-best, "
                                  "early finish"),
            SamplerPlugin(name="diverse-beam", spec=DiverseBeamSpec, build=build_beam,
                          summary="diverse beam search: groups with a Hamming diversity "
                                  "penalty"),
            SamplerPlugin(name="hidden-average", spec=HiddenAverageSpec,
                          build=build_hidden_average,
                          summary="greedy with hidden-state averaging "
                                  "(average_hidden_state_influence)"),
        ]


__all__ = [
    "BeamSpec",
    "DiverseBeamSpec",
    "HiddenAverageSpec",
    "SampleSpec",
    "SamplersPlugin",
    "build_beam",
    "build_hidden_average",
    "build_sample",
]
