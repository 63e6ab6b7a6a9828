"""The row-wise decoding loop shared by ``sample`` and ``hidden-average``: one hypothesis
per batch row, the row's own choice fed back, finished rows dropped from the batch (the
pattern of the built-in greedy sampler).

Per step the loop keeps everything on the device and makes one host synchronisation (the
``nonzero`` that finds the rows still running); tokens, scores and attention are
gathered into padded tensors and moved to the host once, at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from assembly.plugin import Hypotheses, Sampler
from torch import Tensor

from assembly_samplers._common import EOS_ID, collect, pad_steps

if TYPE_CHECKING:
    from assembly.plugin import DecodeStart


class RowSampler(Sampler):
    """Base of row-wise samplers. Subclasses override the hooks:

    - :meth:`copies`: hypotheses per input (each input's rows are repeated that often);
    - :meth:`begin`: per-decode set-up, given the expanded row count;
    - :meth:`feed`: the state handed to the cell at this step (default: the stored one);
    - :meth:`choose`: the next token per row from the step's log-probabilities;
    - :meth:`drop`: keep only the rows ``keep`` in any per-row buffers of the subclass.

    The hooks keep per-decode buffers on the sampler object: one object runs one decode
    at a time (build one per thread).
    """

    def copies(self) -> int:
        return 1

    def begin(self, model: Any, start: DecodeStart, rows: int, device: torch.device) -> None:
        """Called once per decode, before the first step."""

    def feed(self, state: Any) -> Any:
        return state

    def choose(self, scores: Tensor, rows: Tensor, step: int) -> Tensor:
        """scores (R, V) log-probabilities of the running rows, rows (R,) their row index
        in the expanded batch → (R,) chosen ids. Default: argmax."""
        return scores.argmax(dim=-1)

    def drop(self, keep: Tensor) -> None:
        """Rows ``keep`` (R',) of the running rows go on; subclasses trim their buffers."""

    def search(self, model: Any, start: DecodeStart) -> Hypotheses:
        memory, state, limits = start.memory, start.state, start.limits
        copies = self.copies()
        inputs = limits.shape[0]
        device = memory.values.device
        if copies > 1:  # rows i·n … i·n + n − 1 are input i's samples
            expand = torch.arange(inputs, device=device).repeat_interleave(copies)
            memory, state, limits = memory.select(expand), state.select(expand), \
                limits.index_select(0, expand)
        rows = inputs * copies
        self.begin(model, start, rows, device)
        token_mode = model.token_mode
        active = torch.arange(rows, device=device)  # (R,) expanded row of each batch row
        running_limits = limits
        lengths = torch.zeros(rows, dtype=torch.long, device=device)
        scores = torch.zeros(rows, device=device) if token_mode else None
        previous = model.first_input(rows, memory.values)
        chosen: list[tuple[Tensor, Tensor]] = []  # per step: (rows, ids (R,) or vectors)
        attended: list[tuple[Tensor, Tensor]] = []  # per step: (rows, weights (R, S))
        step = 0
        while True:
            result = model.step(previous, self.feed(state), memory)
            state = result.state
            if token_mode:
                choice = self.choose(result.scores, active, step)  # (R,)
                assert scores is not None
                scores.index_add_(0, active, result.scores.gather(1, choice[:, None])[:, 0])
                done = (choice == EOS_ID) | (step + 1 >= running_limits)
            else:
                choice = result.scores  # (R, D)
                done = step + 1 >= running_limits
                if result.stop is not None:
                    done = done | (result.stop > getattr(model, "stop_threshold", 0.5))
            chosen.append((active, choice))
            if result.attention is not None:
                attended.append((active, result.attention))
            step += 1
            keep = (~done).nonzero().squeeze(1)  # the one host sync per step
            if keep.numel() == active.numel():
                previous = choice
                continue
            lengths.index_copy_(0, active, torch.where(done, step, lengths[active]))
            if keep.numel() == 0:
                break
            active = active.index_select(0, keep)
            running_limits = running_limits.index_select(0, keep)
            memory, state = memory.select(keep), state.select(keep)
            previous = choice.index_select(0, keep)
            self.drop(keep)
        outputs = pad_steps(chosen, rows, EOS_ID if token_mode else 0.0)
        weights = pad_steps(attended, rows, 0.0) if attended else None
        return collect(outputs=outputs, lengths=lengths, scores=scores, attention=weights,
                       source_lengths=start.memory.source_lengths, token_mode=token_mode,
                       per_input=copies)
