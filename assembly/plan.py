"""Plan a spec: every layer's sizes and exact parameter count, without torch.

The builder constructs modules from a :class:`Plan` (so sizes cannot disagree), and the
tests hold every row's parameter count equal to the built submodule's at ``row.path``.
Resizers (linear maps where two sizes must agree but differ) appear as rows of their own.
"""

from __future__ import annotations

from typing import Any

import attrs

from assembly.errors import Problem, SpecError
from assembly.sizes import bridge_source
from assembly.spec.model import Spec


@attrs.frozen
class PlanRow:
    """One built submodule: its path in the model, what it is, sizes, parameters."""

    path: str
    component: str
    input: str
    output: str
    parameters: int
    note: str = ""


@attrs.frozen
class LayerPlan:
    """One stack level: the cell record, sizes, and (bidirectional) merged sizes."""

    cell: str
    record: Any = attrs.field(repr=False, eq=False)
    spec: Any
    input_size: int
    hidden: int
    output_size: int  # after merging directions
    state_sizes: tuple[int, ...]  # after merging directions
    direction_output: int
    bidirectional: bool
    merge: str


@attrs.frozen
class Plan:
    """The planned model. ``rows`` in build order; sizes the builder needs."""

    spec: Spec
    rows: tuple[PlanRow, ...]
    encoder: tuple[LayerPlan, ...]
    decoder: tuple[LayerPlan, ...]
    encoder_input: int  # embedding size or input_dim
    encoder_output: int  # M: what attention and peek read
    fed_size: int  # Y: the fed previous input (0 when nothing is fed)
    decoder_input: int  # the first decoder layer's input size
    query_size: int
    features: int  # F: what the output layer reads
    classes: int  # V (tokens) or output_dim (continuous)
    source_vocab: int | None
    target_vocab: int | None

    @property
    def total(self) -> int:
        return sum(row.parameters for row in self.rows)

    def table(self) -> str:
        """The plan as an aligned text table with a total line."""
        header = ("layer", "component", "in", "out", "parameters")
        lines = [(r.path, r.component + (f" ({r.note})" if r.note else ""), r.input, r.output,
                  f"{r.parameters:,}") for r in self.rows]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        def fmt(cells: tuple[str, ...]) -> str:
            return "  ".join(c.rjust(w) if i == 4 else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        rule = "  ".join("-" * w for w in widths)
        total = f"total parameters: {self.total:,}"
        return "\n".join([fmt(header), rule, *map(fmt, lines), rule, total])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.spec.name, "total_parameters": self.total,
                "rows": [attrs.asdict(row) for row in self.rows]}


def linear_parameters(in_size: int, out_size: int, bias: bool = True) -> int:
    return in_size * out_size + (out_size if bias else 0)


def resizer_parameters(in_size: int, out_size: int, bias: bool = True) -> int:
    """A resizer is the identity (0 parameters) where sizes agree."""
    return 0 if in_size == out_size else linear_parameters(in_size, out_size, bias)


def _stack(kind: str, stack: Any, hidden: tuple[int, ...], first_input: int,
           registry: Any, bidirectional: bool, merge: str) -> list[LayerPlan]:
    record = registry.record_of(stack.cell)
    layers = []
    size = first_input
    for h in hidden:
        out = record.output_size(stack.cell, h)
        states = tuple(record.state_sizes(stack.cell, h))
        factor = 2 if bidirectional and merge == "concat" else 1
        layers.append(LayerPlan(record.name, record, stack.cell, size, h, out * factor,
                                tuple(s * factor for s in states), out, bidirectional, merge))
        size = out * factor
    return layers


def _vocab_sizes(spec: Spec) -> tuple[int | None, int | None, list[Problem]]:
    """Token-mode vocabulary sizes: the spec's, else a generated task's inventory plus the
    four specials; a problem where neither says."""
    if not spec.token_mode:
        return None, None, []
    inventory = None
    if spec.data.task is not None and not spec.data.train:
        from assembly.data.tasks import TASKS, task_inventory

        if spec.data.task in TASKS:
            inventory = task_inventory(spec.data.task, spec.data.symbols)
    sizes, problems = [], []
    for index, side in enumerate(("source", "target")):
        size = getattr(spec, side).vocab_size
        if size is None and inventory is not None:
            size = len(inventory[index]) + 4  # <pad> <s> </s> <unk>
        if size is None:
            problems.append(Problem(
                f"{side} vocab_size is needed to size a model trained on files (training "
                f"fills it in from the data's vocabulary)", f"$.{side}.vocab_size"))
        sizes.append(size)
    return sizes[0], sizes[1], problems


def plan_model(spec: Spec, registry: Any = None) -> Plan:
    """Plan ``spec``: sizes and parameter counts of every part. Raises :class:`SpecError`
    when the model cannot be sized (e.g. a token-mode vocabulary size is missing)."""
    if registry is None:
        from assembly.registry import make_registry

        registry = make_registry()
    source_vocab, target_vocab, problems = _vocab_sizes(spec)
    if problems:
        raise SpecError(problems)
    rows: list[PlanRow] = []
    decoder_spec = spec.decoder
    token = spec.token_mode

    # source side
    if token:
        encoder_input = spec.source.embedding
        rows.append(PlanRow("source_embedding", "embedding", str(source_vocab),
                            str(encoder_input), source_vocab * encoder_input))
        classes = target_vocab
    else:
        assert spec.continuous is not None
        encoder_input = spec.continuous.input_dim
        classes = spec.continuous.output_dim

    # encoder
    encoder = _stack("encoder", spec.encoder, spec.encoder_hidden(), encoder_input, registry,
                     spec.encoder.bidirectional, spec.encoder.merge)
    for index, layer in enumerate(encoder):
        directions = 2 if layer.bidirectional else 1
        params = directions * layer.record.parameters(layer.spec, layer.input_size, layer.hidden)
        note = f"bidirectional, {layer.merge}" if layer.bidirectional else ""
        rows.append(PlanRow(f"encoder.layers.{index}", layer.cell, str(layer.input_size),
                            str(layer.output_size), params, note))
    memory_size = encoder[-1].output_size

    # decoder sizes
    fed = 0
    if decoder_spec.feed_previous:
        fed = spec.target.embedding if token else classes
    attention = decoder_spec.attention
    peek = decoder_spec.peek
    problems = []
    if peek is not None and peek.mode != "concat" and fed == 0:
        problems.append(Problem(f"peek mode {peek.mode!r} adds the context to the fed input, "
                                "but feed_previous = false feeds none", "$.decoder.peek.mode"))
    if problems:
        raise SpecError(problems)
    # The attentional vector h̃ has the top decoder layer's output size; it is fed back
    # (input feeding) into the first layer, so size the stack first without it.
    decoder_hidden = spec.decoder_hidden()
    probe = _stack("decoder", decoder_spec, decoder_hidden, 1, registry, False, "concat")
    top_output = probe[-1].output_size
    decoder_input = fed
    if peek is not None and peek.mode == "concat":
        decoder_input += memory_size
    if attention is not None and attention.position == "before":
        decoder_input += memory_size
    if attention is not None and attention.input_feeding:
        decoder_input += top_output
    decoder = _stack("decoder", decoder_spec, decoder_hidden, decoder_input, registry, False,
                     "concat")

    # bridge
    broadcast = decoder_spec.broadcast_state and spec.bridge.type != "zero"
    bridge_kind = spec.bridge.type if broadcast else "zero"
    bridge_rows = []
    for index, layer in enumerate(decoder):
        source = bridge_source(bridge_kind, index, len(encoder), decoder_spec.inner_sync)
        if source is None:
            continue
        enc_states = encoder[source].state_sizes
        pairs = list(zip(enc_states, layer.state_sizes, strict=False))
        if bridge_kind == "copy":
            params = sum(resizer_parameters(e, d) for e, d in pairs)
            component, note = "resizer", f"copy from encoder layer {source}"
        else:
            params = sum(linear_parameters(e, d) for e, d in pairs)
            component, note = bridge_kind, f"from encoder layer {source}"
        if params:
            bridge_rows.append(PlanRow(f"bridge.maps.{index}", component,
                                       "+".join(str(e) for e, _ in pairs),
                                       "+".join(str(d) for _, d in pairs), params, note))
    rows.extend(bridge_rows or [PlanRow("bridge", bridge_kind, "-", "-", 0)])

    if token and (decoder_spec.feed_previous or spec.output.tied):
        rows.append(PlanRow("target_embedding", "embedding", str(target_vocab),
                            str(spec.target.embedding), target_vocab * spec.target.embedding))
    if peek is not None and peek.mode != "concat":
        params = (linear_parameters(memory_size, fed) if peek.mode == "projected-add"
                  else resizer_parameters(memory_size, fed))
        if params:
            rows.append(PlanRow("decoder.peek_map", "resizer" if peek.mode == "add" else
                                "projection", str(memory_size), str(fed), params,
                                f"peek {peek.mode}"))
    for index, layer in enumerate(decoder):
        rows.append(PlanRow(f"decoder.layers.{index}", layer.cell, str(layer.input_size),
                            str(layer.output_size),
                            layer.record.parameters(layer.spec, layer.input_size, layer.hidden)))
    if decoder_spec.inner_sync:
        for index in range(1, len(decoder)):
            below, above = decoder[index - 1].state_sizes, decoder[index].state_sizes
            params = sum(resizer_parameters(a, b) for a, b in zip(below, above, strict=False))
            if params:
                rows.append(PlanRow(f"decoder.sync_maps.{index - 1}", "resizer",
                                    "+".join(map(str, below)), "+".join(map(str, above)),
                                    params, "inner state sync"))

    # attention
    query_size = 0
    features = top_output
    if attention is not None:
        if attention.query == "all":
            query_size = sum(layer.state_sizes[0] for layer in decoder)
        else:
            query_size = decoder[-1].state_sizes[0]
        size = attention.size or query_size
        if attention.score in ("additive", "concat"):
            params = (query_size * size + memory_size * size
                      + (size if attention.score == "additive" else 0) + size)
        elif attention.score == "dot":
            params = resizer_parameters(query_size, memory_size, bias=False)
        else:
            params = memory_size * query_size
        shown = f"size {size}" if attention.score in ("additive", "concat") else ""
        rows.append(PlanRow("decoder.attention", f"attention {attention.score}",
                            f"{query_size}x{memory_size}", str(memory_size), params, shown))
        if attention.position == "after":
            rows.append(PlanRow("decoder.attentional", "linear-tanh",
                                str(memory_size + top_output), str(top_output),
                                linear_parameters(memory_size + top_output, top_output),
                                "attentional vector"))
        else:
            features = top_output + memory_size

    # output
    output = spec.output
    tied_to = spec.target.embedding if output.tied else None
    if output.type == "maxout":
        size = output.size or features
        pre = linear_parameters(features + fed, size * output.pieces)
        final_in = size
        note = f"maxout {output.pieces}x{size}"
    else:
        pre, final_in, note = 0, features, ""
    if tied_to is not None:
        final = resizer_parameters(final_in, tied_to, bias=False) + (classes if output.bias else 0)
        note = (note + ", " if note else "") + "tied to target embedding"
    else:
        final = linear_parameters(final_in, classes, output.bias)
    rows.append(PlanRow("output", output.type, str(features), str(classes), pre + final, note))
    if not token and spec.continuous is not None and spec.continuous.output_length is None:
        rows.append(PlanRow("stop", "linear", str(features), "1",
                            linear_parameters(features, 1), "stop probability"))
    return Plan(spec, tuple(rows), tuple(encoder), tuple(decoder), encoder_input, memory_size,
                fed, decoder_input, query_size, features, classes, source_vocab, target_vocab)
