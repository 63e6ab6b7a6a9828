"""Greedy decoding: the most probable token at every step, fed back as the next input.

Finished rows leave the batch (their memory and state rows are dropped), so each step
costs only what the unfinished rows need, and rows never influence each other. When the
rows that finished are the batch's last ones (``decode_batches`` puts the longest sources
first, and short sources tend to end first) they are dropped by narrowing every tensor to
its first rows, a view; otherwise the kept rows are copied out with ``index_select``. Per step
the only host synchronisation is the check whether any row finished; outputs are written
into preallocated tensors and turned into lists once at the end.
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
        steps = int(limits.max())
        source_width = memory.values.shape[1]
        source_lengths = memory.source_lengths.tolist()
        active = torch.arange(rows, device=device)  # original row of each batch row
        previous = model.first_input(rows, memory.values)
        if model.token_mode:
            chosen = torch.full((rows, steps), EOS_ID, dtype=torch.long, device=device)
        else:
            chosen = memory.values.new_zeros(rows, steps, model.output_size)
        scores = memory.values.new_zeros(rows)
        lengths = torch.zeros(rows, dtype=torch.long, device=device)
        weights = memory.values.new_zeros(rows, steps, source_width) \
            if model.decoder.attention is not None else None
        threshold = getattr(model, "stop_threshold", 0.5)
        # while rows have only left by narrowing, batch row r is original row r: the
        # per-step writes are then slices instead of index_put/index_add (3× cheaper)
        prefix = True
        for step in range(steps):
            result = model.step(previous, state, memory)
            state = result.state
            where: Any = slice(0, active.numel()) if prefix else active
            running_limits = limits[where]
            if model.token_mode:
                best, previous = result.scores.max(dim=-1)  # (B,)
                scores[where] += best
                done = (previous == EOS_ID) | (step + 1 >= running_limits)
            else:
                previous = result.scores  # (B, D)
                done = step + 1 >= running_limits
                if result.stop is not None:
                    done = done | (result.stop > threshold)
            chosen[where, step] = previous
            lengths[where] = step + 1
            if weights is not None:
                weights[where, step] = result.attention
            if not bool(done.any()):  # the one host sync per step
                continue
            keep = (~done).nonzero().squeeze(1)
            kept = keep.numel()
            if kept == 0:
                break
            if int(keep[-1]) == kept - 1:  # the rows that ended are the last: narrow
                active, previous = active[:kept], previous[:kept]
                memory, state = memory.head(kept), state.head(kept)
            else:
                prefix = False
                active = active.index_select(0, keep)
                memory = memory.select(keep)
                state = state.select(keep)
                previous = previous.index_select(0, keep)
        lengths_list = lengths.tolist()
        if weights is None:
            attention: list[list[torch.Tensor | None]] = [[None] for _ in range(rows)]
        else:  # one unbind, then two slices a row (indexing row by row costs 2x)
            attention = [[row_weights[:length, :width]] for row_weights, length, width
                         in zip(weights.cpu().unbind(0), lengths_list, source_lengths,
                                strict=True)]
        if model.token_mode:
            table = chosen.tolist()
            tokens = []
            for row, length in enumerate(lengths_list):
                ids = table[row][:length]
                tokens.append([ids[:-1] if ids and ids[-1] == EOS_ID else ids])
            return Hypotheses(tokens=tokens, scores=[[s] for s in scores.tolist()],
                              attention=attention)
        vectors = [[chosen[row, :length].cpu()] for row, length in enumerate(lengths_list)]
        return Hypotheses(tokens=[[[]] for _ in range(rows)], scores=[[0.0] for _ in range(rows)],
                          attention=attention, vectors=vectors)
