"""Build the torch module a spec describes, from its :class:`~assembly.plan.Plan`.

Components come from the registry by spec class (no string dispatch on cell names);
sizes come from the plan, so the module and the plan agree by construction, and
:func:`module_table` recounts every planned row from the real submodules.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from assembly.data.vocab import PAD_ID
from assembly.nn.attention import Attention, resizer
from assembly.nn.bridge import Bridge
from assembly.nn.decoder import Decoder
from assembly.nn.encoder import Encoder
from assembly.nn.layers import BidirectionalLayer
from assembly.nn.output import LinearOutput, MaxoutOutput
from assembly.nn.seq2seq import Seq2Seq
from assembly.plan import LayerPlan, Plan, plan_model
from assembly.spec.model import Spec


def _layer(layer: LayerPlan) -> nn.Module:
    made = layer.record.build(layer.spec, layer.input_size, layer.hidden)
    if layer.bidirectional:
        backward = layer.record.build(layer.spec, layer.input_size, layer.hidden)
        return BidirectionalLayer(made, backward, layer.merge)
    return made


def build_model(spec: Spec | Plan, registry: Any = None, *, seed: int | None = None) -> Seq2Seq:
    """The initialised :class:`Seq2Seq` for a spec (or an existing plan of one).

    ``seed`` makes the initialisation reproducible (torch's global generator is seeded)."""
    plan = spec if isinstance(spec, Plan) else plan_model(spec, registry)
    spec = plan.spec
    if seed is not None:
        torch.manual_seed(seed)
    token = spec.token_mode
    decoder_spec = spec.decoder
    attention_spec = decoder_spec.attention

    source_embedding = target_embedding = None
    if token:
        source_embedding = nn.Embedding(plan.source_vocab, spec.source.embedding,
                                        padding_idx=PAD_ID)
        if decoder_spec.feed_previous or spec.output.tied:
            target_embedding = nn.Embedding(plan.target_vocab, spec.target.embedding,
                                            padding_idx=PAD_ID)

    encoder = Encoder([_layer(layer) for layer in plan.encoder], spec.encoder.dropout)

    broadcast = decoder_spec.broadcast_state and spec.bridge.type != "zero"
    bridge = Bridge(spec.bridge.type if broadcast else "zero",
                    [layer.state_sizes for layer in plan.encoder],
                    [layer.state_sizes for layer in plan.decoder], decoder_spec.inner_sync)

    peek = decoder_spec.peek
    peek_map = None
    if peek is not None and peek.mode == "add":
        peek_map = resizer(plan.encoder_output, plan.fed_size)
    elif peek is not None and peek.mode == "projected-add":
        peek_map = nn.Linear(plan.encoder_output, plan.fed_size)

    attention = attentional = None
    if attention_spec is not None:
        attention = Attention(attention_spec.score, plan.query_size, plan.encoder_output,
                              attention_spec.size or plan.query_size)
        if attention_spec.position == "after":
            top = plan.decoder[-1].output_size
            attentional = nn.Linear(plan.encoder_output + top, top)

    sync_maps = None
    if decoder_spec.inner_sync:
        sync_maps = [nn.ModuleList(resizer(a, b) for a, b in zip(
            plan.decoder[i - 1].state_sizes, plan.decoder[i].state_sizes, strict=False))
            for i in range(1, len(plan.decoder))]

    decoder = Decoder(
        [_layer(layer) for layer in plan.decoder], dropout=decoder_spec.dropout,
        feed_previous=decoder_spec.feed_previous, peek_mode=peek.mode if peek else None,
        peek_map=peek_map, attention=attention,
        position=attention_spec.position if attention_spec else "after",
        query=attention_spec.query if attention_spec else "top",
        input_feeding=bool(attention_spec and attention_spec.input_feeding),
        attentional=attentional,
        attention_dropout=attention_spec.dropout if attention_spec else 0.0,
        sync_maps=sync_maps)

    output_spec = spec.output
    tied = target_embedding if output_spec.tied else None
    if output_spec.type == "maxout":
        output: nn.Module = MaxoutOutput(plan.features, plan.fed_size,
                                         output_spec.size or plan.features, output_spec.pieces,
                                         plan.classes, output_spec.bias, tied)
    else:
        output = LinearOutput(plan.features, plan.classes, output_spec.bias, tied)

    stop = None
    continuous = spec.continuous
    if not token and continuous is not None and continuous.output_length is None:
        stop = nn.Linear(plan.features, 1)

    model = Seq2Seq(token_mode=token, source_embedding=source_embedding,
                    target_embedding=target_embedding,
                    source_dropout=spec.source.dropout if token else 0.0,
                    target_dropout=spec.target.dropout if token else 0.0,
                    encoder=encoder, bridge=bridge, decoder=decoder, output=output, stop=stop,
                    output_size=plan.classes,
                    output_length=continuous.output_length if continuous else None)
    if continuous is not None:
        model.regression_loss = continuous.loss
        model.stop_threshold = continuous.stop_threshold
    model.plan = plan  # type: ignore[assignment]
    return model


def count_parameters(module: nn.Module) -> int:
    """Distinct parameters (a tied weight counts once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def module_table(model: nn.Module, plan: Plan) -> Plan:
    """The plan with every row's parameter count recounted from the real submodule."""
    import attrs

    rows = []
    for row in plan.rows:
        try:
            sub = model.get_submodule(row.path)
        except AttributeError:
            sub = None
        counted = count_parameters(sub) if sub is not None else 0
        rows.append(attrs.evolve(row, parameters=counted))
    return attrs.evolve(plan, rows=tuple(rows))
