"""Greedy decoding: the most probable token at every step, fed back as the next input.

Finished rows leave the batch (their memory and state rows are dropped), so the loop
costs only what the unfinished rows need; rows never influence each other.
"""

from __future__ import annotations

from typing import Any

import torch

from assembly.data.vocab import EOS_ID
from assembly.decode.memory import DecodeStart
from assembly.decode.sampler import Hypotheses, Sampler


class GreedySampler(Sampler):
    def search(self, model: Any, start: DecodeStart) -> Hypotheses:
        memory, state, limits = start.memory, start.state, start.limits
        rows = limits.shape[0]
        device = memory.values.device
        active = torch.arange(rows, device=device)  # original row of each batch row
        previous = model.first_input(rows, memory.values)
        tokens: list[list[int]] = [[] for _ in range(rows)]
        vectors: list[list[torch.Tensor]] = [[] for _ in range(rows)]
        scores = [0.0] * rows
        attention: list[list[torch.Tensor]] = [[] for _ in range(rows)]
        step = 0
        while active.numel() > 0:
            result = model.step(previous, state, memory)
            state = result.state
            if model.token_mode:
                best, choice = result.scores.max(dim=-1)  # (B,)
                done = (choice == EOS_ID) | (step + 1 >= limits[active])
                previous = choice
            else:
                choice = result.scores
                done = step + 1 >= limits[active]
                if result.stop is not None:
                    done = done | (result.stop > model_threshold(model))
                previous = choice
            # one host transfer per step for the bookkeeping
            rows_now = active.tolist()
            chosen = choice.tolist() if model.token_mode else choice.cpu()
            gained = best.tolist() if model.token_mode else None
            weights = result.attention.cpu() if result.attention is not None else None
            for i, row in enumerate(rows_now):
                if model.token_mode:
                    tokens[row].append(chosen[i])
                    scores[row] += gained[i]
                else:
                    vectors[row].append(chosen[i])
                if weights is not None:
                    attention[row].append(weights[i, : int(memory.source_lengths[i])])
            step += 1
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(1)
                active = active.index_select(0, keep)
                memory = memory.select(keep)
                state = state.select(keep)
                previous = previous.index_select(0, keep)
        if model.token_mode:
            tokens = [t[:-1] if t and t[-1] == EOS_ID else t for t in tokens]
        stacked_attention = [[torch.stack(a) if a else None] for a in attention]
        return Hypotheses(
            tokens=[[t] for t in tokens], scores=[[s] for s in scores],
            attention=stacked_attention,
            vectors=None if model.token_mode else [[torch.stack(v)] for v in vectors])


def model_threshold(model: Any) -> float:
    return getattr(model, "stop_threshold", 0.5)
