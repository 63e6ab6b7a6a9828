"""Batched beam search and diverse beam search (samplers ``beam`` and ``diverse-beam``).

Layout: B inputs, G groups of K beams each (plain beam search: G = 1), W = G·K beams per
input; the model runs on R·W rows (R ≤ B inputs still running), beam w of input r at row
r·W + w. Per step:

1. one ``model.step`` for all rows → log-probabilities (R·W, V);
2. per group (all groups at once when there is no diversity penalty): candidate scores
   beam score + log p (minus λ·count for diverse beam), the top 2K of the K·V candidates;
3. the top-K candidates ending in EOS (or every top-K candidate at an input's length
   limit) finish: merged with the group's finished hypotheses, the best K kept (by score
   / ((5 + L)/6)^α); the best K candidates not ending in EOS become the new beams;
4. an input stops when every group is done: its ``n_best`` finished hypotheses cannot be
   beaten by any live beam (exact: live scores only fall, and the length penalty is at
   most ((5 + limit)/6)^α), or, with ``early_finish``, K hypotheses have finished, or its
   length limit is reached;
5. ONE host sync (``nonzero`` of the running inputs) and ONE gather of the decoder state
   (``DecoderState.select``) reorders the beams and drops stopped inputs together; the
   memory is gathered only when inputs stop (reordering beams within an input does not
   change its memory rows). The first step runs once per input, not once per beam
   (all beams of an input start from the same state); its reorder expands the rows.

Nothing per hypothesis runs in Python while searching: back-pointers (token, parent beam)
are written into (T, B, W) tensors and attention is kept per step; the returned
hypotheses are traced back through them once, batched, at the end.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import attrs
import torch
from assembly.plugin import Hypotheses, Sampler
from torch import Tensor

from assembly_samplers._common import EOS_ID, collect, require_tokens

if TYPE_CHECKING:
    from assembly.plugin import DecodeStart

NEG_INF = float("-inf")


def length_penalty(steps: float, alpha: float) -> float:
    """GNMT's lp(L) = ((5 + L) / 6)^α (1 for α = 0)."""
    return ((5.0 + steps) / 6.0) ** alpha


@attrs.define
class Finished:
    """Each group's best finished hypotheses, best first: (R, G, K) tensors.

    score: the ranking score (augmented by the diversity penalty for diverse beam,
    length-penalised); true: log p / lp(L) (the reported score); step: the step of the
    last token (L − 1); beam: the parent beam (0 … W−1) at that step; token: the last
    token (EOS, or any token when the length limit ended it). Empty slots score −inf."""

    score: Tensor
    true: Tensor
    step: Tensor
    beam: Tensor
    token: Tensor

    @classmethod
    def empty(cls, rows: int, groups: int, width: int, device: torch.device) -> Finished:
        shape = (rows, groups, width)
        score = torch.full(shape, NEG_INF, device=device)
        zero = torch.zeros(shape, dtype=torch.long, device=device)
        return cls(score, score.clone(), zero, zero.clone(), zero.clone())

    def fields(self) -> tuple[Tensor, ...]:
        return (self.score, self.true, self.step, self.beam, self.token)

    def select(self, index: Tensor) -> Finished:
        return Finished(*(f.index_select(0, index) for f in self.fields()))

    def merge(self, other: Finished, keep: int) -> Finished:
        """The best ``keep`` of both per group (ties: ``self`` first)."""
        joined = [torch.cat([a, b], dim=-1) for a, b in zip(self.fields(), other.fields(),
                                                            strict=True)]
        best = joined[0].topk(keep, dim=-1).indices  # (R, G, keep)
        return Finished(*(f.gather(-1, best) for f in joined))


class BeamSearch(Sampler):
    """``beam`` and ``diverse-beam``: see the module docstring,
    :class:`~assembly_samplers.specs.BeamSpec` and
    :class:`~assembly_samplers.specs.DiverseBeamSpec`. Scores are log p(hypothesis) /
    ((5 + L)/6)^α with L its steps (EOS included); with α = 0 the plain log-probability.
    Attention is returned for every step, EOS included."""

    @property
    def groups(self) -> int:
        return int(getattr(self.spec, "groups", 1))

    @property
    def diversity(self) -> float:
        return float(getattr(self.spec, "diversity", 0.0)) if self.groups > 1 else 0.0

    def search(self, model: Any, start: DecodeStart) -> Hypotheses:
        require_tokens(model, "diverse-beam" if hasattr(self.spec, "groups") else "beam")
        spec = self.spec
        alpha = float(spec.length_penalty)
        groups, width = self.groups, spec.width
        per_group = width // groups  # K
        keep_best = min(spec.n_best, per_group)  # finished per group that must be final
        memory, state, limits = start.memory, start.state, start.limits
        inputs, device = limits.shape[0], memory.values.device
        horizon = int(limits.max())  # one sync before the loop
        # all beams of an input start alike: the first step runs once per input (R rows),
        # and its reorder expands the state and the memory to R·W rows (beam w of input r
        # at row r·W + w)
        shared = True
        previous = model.first_input(inputs, memory.values)  # (R,)
        # beam scores (R, G, K): only the first beam of each group is live at the start
        alive = torch.full((inputs, groups, per_group), NEG_INF, device=device)
        alive[:, :, 0] = 0.0
        alive_true = alive.clone() if self.diversity else alive
        finished = Finished.empty(inputs, groups, per_group, device)
        done_groups = torch.zeros(inputs, groups, dtype=torch.bool, device=device)
        # back-pointers for every input and step (full size: inputs stop at any time)
        tokens_at = torch.zeros(horizon, inputs, width, dtype=torch.long, device=device)
        parents_at = torch.zeros(horizon, inputs, width, dtype=torch.long, device=device)
        attention_at: list[tuple[Tensor, Tensor]] = []  # per step: (inputs, (R·W, S))
        results = Finished.empty(inputs, groups, per_group, device)  # stopped inputs
        active = torch.arange(inputs, device=device)  # (R,) input of each running row
        running_limits = limits
        group_offset = (torch.arange(groups, device=device) * per_group)[None, :, None]
        step = 0
        while True:
            rows = active.numel()
            result = model.step(previous, state, memory)
            state, attention = result.state, result.attention
            if shared:  # one row per input: every beam sees the same
                logp = result.scores[:, None, None, :].expand(rows, groups, per_group, -1)
                if attention is not None:
                    attention = attention.repeat_interleave(width, dim=0)
            else:
                logp = result.scores.view(rows, groups, per_group, -1)  # (R, G, K, V)
            if attention is not None:
                attention_at.append((active, attention))  # (R·W, S)
            at_limit = step + 1 >= running_limits  # (R,)
            lp_now = length_penalty(float(step + 1), alpha)
            if self.diversity:
                values, true, beam, token, pick = self._diverse_candidates(
                    logp, alive, alive_true, done_groups)
            else:
                values, beam, token, pick = _candidates(alive, logp, per_group)
                true = values
            # (R, G, 2K) each; pick (R, G, K): positions of the new live beams
            rank = torch.arange(values.shape[-1], device=device)
            ends = (token == EOS_ID) | at_limit[:, None, None]
            finishing = ends & (rank < per_group) & (values > NEG_INF) & ~done_groups[..., None]
            fresh = Finished(
                torch.where(finishing, values / lp_now, NEG_INF),
                torch.where(finishing, true / lp_now, NEG_INF),
                torch.full_like(token, step), beam + group_offset, token)
            finished = finished.merge(fresh, per_group)
            stopped = token == EOS_ID  # an EOS candidate never lives on
            alive = values.masked_fill(stopped, NEG_INF).gather(-1, pick)  # (R, G, K)
            alive_true = true.masked_fill(stopped, NEG_INF).gather(-1, pick) \
                if self.diversity else alive
            parent = beam.gather(-1, pick) + group_offset  # (R, G, K) in 0 … W−1
            chosen = token.gather(-1, pick)
            tokens_at[step].index_copy_(0, active, chosen.view(rows, width))
            parents_at[step].index_copy_(0, active, parent.view(rows, width))
            # when is a group done?
            bound = alive[..., 0]  # best live score (R, G); completions only fall
            if alpha:
                # the best a live beam can reach: lp grows with L, log p ≤ 0
                bound = bound / ((5.0 + running_limits.to(bound)) / 6.0)[:, None] ** alpha
            settled = finished.score[..., keep_best - 1] >= bound
            done_groups = done_groups | settled | at_limit[:, None]
            if spec.early_finish:
                done_groups = done_groups | (finished.score[..., -1] > NEG_INF)
            step += 1
            keep = (~done_groups.all(dim=-1)).nonzero().squeeze(1)  # the one host sync
            flat = (parent + (torch.arange(rows, device=device) * width)[:, None, None])
            if keep.numel() < rows:
                results = _store(results, finished, active)
                if keep.numel() == 0:
                    break
                active = active.index_select(0, keep)
                running_limits = running_limits.index_select(0, keep)
                beams = keep.repeat_interleave(width) if shared else \
                    (keep[:, None] * width + torch.arange(width, device=device)).view(-1)
                memory = memory.select(beams)
                flat = flat.index_select(0, keep)
                chosen = chosen.index_select(0, keep)
                alive, finished = alive.index_select(0, keep), finished.select(keep)
                alive_true = alive_true.index_select(0, keep) if self.diversity else alive
                done_groups = done_groups.index_select(0, keep)
            elif shared:
                memory = memory.select(torch.arange(rows, device=device).repeat_interleave(width))
            # the one gather per step: reorder the beams and drop stopped inputs
            state = state.select(flat.view(-1) // width if shared else flat.view(-1))
            previous = chosen.reshape(-1)
            shared = False
        return self._hypotheses(results, tokens_at[:step], parents_at[:step], attention_at,
                                start, width)

    def _diverse_candidates(self, logp: Tensor, alive: Tensor, alive_true: Tensor,
                            done_groups: Tensor
                            ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Groups in turn: group g's log-probabilities are lowered by λ times the number of
        live beams of groups 0 … g−1 (not yet done) that chose each token at this step.
        Returns the candidates like :func:`_candidates` plus their true scores."""
        rows, groups, per_group, vocab = logp.shape
        counts = logp.new_zeros(rows, vocab)  # tokens chosen by earlier groups (R, V)
        picked = []
        for g in range(groups):
            penalised = logp[:, g:g + 1] - self.diversity * counts[:, None, None, :]
            values, beam, token, pick = _candidates(alive[:, g:g + 1], penalised, per_group)
            chosen = token.gather(-1, pick)[:, 0]  # (R, K)
            weight = (~done_groups[:, g:g + 1]).to(counts).expand_as(chosen)
            counts.scatter_add_(1, chosen, weight)
            picked.append((values, beam, token, pick))
        values, beam, token, pick = (torch.cat(parts, dim=1) for parts in zip(*picked,
                                                                               strict=True))
        # true scores: the parent's true score + the token's own log-probability
        parent_true = alive_true.gather(-1, beam)  # (R, G, 2K)
        flat = logp.reshape(rows, groups, -1)  # (R, G, K·V)
        true = parent_true + flat.gather(-1, beam * vocab + token)
        return values, true, beam, token, pick

    def _hypotheses(self, results: Finished, tokens_at: Tensor, parents_at: Tensor,
                    attention_at: list[tuple[Tensor, Tensor]], start: DecodeStart,
                    width: int) -> Hypotheses:
        """Trace the ``n_best`` best finished hypotheses of every input back through the
        back-pointers (batched over inputs and hypotheses; one loop over steps)."""
        inputs = results.score.shape[0]
        n_best = self.spec.n_best
        flat = Finished(*(f.reshape(inputs, -1) for f in results.fields()))
        best = flat.true.topk(n_best, dim=-1).indices  # (B, N) over all groups
        final = Finished(*(f.gather(-1, best) for f in flat.fields()))
        steps = tokens_at.shape[0]
        device = final.token.device
        pointer = final.beam.clone()  # (B, N) parent beam at the current step
        out = torch.full((inputs, n_best, steps), EOS_ID, dtype=torch.long, device=device)
        weights = None
        if attention_at:
            sources = attention_at[0][1].shape[-1]
            weights = torch.zeros(inputs, n_best, steps, sources, device=device)
        batch = torch.arange(inputs, device=device)[:, None]
        for t in reversed(range(steps)):
            last = final.step == t
            inner = final.step > t
            # pointer: beam at step t + 1 (inner) or parent at t (last) → parent at t
            token = torch.where(last, final.token, tokens_at[t][batch, pointer])
            pointer = torch.where(inner, parents_at[t][batch, pointer], pointer)
            out[:, :, t] = torch.where(last | inner, token, EOS_ID)
            if weights is not None:
                rows, weight = attention_at[t]
                position = torch.full((inputs,), -1, dtype=torch.long, device=device)
                position[rows] = torch.arange(rows.numel(), device=device)
                index = (position[:, None] * width + pointer).clamp(min=0)  # (B, N)
                taken = weight[index.view(-1)].view(inputs, n_best, -1)
                weights[:, :, t] = taken * (last | inner)[..., None]
        lengths = (final.step + 1).view(-1)
        present = final.true.view(-1) > NEG_INF
        hyps = collect(outputs=out.view(inputs * n_best, steps), lengths=lengths,
                       scores=final.true.view(-1),
                       attention=None if weights is None else weights.view(
                           inputs * n_best, steps, -1),
                       source_lengths=start.memory.source_lengths, token_mode=True,
                       per_input=n_best)
        if not bool(present.all()):  # fewer than n_best finished (tiny vocabularies only)
            for i in range(inputs):
                kept = [k for k, s in enumerate(hyps.scores[i]) if s > -math.inf] or [0]
                hyps.tokens[i] = [hyps.tokens[i][k] for k in kept]
                hyps.scores[i] = [hyps.scores[i][k] for k in kept]
                hyps.attention[i] = [hyps.attention[i][k] for k in kept]
        return hyps


def _candidates(alive: Tensor, logp: Tensor, per_group: int
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The top 2K expansions of each group and the K new live beams among them.

    alive (R, G, K) beam scores, logp (R, G, K, V) → values (R, G, 2K) sorted descending,
    beam (R, G, 2K) parent within the group, token (R, G, 2K), pick (R, G, K) positions
    (into the 2K) of the best K candidates not ending in EOS (the new live beams; −inf
    values where fewer exist)."""
    rows, groups, _, vocab = logp.shape
    scores = (alive[..., None] + logp).view(rows, groups, -1)  # (R, G, K·V)
    values, index = scores.topk(min(2 * per_group, scores.shape[-1]), dim=-1)
    beam, token = index // vocab, index % vocab
    live = values.masked_fill(token == EOS_ID, NEG_INF)
    pick = live.topk(per_group, dim=-1).indices  # (R, G, K), in rank order
    return values, beam, token, pick


def _store(results: Finished, finished: Finished, active: Tensor) -> Finished:
    """Write the running inputs' finished hypotheses into the full-size results."""
    for target, source in zip(results.fields(), finished.fields(), strict=True):
        target.index_copy_(0, active, source)
    return results
