"""Professor Forcing (Lamb et al. 2016): make free-running decoder dynamics look like
teacher-forced ones to a discriminator.

Every update:

1. :meth:`ProfessorForcing.penalty` runs the decoder free (greedy or sampled tokens fed
   back through the model's step API, as many steps as each row's target) from the same
   encoding, and collects the top decoder layer's states (B, T, O). The generator penalty
   is ``factor · mean_b −log D(free_b)`` computed with the discriminator's parameters
   *detached*, so it trains only the model;
2. :meth:`ProfessorForcing.after_update` (after the model's optimiser step) trains the
   discriminator with its own Adam on ``−log D(teacher) − log(1 − D(free))`` over the
   *detached* teacher-forced and free-running sequences of that update, so it never
   changes the model.

The discriminator's weights live in the module (saved by the trainer with its other
tensors); its Adam state travels in ``get_extra_state``, so a resumed run continues
exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from assembly.plugin import Regularizer, RegularizerContext
from torch import Tensor, nn
from torch.func import functional_call

from assembly_regularizers.specs import ProfessorForcingSpec


class Discriminator(nn.Module):
    """A bidirectional GRU over the valid steps of a state sequence, its two final states
    concatenated, then an MLP to one logit ("teacher-forced")."""

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(input_size, hidden, batch_first=True, bidirectional=True)
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, states: Tensor, lengths: Tensor) -> Tensor:
        """states (B, T, O), lengths (B,) ≥ 1 → logits (B,)."""
        packed = nn.utils.rnn.pack_padded_sequence(states, lengths.cpu().clamp(min=1),
                                                   batch_first=True, enforce_sorted=False)
        _, final = self.rnn(packed)  # (2, B, H): forward and backward final states
        summary = torch.cat([final[0], final[1]], dim=-1)  # (B, 2H)
        return self.mlp(summary).squeeze(-1)


def free_run(model: Any, batch: Any, steps: int, mode: str = "greedy") -> Tensor:
    """The top decoder layer's states when the model feeds back its own outputs.

    Runs ``steps`` steps for every row (EOS does not stop a row: the sequence is compared
    with a teacher-forced one of the same length, the mask cuts it). Gradients flow through
    the states, never through the discrete choices. → (B, steps, O)."""
    memory, encoded = model.encode(batch.source, batch.source_lengths)
    state = model.start(memory, encoded)
    previous = model.first_input(batch.source.shape[0], memory.values)
    tops = []
    for _ in range(steps):
        result = model.step(previous, state, memory)
        state = result.state
        tops.append(result.top)  # (B, O): the top layer's output, whatever its cell
        scores = result.scores.detach()
        if not model.token_mode:
            previous = scores
        elif mode == "sample":
            previous = torch.multinomial(scores.float().exp(), 1).squeeze(1)
        else:
            previous = scores.argmax(dim=-1)
    return torch.stack(tops, dim=1)  # (B, T, O)


class ProfessorForcing(Regularizer):
    """See the module docstring and :class:`~assembly_regularizers.specs.ProfessorForcingSpec`."""

    def __init__(self, spec: ProfessorForcingSpec, context: RegularizerContext) -> None:
        super().__init__()
        self.spec = spec
        self.name = "professor-forcing"
        self.discriminator = Discriminator(context.decoder_sizes[-1], spec.discriminator_hidden)
        self.optimizer: torch.optim.Optimizer | None = None
        self.discriminator_updates = 0
        self.last: tuple[Tensor, Tensor, Tensor] | None = None  # (teacher, free, lengths)
        self.last_discriminator_loss: float | None = None
        self.last_accuracy: float | None = None

    def make_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.spec.lr)
        return self.optimizer

    def on_train_start(self, trainer: Any) -> None:
        self.make_optimizer()

    def judge_frozen(self, states: Tensor, lengths: Tensor) -> Tensor:
        """Discriminator logits with its parameters detached (gradients reach ``states``
        only)."""
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, frozen, (states, lengths))

    def penalty(self, outputs: Any, batch: Any, trainer: Any) -> Tensor:
        mask = outputs.mask  # (B, T)
        lengths = mask.sum(dim=1)  # (B,)
        teacher = outputs.decoder_outputs  # (B, T, O)
        free = free_run(trainer.model, batch, mask.shape[1], self.spec.free_running)
        free = free * mask[..., None]  # zero after each row's length
        self.last = (teacher.detach(), free.detach(), lengths.detach())
        logits = self.judge_frozen(free.float(), lengths)  # (B,)
        fool = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        weight = self.spec.factor if self.discriminator_updates >= self.spec.warmup else 0.0
        return weight * fool

    def discriminator_loss(self, teacher: Tensor, free: Tensor, lengths: Tensor) -> Tensor:
        """−log D(teacher) − log(1 − D(free)), batch means (inputs are detached)."""
        real = self.discriminator(teacher.float(), lengths)
        fake = self.discriminator(free.float(), lengths)
        loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
            F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        with torch.no_grad():
            correct = (real > 0).float().sum() + (fake <= 0).float().sum()
            self.last_accuracy = float(correct) / (2 * real.shape[0])
        return loss

    def after_update(self, trainer: Any) -> None:
        if self.last is None:
            return
        teacher, free, lengths = self.last
        self.last = None
        optimizer = self.make_optimizer()
        with torch.enable_grad():
            loss = self.discriminator_loss(teacher, free, lengths)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
        self.discriminator_updates += 1
        self.last_discriminator_loss = float(loss.detach())

    # -- state ----------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"updates": self.discriminator_updates,
                "optimizer": _copied(self.make_optimizer().state_dict())}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.discriminator_updates = int(state["updates"])
        self.optimizer = None
        self.make_optimizer().load_state_dict(state["optimizer"])

    def extra_state(self) -> dict[str, Any]:
        return {"discriminator_updates": self.discriminator_updates,
                "discriminator_loss": self.last_discriminator_loss,
                "discriminator_accuracy": self.last_accuracy}


def _copied(value: Any) -> Any:
    """A copy of nested dicts/lists whose tensors are cloned (an optimiser's state_dict
    refers to its live tensors)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copied(v) for v in value)
    return value
