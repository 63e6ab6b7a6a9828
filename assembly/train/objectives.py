"""The regulariser / training-objective contract.

A :class:`Regularizer` is a torch module built from a regulariser spec. Every training
step the trainer adds each regulariser's :meth:`~Regularizer.penalty` to the main loss
and logs its value separately under the regulariser's ``name``. Objectives that need
more than a penalty (several parameter sets, a discriminator with its own optimiser, a
schedule) use the hooks, which receive the trainer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class Regularizer(nn.Module):
    """Base of regularisers. ``name`` labels its logged value (defaults to the plugin name).

    Hooks (all optional; the trainer calls them in this order):

    - ``on_train_start(trainer)``: once, when a run starts afresh, after the model and
      optimiser exist (e.g. copy parameter sets). It is *not* called again when a run
      resumes: the checkpointed state is restored instead, so anything it sets up must be
      in ``state_dict`` / ``extra_state`` or rebuilt lazily;
    - ``penalty(outputs, batch, trainer) -> Tensor``: a scalar added to the loss of every
      update (already weighted by the regulariser's own factor). ``outputs`` (a
      :class:`~assembly.nn.seq2seq.ForwardOutputs`) is defined only at the target steps
      ``outputs.mask`` marks: mask the rest (the teacher-forcing node leaves them zero and
      passes no gradient back from them);
    - ``after_update(trainer)``: after each optimiser step (e.g. a discriminator update,
      swapping parameter sets, raising a schedule);
    - ``on_train_end(trainer)``: once, before the final checkpoint (e.g. average
      parameter sets into one model).

    Regulariser state that must survive ``--resume`` goes in ``state_dict`` (tensors) or
    ``extra_state`` (plain data).
    """

    name: str = "regularizer"

    def on_train_start(self, trainer: Any) -> None:
        return None

    def penalty(self, outputs: Any, batch: Any, trainer: Any) -> Tensor:
        return torch.zeros((), device=outputs.predictions.device)

    def after_update(self, trainer: Any) -> None:
        return None

    def on_train_end(self, trainer: Any) -> None:
        return None

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None
