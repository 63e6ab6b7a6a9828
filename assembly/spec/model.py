"""The spec: frozen, keyword-only attrs classes describing a whole seq2seq experiment.

Field validators check single values (so a wrong value fails at construction in Python
and is reported with its path when loading a file); rules that relate several fields are
checked by :func:`assembly.spec.validate.check_spec`, which reports every problem at once.
No torch here.
"""

from __future__ import annotations

from typing import Any

import attrs

from assembly.builtin.cells import LstmSpec
from assembly.builtin.placements import SingleDeviceSpec
from assembly.builtin.samplers import GreedySpec
from assembly.plugin import (
    CellSpec,
    PlacementSpec,
    RegularizerSpec,
    SamplerSpec,
    one_of,
    positive,
    probability,
)

Sizes = int | tuple[int, ...]
"""One size for every layer, or one per layer."""


# Each validator carries what it allows as a JSON Schema fragment (``json_schema``), which
# the schema generator (assembly.spec.schema) merges into the field's schema.


def _sizes(_instance: Any, attribute: attrs.Attribute, value: Sizes) -> None:
    values = (value,) if isinstance(value, int) else value
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values):
        raise ValueError(
            f"{attribute.name} must be a positive integer or a non-empty list of "
            f"them; got {value!r}"
        )


_sizes.json_schema = {  # type: ignore[attr-defined]
    "oneOf": [
        {"type": "integer", "minimum": 1},
        {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1},
    ]
}


def _depth(_instance: Any, attribute: attrs.Attribute, value: Sizes) -> None:
    _sizes(_instance, attribute, value)
    if isinstance(value, tuple) and len(value) != 2:
        raise ValueError(f"depth must be an integer or an [encoder, decoder] pair; got {value!r}")


_depth.json_schema = {  # type: ignore[attr-defined]
    "oneOf": [
        {"type": "integer", "minimum": 1},
        {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "minItems": 2,
            "maxItems": 2,
            "description": "[encoder depth, decoder depth]",
        },
    ]
}


def _non_negative(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0; got {value!r}")


_non_negative.json_schema = {"minimum": 0}  # type: ignore[attr-defined]


def _dropout(_instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{attribute.name} must lie in [0, 1); got {value!r}")


_dropout.json_schema = {"minimum": 0, "exclusiveMaximum": 1}  # type: ignore[attr-defined]


@attrs.frozen(kw_only=True)
class TokenSideSpec:
    """One side of a token-mode model: vocabulary size, embedding size, embedding dropout.

    ``vocab_size`` may be left out when training from data: it is then taken from the
    vocabulary built from the data (specials included).
    """

    vocab_size: int | None = attrs.field(default=None, validator=positive)
    embedding: int = attrs.field(default=128, validator=positive)
    dropout: float = attrs.field(default=0.0, validator=_dropout)


@attrs.frozen(kw_only=True)
class ContinuousSpec:
    """Continuous mode: real vectors in and out.

    ``output_length``: every output has this many steps; ``None`` adds a learned stop
    head (trained with binary cross-entropy on "this is the last step", decoding stops
    when its probability exceeds ``stop_threshold``). ``loss``: ``mse``, ``l1`` or ``huber``.
    """

    input_dim: int = attrs.field(validator=positive)
    output_dim: int = attrs.field(validator=positive)
    output_length: int | None = attrs.field(default=None, validator=positive)
    stop_threshold: float = attrs.field(default=0.5, validator=probability)
    loss: str = attrs.field(default="mse", validator=one_of("mse", "l1", "huber"))


@attrs.frozen(kw_only=True)
class EncoderSpec:
    """The encoder stack. ``hidden`` is one size or one per layer; a bidirectional layer
    runs both directions over the unpadded steps only and merges them by ``concat``
    (output 2·hidden) or ``sum``. ``dropout`` applies between layers."""

    cell: CellSpec = attrs.field(factory=LstmSpec)
    hidden: Sizes = attrs.field(default=128, validator=_sizes)
    bidirectional: bool = False
    merge: str = attrs.field(default="concat", validator=one_of("concat", "sum"))
    dropout: float = attrs.field(default=0.0, validator=_dropout)


@attrs.frozen(kw_only=True)
class BridgeSpec:
    """How encoder final states become decoder initial states.

    ``zero``: zeros. ``copy``: decoder layer i starts from encoder layer i's final state
    (a linear resizer where sizes differ; zeros for decoder layers beyond the encoder's
    depth). ``linear`` / ``linear-tanh``: a learned map from encoder layer
    min(i, depth−1)'s final state (all state tensors) to decoder layer i's.
    """

    type: str = attrs.field(
        default="copy", validator=one_of("zero", "copy", "linear", "linear-tanh")
    )


@attrs.frozen(kw_only=True)
class AttentionSpec:
    """Attention over the encoder outputs, masked over padding.

    - ``score``: ``additive`` (Bahdanau: vᵀ tanh(W s + U h)), ``dot`` (sᵀh; a resizer when
      sizes differ), ``general`` (sᵀ W h), ``concat`` (Luong: vᵀ tanh(W [s; h])).
    - ``size``: hidden size of the additive/concat scorer (default: the query size).
    - ``query``: ``top`` (top decoder layer's state) or ``all`` (all layers concatenated).
    - ``position``: ``after`` the cell step (Luong: attend with s_t, attentional vector
      h̃_t = tanh(W_c [c_t; s_t]) feeds the output) or ``before`` (Bahdanau: attend with
      s_{t−1}, the context joins the cell input and the output layer).
    - ``input_feeding``: feed h̃_{t−1} with the next input (Luong; ``after`` only).
    - ``dropout``: on the attentional vector.
    """

    score: str = attrs.field(
        default="additive", validator=one_of("additive", "dot", "general", "concat")
    )
    size: int | None = attrs.field(default=None, validator=positive)
    query: str = attrs.field(default="top", validator=one_of("top", "all"))
    position: str = attrs.field(default="after", validator=one_of("after", "before"))
    input_feeding: bool = False
    dropout: float = attrs.field(default=0.0, validator=_dropout)


@attrs.frozen(kw_only=True)
class PeekSpec:
    """Cho et al. 2014: the encoder's summary vector reaches the decoder at every step.

    ``mode``: ``concat`` with the step input (as in the paper), ``add`` to it (a resizer
    where sizes differ), or ``projected-add`` (always a learned projection, then add)."""

    mode: str = attrs.field(default="concat", validator=one_of("concat", "add", "projected-add"))


@attrs.frozen(kw_only=True)
class DecoderSpec:
    """The decoder stack.

    - ``broadcast_state = false`` starts the decoder from zeros (same as bridge ``zero``).
    - ``inner_sync``: at every step, layer k>0 starts from the state layer k−1 has just
      computed (one state shared through the stack; a resizer where sizes differ).
    - ``feed_previous``: feed the previous target (teacher forcing, shifted by one step)
      while training and the previous output while decoding. ``false`` feeds no token
      (the decoder then needs peek or attention-before to receive anything).
    """

    cell: CellSpec = attrs.field(factory=LstmSpec)
    hidden: Sizes = attrs.field(default=128, validator=_sizes)
    dropout: float = attrs.field(default=0.0, validator=_dropout)
    broadcast_state: bool = True
    inner_sync: bool = False
    feed_previous: bool = True
    peek: PeekSpec | None = None
    attention: AttentionSpec | None = None


@attrs.frozen(kw_only=True)
class OutputSpec:
    """The output layer. ``linear``: logits = W o. ``maxout`` (Bahdanau's deep output):
    t = maxout(U s + V y_{t−1} + C c) with ``pieces`` per unit and ``size`` units, then
    logits = W t. ``tied``: W is the target embedding (a resizer to the embedding size
    where needed). ``bias`` switches the output biases."""

    type: str = attrs.field(default="linear", validator=one_of("linear", "maxout"))
    size: int | None = attrs.field(default=None, validator=positive)
    pieces: int = attrs.field(default=2, validator=positive)
    tied: bool = False
    bias: bool = True


@attrs.frozen(kw_only=True)
class OptimizerSpec:
    """``adam``, ``adamw``, ``sgd`` (with ``momentum``), ``rmsprop`` or ``adagrad``."""

    type: str = attrs.field(
        default="adam", validator=one_of("adam", "adamw", "sgd", "rmsprop", "adagrad")
    )
    lr: float = attrs.field(default=1e-3, validator=positive)
    weight_decay: float = attrs.field(default=0.0, validator=_non_negative)
    momentum: float = attrs.field(default=0.0, validator=_non_negative)
    betas: tuple[float, float] = (0.9, 0.999)


@attrs.frozen(kw_only=True)
class ScheduleSpec:
    """Learning-rate schedule, stepped per update.

    ``constant``; ``step`` (× ``gamma`` every ``step_size`` updates); ``exponential``
    (× ``gamma`` per update); ``cosine`` (to 0 over the run); ``plateau`` (× ``gamma``
    after ``patience`` evaluations without dev improvement). ``warmup`` updates of linear
    warm-up precede any of them."""

    type: str = attrs.field(
        default="constant", validator=one_of("constant", "step", "exponential", "cosine", "plateau")
    )
    gamma: float = attrs.field(default=0.5, validator=positive)
    step_size: int = attrs.field(default=1000, validator=positive)
    patience: int = attrs.field(default=2, validator=positive)
    warmup: int = attrs.field(default=0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class CurriculumSpec:
    """Length curriculum: train on targets of at most ``start`` tokens (EOS included) and
    raise the limit by ``step`` every ``every`` epochs; it stops growing at ``end``
    (``None``: it keeps growing, so eventually every example is used)."""

    start: int = attrs.field(default=5, validator=positive)
    step: int = attrs.field(default=5, validator=positive)
    every: int = attrs.field(default=1, validator=positive)
    end: int | None = attrs.field(default=None, validator=positive)


@attrs.frozen(kw_only=True)
class TrainingSpec:
    """How to train. ``epochs`` and/or ``max_updates`` bound the run; ``early_stopping``
    stops after that many evaluations without improving ``metric`` on the dev set
    (``auto``: exact match in token mode, mean squared error in continuous mode).
    ``clip``: the gradient-norm limit (left out: no clipping).
    Evaluation and a checkpoint follow every epoch, and also every ``eval_every`` /
    ``checkpoint_every`` updates when set; the last ``keep_checkpoints`` are kept.
    ``amp`` (mixed precision) applies on CUDA devices only. ``threads``: torch intra-op
    threads for training (0: torch's default, one per core); 1 on cores other processes
    use (waiting threads spin). Decoding a run keeps torch's default unless given ``--threads``."""

    seed: int = 1
    epochs: int = attrs.field(default=10, validator=positive)
    max_updates: int | None = attrs.field(default=None, validator=positive)
    batch_size: int = attrs.field(default=64, validator=positive)
    optimizer: OptimizerSpec = attrs.field(factory=OptimizerSpec)
    schedule: ScheduleSpec = attrs.field(factory=ScheduleSpec)
    clip: float | None = attrs.field(default=None, validator=positive)
    label_smoothing: float = attrs.field(default=0.0, validator=_dropout)
    scheduled_sampling: float = attrs.field(default=0.0, validator=probability)
    early_stopping: int | None = attrs.field(default=None, validator=positive)
    metric: str = attrs.field(default="auto", validator=one_of(
        "auto", "loss", "token_accuracy", "exact_match", "bleu", "chrf", "mse"))
    eval_every: int | None = attrs.field(default=None, validator=positive)
    checkpoint_every: int | None = attrs.field(default=None, validator=positive)
    keep_checkpoints: int = attrs.field(default=2, validator=positive)
    bucketing: bool = True
    workers: int = attrs.field(default=0, validator=_non_negative)
    curriculum: CurriculumSpec | None = None
    amp: bool = False
    threads: int = attrs.field(default=0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class DataSpec:
    """Where the data comes from: a built-in generated ``task`` (token mode: copy,
    reverse, sort, addition; continuous mode: copy, reverse, sine; the default is
    ``reverse`` unless ``train`` files are named), or files. File paths are relative to
    the spec file.

    ``format``: ``tsv`` (source<TAB>target per line), ``parallel`` (``train`` names a
    ``source,target`` pair as a list), ``npy`` (continuous: pairs of arrays). ``tokenizer``:
    ``char`` or ``whitespace``."""

    train_size: int = attrs.field(default=20000, validator=positive)
    dev_size: int = attrs.field(default=500, validator=positive)
    test_size: int = attrs.field(default=1000, validator=positive)
    min_length: int = attrs.field(default=3, validator=positive)
    max_length: int = attrs.field(default=20, validator=positive)
    symbols: int = attrs.field(default=20, validator=positive)
    seed: int = 1
    format: str = attrs.field(default="tsv", validator=one_of("tsv", "parallel", "npy"))
    train: tuple[str, ...] = ()
    dev: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    task: str | None = attrs.field(
        default=attrs.Factory(lambda data: None if data.train else "reverse", takes_self=True))
    tokenizer: str = attrs.field(default="whitespace", validator=one_of("char", "whitespace"))
    max_source_length: int = attrs.field(default=400, validator=positive)


@attrs.frozen(kw_only=True)
class Spec:
    """A whole experiment: the model, how to train it, how to decode, where it runs.

    ``depth``: ``3`` builds 3 encoder and 3 decoder layers; ``[4, 5]`` builds 4 and 5.
    ``mode``: ``tokens`` (``source``/``target`` sides, cross-entropy) or ``continuous``
    (``continuous`` section, regression loss).
    """

    name: str = "model"
    mode: str = attrs.field(default="tokens", validator=one_of("tokens", "continuous"))
    depth: Sizes = attrs.field(default=1, validator=_depth)
    source: TokenSideSpec = attrs.field(factory=TokenSideSpec)
    target: TokenSideSpec = attrs.field(factory=TokenSideSpec)
    continuous: ContinuousSpec | None = None
    encoder: EncoderSpec = attrs.field(factory=EncoderSpec)
    bridge: BridgeSpec = attrs.field(factory=BridgeSpec)
    decoder: DecoderSpec = attrs.field(factory=DecoderSpec)
    output: OutputSpec = attrs.field(factory=OutputSpec)
    regularizers: tuple[RegularizerSpec, ...] = ()
    sampler: SamplerSpec = attrs.field(factory=GreedySpec)
    placement: PlacementSpec = attrs.field(factory=SingleDeviceSpec)
    training: TrainingSpec = attrs.field(factory=TrainingSpec)
    data: DataSpec = attrs.field(factory=DataSpec)

    @property
    def encoder_depth(self) -> int:
        return self.depth if isinstance(self.depth, int) else self.depth[0]

    @property
    def decoder_depth(self) -> int:
        return self.depth if isinstance(self.depth, int) else self.depth[1]

    @property
    def token_mode(self) -> bool:
        return self.mode == "tokens"

    def encoder_hidden(self) -> tuple[int, ...]:
        """Per-layer encoder hidden sizes (a single size repeated over the depth)."""
        return _per_layer(self.encoder.hidden, self.encoder_depth)

    def decoder_hidden(self) -> tuple[int, ...]:
        return _per_layer(self.decoder.hidden, self.decoder_depth)


def _per_layer(hidden: Sizes, depth: int) -> tuple[int, ...]:
    if isinstance(hidden, int):
        return (hidden,) * depth
    if len(hidden) == 1:
        return hidden * depth
    return tuple(hidden)
