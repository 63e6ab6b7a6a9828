"""Neural GPU parameter-sharing relaxation (Kaiser & Sutskever 2015).

``r`` sets of the model's parameters take turns: the model always holds the *live* set,
the other ``r − 1`` are kept here. Every update trains the live set on the loss plus
``pull · Σ_i ‖θ_i − θ̄‖²`` (θ̄ the mean of all sets; only the live set receives a
gradient, 2·pull·(θ_live − θ̄)), then :meth:`Relaxation.after_update` stores the live set
and loads the next one. At the end of training the sets are averaged into the model.

The stored sets, the live index and the pull schedule's position survive ``--resume``:
they travel in the module's ``state_dict`` (``get_extra_state``), which the trainer saves
with every checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from assembly.plugin import Regularizer, RegularizerContext
from torch import Tensor, nn

from assembly_regularizers.specs import RelaxationSpec


def pull_at(spec: RelaxationSpec, updates: int) -> float:
    """The pull after ``updates`` updates: min(pull_max, pull_start · growth^⌊u / every⌋)."""
    rises = updates // spec.pull_every
    try:
        value = spec.pull_start * spec.pull_growth ** rises
    except OverflowError:
        value = float("inf")
    return min(spec.pull_max, value)


def relaxation_penalty(live: list[Tensor], others: list[list[Tensor]]) -> Tensor:
    """Σ_i ‖θ_i − θ̄‖² over the sets (the live one and ``others``), summed over tensors.

    live: the live set's tensors (differentiable); others: each other set's tensors.
    Computed from the differences d_j = θ_j − θ_live, so equal sets give exactly 0:
    θ_live − θ̄ = −mean_j(d) and θ_j − θ̄ = d_j − mean(d) (with d_live = 0)."""
    count = len(others) + 1
    total = live[0].new_zeros((), dtype=torch.float32)
    for k, tensor in enumerate(live):
        deltas = torch.stack([s[k] for s in others]) - tensor  # (r−1, *shape)
        shift = deltas.sum(dim=0) / count  # θ̄ − θ_live
        total = total + shift.float().pow(2).sum() + (deltas - shift).float().pow(2).sum()
    return total


class Relaxation(Regularizer):
    """See the module docstring and :class:`~assembly_regularizers.specs.RelaxationSpec`."""

    final_weights = True  # the trainer keeps the averaged last weights, not "best"

    def __init__(self, spec: RelaxationSpec, context: RegularizerContext) -> None:
        super().__init__()
        self.spec = spec
        self.name = "relaxation"
        self.live = 0  # index of the set the model holds
        self.updates = 0  # updates seen (drives the pull schedule)
        self.sets: list[list[Tensor] | None] = [None] * spec.sets  # None: the live slot
        self._model_id: int | None = None  # not the module itself: it would become a child
        self._params: list[nn.Parameter] = []

    # -- parameters ---------------------------------------------------------------------
    def bind(self, model: nn.Module) -> list[nn.Parameter]:
        """The model's trainable parameters (fixed order); stored sets move to their
        devices and are created from the model when missing."""
        if self._model_id != id(model):
            self._model_id = id(model)
            self._params = [p for p in model.parameters() if p.requires_grad]
        for index in range(self.spec.sets):
            stored = self.sets[index]
            if index == self.live:
                self.sets[index] = None
            elif stored is None:
                self.sets[index] = [p.detach().clone() for p in self._params]
            else:
                self.sets[index] = [s.to(p.device, p.dtype)
                                    for s, p in zip(stored, self._params, strict=True)]
        return self._params

    def others(self) -> list[list[Tensor]]:
        return [s for i, s in enumerate(self.sets) if i != self.live and s is not None]

    @property
    def pull(self) -> float:
        return pull_at(self.spec, self.updates)

    # -- the hooks ----------------------------------------------------------------------
    def on_train_start(self, trainer: Any) -> None:
        self.bind(trainer.model)

    def penalty(self, outputs: Any, batch: Any, trainer: Any) -> Tensor:
        params = self.bind(trainer.model)
        pull = self.pull
        if pull == 0.0:
            return torch.zeros((), device=outputs.predictions.device)
        return pull * relaxation_penalty(list(params), self.others())

    @torch.no_grad()
    def after_update(self, trainer: Any) -> None:
        """Store the live set and load the next one into the model."""
        params = self.bind(trainer.model)
        following = (self.live + 1) % self.spec.sets
        incoming = self.sets[following]
        assert incoming is not None
        outgoing = []
        for parameter, stored in zip(params, incoming, strict=True):
            kept = parameter.detach().clone()
            parameter.copy_(stored)
            outgoing.append(kept)
        self.sets[self.live] = outgoing
        self.sets[following] = None
        self.live = following
        self.updates += 1

    @torch.no_grad()
    def average_into(self, model: nn.Module) -> None:
        """Replace the model's parameters by the mean of all sets (every set then equals
        it)."""
        params = self.bind(model)
        others = self.others()
        for k, parameter in enumerate(params):
            shift = (torch.stack([s[k] for s in others]) - parameter).sum(dim=0) / self.spec.sets
            mean = parameter + shift  # exactly the parameter when every set equals it
            parameter.copy_(mean)
            for stored in others:
                stored[k].copy_(mean)

    def on_train_end(self, trainer: Any) -> None:
        self.average_into(trainer.model)

    # -- state ----------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"live": self.live, "updates": self.updates,
                "sets": [[t.detach().clone().cpu() for t in s] if s is not None else []
                         for s in self.sets]}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.live = int(state["live"])
        self.updates = int(state["updates"])
        self.sets = [[t.clone() for t in s] if i != self.live and len(s) else None
                     for i, s in enumerate(state["sets"])]
        if len(self.sets) != self.spec.sets:
            raise ValueError(f"relaxation: the checkpoint holds {len(self.sets)} parameter "
                             f"sets, the spec asks for {self.spec.sets}")
        self._model_id = None  # re-bind (and move the sets) on next use

    def extra_state(self) -> dict[str, Any]:
        return {"live": self.live, "updates": self.updates, "pull": self.pull}
