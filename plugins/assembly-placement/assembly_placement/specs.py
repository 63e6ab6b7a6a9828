"""The placement specs and the device assignment they describe (no torch here).

``layer-per-device`` names a device per encoder / decoder layer (the old ``gpu_for_layer``),
one for the embeddings and one for the output side (attention, attentional vector, peek
map, bridge, output layer, stop head); ``data-parallel`` runs one model replica per
process. Device names are checked for their form when the spec loads; whether a device
exists is checked when the placement is applied (``assemble train``), and list lengths
against the model's depths when it is described (``assemble check``) or applied.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from assembly.plugin import PlacementSpec, Problem, SpecError, one_of

_DEVICE = re.compile(r"[a-z][a-z0-9_]*(:[0-9]+)?")
AUTO = "auto"


def check_device_name(value: Any, what: str) -> None:
    """Raise ValueError unless ``value`` reads like a torch device (``cpu``, ``cuda:1``,
    ``mps``, ...) or ``auto``."""
    if not isinstance(value, str) or not (value == AUTO or _DEVICE.fullmatch(value)):
        raise ValueError(f"{what} must be a device name such as \"cpu\", \"cuda\", "
                         f"\"cuda:1\" or \"auto\"; got {value!r}")


def _device(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        check_device_name(value, attribute.name)


def _devices(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    for index, item in enumerate(value):
        check_device_name(item, f"{attribute.name}[{index}]")


@attrs.frozen(kw_only=True)
class LayerPerDeviceSpec(PlacementSpec):
    """A device per encoder / decoder layer.

    - ``encoder``, ``decoder``: one device name per layer, or a single name for every
      layer; empty: ``default``. Dropout between layers runs where the model applies it
      (see the package README); activations and recurrent states move between devices.
    - ``embeddings``: the source and target embeddings (``None``: ``default``). With a tied
      output layer the target embedding stays with the output layer, which reads it.
    - ``output``: attention, attentional vector, peek map, bridge, output layer and stop
      head (``None``: the device of the encoder's top layer, where the encoder's outputs
      already are).
    - ``default``: everything not named otherwise; ``"auto"`` is the first CUDA device if
      there is one, else the CPU.

    Example::

        [placement]
        type = "layer-per-device"
        embeddings = "cpu"
        encoder = ["cuda:0", "cuda:1"]
        decoder = ["cuda:2", "cuda:3"]
        output = "cuda:3"
    """

    default: str = attrs.field(default=AUTO, validator=_device)
    embeddings: str | None = attrs.field(default=None, validator=_device)
    encoder: tuple[str, ...] = attrs.field(default=(), validator=_devices)
    decoder: tuple[str, ...] = attrs.field(default=(), validator=_devices)
    output: str | None = attrs.field(default=None, validator=_device)


@attrs.frozen(kw_only=True)
class DataParallelSpec(PlacementSpec):
    """One model replica per process (``torch.distributed`` DDP, launched by ``torchrun``
    or ``assemble train --nproc N``).

    - ``device``: ``"auto"`` puts each process on ``cuda:LOCAL_RANK`` where CUDA is
      available, else on the CPU; ``"cpu"`` forces the CPU (gloo); ``"cuda"`` requires a
      GPU per process.

    Each process reads every ``world``-th batch of the epoch; gradients are averaged
    across processes so an update equals a single process's update on the union of their
    batches. Rank 0 alone writes checkpoints, logs and plots."""

    device: str = attrs.field(default=AUTO, validator=one_of(AUTO, "cpu", "cuda"))


# -- the assignment ------------------------------------------------------------------------
@attrs.frozen
class Assignment:
    """Device names of every part of a model (names as written; ``auto`` unresolved)."""

    embeddings: str
    target_embedding: str
    encoder: tuple[str, ...]
    decoder: tuple[str, ...]
    output: str

    def device_of_path(self, path: str) -> str:
        """The device of the submodule at ``path`` (a dotted module path of the model).

        Paths outside the named parts (bridge, attention, output layer, stop head, any
        part a later model adds) belong to the output side; an inner-sync map between
        decoder layers k and k+1 sits with layer k, whose state it reads."""
        parts = path.split(".")
        if parts[0] == "source_embedding":
            return self.embeddings
        if parts[0] == "target_embedding":
            return self.target_embedding
        if parts[0] == "encoder" and len(parts) > 2 and parts[1] == "layers":
            return self.encoder[int(parts[2])]
        if parts[0] == "decoder" and len(parts) > 2 and parts[1] in ("layers", "sync_maps"):
            return self.decoder[int(parts[2])]
        return self.output

    def lines(self) -> list[str]:
        """What ``assemble check`` prints: every layer and its device."""
        lines = [f"source embedding on {self.embeddings}"]
        lines += [f"encoder layer {i} on {d}" for i, d in enumerate(self.encoder)]
        lines += [f"decoder layer {i} on {d}" for i, d in enumerate(self.decoder)]
        note = " (tied: with the output layer)" if self.target_embedding != self.embeddings \
            and self.target_embedding == self.output else ""
        lines.append(f"target embedding on {self.target_embedding}{note}")
        lines.append(f"attention, bridge and output layer on {self.output}")
        return lines

    def devices(self) -> list[str]:
        """The distinct device names in the order they are first used."""
        seen: dict[str, None] = {}
        for name in (self.embeddings, *self.encoder, *self.decoder, self.target_embedding,
                     self.output):
            seen.setdefault(name, None)
        return list(seen)


def _per_layer(devices: tuple[str, ...], depth: int, default: str, side: str
               ) -> tuple[tuple[str, ...], Problem | None]:
    if not devices:
        return (default,) * depth, None
    if len(devices) == 1:
        return devices * depth, None
    if len(devices) != depth:
        return (default,) * depth, Problem(
            f"{len(devices)} devices given for the {depth} {side} layers; give one device for "
            f"every layer or exactly {depth}", f"$.placement.{side}")
    return devices, None


def assign(spec: LayerPerDeviceSpec, encoder_depth: int, decoder_depth: int, *,
           tied: bool = False) -> Assignment:
    """The devices of every part of a model with these depths. Raises
    :class:`SpecError` (paths ``$.placement.encoder`` / ``$.placement.decoder``) when a
    list's length is neither 1 nor the depth."""
    encoder, first = _per_layer(spec.encoder, encoder_depth, spec.default, "encoder")
    decoder, second = _per_layer(spec.decoder, decoder_depth, spec.default, "decoder")
    problems = [p for p in (first, second) if p is not None]
    if problems:
        raise SpecError(problems)
    embeddings = spec.embeddings or spec.default
    output = spec.output or encoder[-1]
    return Assignment(embeddings, output if tied else embeddings, encoder, decoder, output)


def assign_for(spec: LayerPerDeviceSpec, model_spec: Any) -> Assignment:
    """:func:`assign` for a whole model spec (an ``assembly.spec.Spec``)."""
    return assign(spec, model_spec.encoder_depth, model_spec.decoder_depth,
                  tied=bool(model_spec.token_mode and model_spec.output.tied))


def describe_layer_per_device(spec: LayerPerDeviceSpec, plan: Any) -> list[str]:
    """Every layer and its device (``assemble check``)."""
    return assign_for(spec, plan.spec).lines()


def describe_data_parallel(spec: DataParallelSpec, plan: Any) -> list[str]:
    where = {AUTO: "cuda:LOCAL_RANK with NCCL where CUDA is available, else the CPU with gloo",
             "cpu": "the CPU with gloo", "cuda": "cuda:LOCAL_RANK with NCCL"}[spec.device]
    return [f"one replica per process on {where}",
            "launch with `assemble train SPEC --out RUN --nproc N` or torchrun; "
            "gradients averaged over the global token count; rank 0 writes the run"]
