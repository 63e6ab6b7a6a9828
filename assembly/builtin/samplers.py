"""Built-in sampler ``greedy``: the most probable token at every step."""

from __future__ import annotations

from typing import Any

import attrs

from assembly.plugin import SamplerPlugin, SamplerSpec, hookimpl


@attrs.frozen(kw_only=True)
class GreedySpec(SamplerSpec):
    """Greedy decoding: argmax at every step, fed back as the next input."""


def build_greedy(spec: GreedySpec) -> Any:
    from assembly.decode.greedy import GreedySampler

    return GreedySampler(spec)


class BuiltinSamplers:
    @hookimpl
    def assembly_samplers(self) -> list[SamplerPlugin]:
        return [
            SamplerPlugin(
                name="greedy",
                spec=GreedySpec,
                build=build_greedy,
                summary="argmax at every step (batched, deterministic)",
            )
        ]
