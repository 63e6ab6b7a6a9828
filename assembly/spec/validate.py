"""Rules that relate several fields of a spec. Every broken rule is reported, with a path."""

from __future__ import annotations

from typing import Any

from assembly.errors import Problem
from assembly.spec.model import Spec


def check_spec(spec: Spec, registry: Any = None) -> list[Problem]:
    """Every cross-field problem of ``spec`` (an empty list when it is consistent)."""
    problems: list[Problem] = []
    for side, depth in (("encoder", spec.encoder_depth), ("decoder", spec.decoder_depth)):
        hidden = getattr(spec, side).hidden
        if isinstance(hidden, tuple) and len(hidden) not in (1, depth):
            problems.append(
                Problem(
                    f"{len(hidden)} hidden sizes given for the {side} of depth {depth}; give one "
                    "size "
                    f"or exactly {depth}",
                    f"$.{side}.hidden",
                )
            )
    if spec.mode == "continuous" and spec.continuous is None:
        problems.append(
            Problem(
                "continuous mode needs a [continuous] section with input_dim and output_dim",
                "$.continuous",
            )
        )
    if spec.mode == "tokens" and spec.continuous is not None:
        problems.append(
            Problem('a [continuous] section is only for mode = "continuous"', "$.continuous")
        )
    if spec.output.tied and spec.mode != "tokens":
        problems.append(Problem("tied output embeddings need token mode", "$.output.tied"))
    decoder = spec.decoder
    attention = decoder.attention
    if attention is not None and attention.input_feeding and attention.position == "before":
        problems.append(
            Problem(
                "input feeding feeds the attentional vector of position "
                '"after"; with "before" the context already joins the input',
                "$.decoder.attention.input_feeding",
            )
        )
    receives_context = decoder.peek is not None or (
        attention is not None and (attention.position == "before" or attention.input_feeding)
    )
    if not decoder.feed_previous and not receives_context:
        problems.append(
            Problem(
                "with feed_previous = false the decoder needs peek or attention "
                '(position "before" or input feeding) to receive any input',
                "$.decoder.feed_previous",
            )
        )
    if not decoder.broadcast_state and spec.bridge.type in ("linear", "linear-tanh"):
        problems.append(
            Problem(
                f"broadcast_state = false starts the decoder from zeros, which "
                f"contradicts bridge type {spec.bridge.type!r}",
                "$.decoder.broadcast_state",
            )
        )
    if (
        spec.training.curriculum is not None
        and spec.training.curriculum.end is not None
        and spec.training.curriculum.end < spec.training.curriculum.start
    ):
        problems.append(Problem("curriculum end must be >= start", "$.training.curriculum.end"))
    data = spec.data
    if data.min_length > data.max_length:
        problems.append(
            Problem(
                f"min_length {data.min_length} exceeds max_length {data.max_length}",
                "$.data.min_length",
            )
        )
    if data.task is not None and data.train:
        problems.append(Problem("give either a generated task or train files, not both",
                                "$.data.task"))
    metric = spec.training.metric
    if (metric == "mse" and spec.token_mode) or (
            metric in ("token_accuracy", "exact_match", "bleu", "chrf") and not spec.token_mode):
        problems.append(Problem(f"metric {metric!r} does not apply in {spec.mode} mode",
                                "$.training.metric"))
    if data.task is None and not data.train:
        problems.append(Problem("give a generated task or train files", "$.data"))
    if data.task is not None:
        from assembly.data.continuous_tasks import CONTINUOUS_TASKS
        from assembly.data.tasks import TASKS

        known = TASKS if spec.token_mode else CONTINUOUS_TASKS
        if data.task not in known:
            problems.append(Problem(f"unknown task {data.task!r} in {spec.mode} mode; known: "
                                    f"{', '.join(sorted(known))}", "$.data.task"))
    if data.format == "parallel":
        for split in ("train", "dev", "test"):
            files = getattr(data, split)
            if files and len(files) != 2:
                problems.append(
                    Problem("parallel data names [source, target] files", f"$.data.{split}")
                )
    return problems
