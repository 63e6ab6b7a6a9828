"""The MMI samplers: ``mmi-antilm`` (beam search on log p(T|S) − λ log U(T)) and
``mmi-bidi`` (n-best reranking by log p(T|S) + λ log p(S|T) + length bonus).

Beam layout: B inputs, K beams each, the model runs on B·K rows (beam k of input b at row
b·K + k). Per step: one ``model.step`` → log p (B·K, V); while the step is among the first
γ, one language-model step → log U (B·K, V), and the candidate score is
``beam score + log p − λ log U``; the top 2K of the K·V candidates are taken; the top-K
candidates ending in EOS (or all top-K at the input's length limit) finish and are merged
with the input's finished hypotheses (the best K kept); the best K not ending in EOS become
the new beams. An input is done when its ``n_best``-th finished hypothesis scores at
least its best live beam and no later step can raise a score (past the γ-th step, or
λ = 0), at its length limit, or (``early_finish``) once K hypotheses have finished. This
is the usual batched beam search, so λ = 0 gives plain beam search.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from assembly.plugin import EOS_ID, Hypotheses, Sampler, load_run
from torch import Tensor

from assembly_regularizers.mmi import DUMMY_SOURCE
from assembly_regularizers.specs import MmiAntiLmSpec, MmiBidiSpec

NEG_INF = float("-inf")


class LanguageModelScorer:
    """Runs a language model trained from :func:`~assembly_regularizers.mmi.lm_spec` beside
    the beams: its source is the single dummy token, its state is reordered with the
    beams."""

    def __init__(self, model: Any, dummy_id: int) -> None:
        self.model = model
        self.dummy_id = dummy_id
        self.memory: Any = None
        self.state: Any = None

    def begin(self, rows: int, device: torch.device) -> None:
        source = torch.full((rows, 1), self.dummy_id, dtype=torch.long, device=device)
        lengths = torch.ones(rows, dtype=torch.long, device=device)
        self.memory, encoded = self.model.encode(source, lengths)
        self.state = self.model.start(self.memory, encoded)

    def step(self, previous: Tensor) -> Tensor:
        """previous (R,) ids → log U(next | history) (R, V)."""
        result = self.model.step(previous, self.state, self.memory)
        self.state = result.state
        return result.scores

    def reorder(self, index: Tensor) -> None:
        """Rows ``index``: the memory rows are all equal (one dummy source) and stay."""
        self.state = self.state.select(index)


def beam_search(model: Any, start: Any, *, width: int, n_best: int, early_finish: bool,
                lm: LanguageModelScorer | None = None, lam: float = 0.0,
                gamma: int = 0) -> Hypotheses:
    """Batched beam search; with ``lm`` and λ > 0 the MMI-antiLM score (module docstring).

    Returns per input up to ``n_best`` hypotheses best first, their scores (the search
    score: log p(T|S) − λ log U(first γ tokens of T)) and no attention."""
    memory, state, limits = start.memory, start.state, start.limits
    inputs, device = limits.shape[0], memory.values.device
    beams = width
    horizon = int(limits.max())
    expand = torch.arange(inputs, device=device).repeat_interleave(beams)
    memory, state = memory.select(expand), state.select(expand)
    previous = model.first_input(inputs * beams, memory.values)  # (B·K,)
    use_lm = lm is not None and lam > 0.0 and gamma > 0
    if use_lm:
        assert lm is not None
        lm.begin(inputs * beams, device)
    alive = torch.full((inputs, beams), NEG_INF, device=device)  # (B, K) search scores
    alive[:, 0] = 0.0
    history = torch.zeros(inputs, beams, 0, dtype=torch.long, device=device)  # (B, K, t)
    finished_score = torch.full((inputs, beams), NEG_INF, device=device)  # (B, K)
    finished_tokens = torch.zeros(inputs, beams, horizon, dtype=torch.long, device=device)
    finished_length = torch.zeros(inputs, beams, dtype=torch.long, device=device)
    done = torch.zeros(inputs, dtype=torch.bool, device=device)
    keep_best = min(n_best, beams)
    offsets = (torch.arange(inputs, device=device) * beams)[:, None]  # (B, 1)
    for step in range(horizon):
        result = model.step(previous, state, memory)
        state = result.state
        logp = result.scores.float()  # (B·K, V)
        vocab = logp.shape[-1]
        gain = logp
        if use_lm and step < gamma:
            assert lm is not None
            gain = logp - lam * lm.step(previous).float()
        at_limit = step + 1 >= limits  # (B,)
        scores = (alive[..., None] + gain.view(inputs, beams, vocab)).view(inputs, -1)
        values, index = scores.topk(min(2 * beams, scores.shape[-1]), dim=-1)  # (B, 2K)
        parent, token = index // vocab, index % vocab
        rank = torch.arange(values.shape[-1], device=device)
        ends = (token == EOS_ID) | at_limit[:, None]
        finishing = ends & (rank < beams) & (values > NEG_INF) & ~done[:, None]
        # candidates' token sequences (B, 2K, step + 1), padded to the horizon
        sequences = torch.cat([history.gather(1, parent[..., None].expand(-1, -1, step)),
                               token[..., None]], dim=2)
        padded = torch.zeros(inputs, values.shape[-1], horizon, dtype=torch.long,
                             device=device)
        padded[:, :, : step + 1] = sequences
        joined_score = torch.cat([finished_score, values.masked_fill(~finishing, NEG_INF)], 1)
        best = joined_score.topk(beams, dim=-1).indices  # (B, K)
        finished_score = joined_score.gather(1, best)
        finished_tokens = torch.cat([finished_tokens, padded], 1).gather(
            1, best[..., None].expand(-1, -1, horizon))
        finished_length = torch.cat(
            [finished_length, torch.full_like(token, step + 1)], 1).gather(1, best)
        live = values.masked_fill(token == EOS_ID, NEG_INF)  # an EOS never lives on
        pick = live.topk(beams, dim=-1).indices  # (B, K)
        alive = live.gather(1, pick)
        chosen_parent = parent.gather(1, pick)
        chosen = token.gather(1, pick)
        history = sequences.gather(1, pick[..., None].expand(-1, -1, step + 1))
        monotone = not use_lm or step + 1 >= gamma  # no later step can raise a score
        settled = finished_score[:, keep_best - 1] >= alive[:, 0]
        done = done | at_limit | (settled if monotone else torch.zeros_like(done))
        if early_finish:
            done = done | (finished_score[:, -1] > NEG_INF)
        if bool(done.all()):
            break
        rows = (chosen_parent + offsets).view(-1)  # (B·K,) parent rows
        state = state.select(rows)
        if use_lm and step + 1 < gamma:
            assert lm is not None
            lm.reorder(rows)
        previous = chosen.view(-1)
    return _hypotheses(finished_score, finished_tokens, finished_length, n_best)


def _hypotheses(score: Tensor, tokens: Tensor, length: Tensor, n_best: int) -> Hypotheses:
    """The best ``n_best`` finished hypotheses per input (EOS cut off); inputs with fewer
    finished (tiny vocabularies) return only those (at least one slot)."""
    scores = score[:, :n_best].tolist()
    ids = tokens[:, :n_best].tolist()
    lengths = length[:, :n_best].tolist()
    out_tokens, out_scores = [], []
    for row_scores, row_ids, row_lengths in zip(scores, ids, lengths, strict=True):
        kept = [k for k, s in enumerate(row_scores) if s > -math.inf] or [0]
        hyps = []
        for k in kept:
            seq = row_ids[k][: row_lengths[k]]
            hyps.append(seq[:-1] if seq and seq[-1] == EOS_ID else seq)
        out_tokens.append(hyps)
        out_scores.append([row_scores[k] for k in kept])
    attention: list[list[Tensor | None]] = [[None] * len(h) for h in out_tokens]
    return Hypotheses(tokens=out_tokens, scores=out_scores, attention=attention)


def _require_tokens(model: Any, name: str) -> None:
    if not model.token_mode:
        raise ValueError(f"the {name} sampler decodes token-mode models only")


def _load(path: str, device: torch.device) -> Any:
    run = load_run(path)
    run.model.to(device).eval()
    return run


class MmiAntiLm(Sampler):
    """``mmi-antilm``: see the module docstring and
    :class:`~assembly_regularizers.specs.MmiAntiLmSpec`. The language model is loaded from
    ``spec.lm`` on first use (or given as ``lm_run``, anything with ``model`` and
    ``source_vocab``)."""

    def __init__(self, spec: MmiAntiLmSpec, lm_run: Any = None) -> None:
        super().__init__(spec)
        self.lm_run = lm_run

    def scorer(self, model: Any, device: torch.device) -> LanguageModelScorer:
        if self.lm_run is None:
            self.lm_run = _load(self.spec.lm, device)
        lm_model = self.lm_run.model.to(device).eval()
        if lm_model.output_size != model.output_size:
            raise ValueError(f"mmi-antilm: the language model {self.spec.lm} predicts "
                             f"{lm_model.output_size} target ids, the model {model.output_size}"
                             f"; train the LM from assembly_regularizers.mmi.lm_spec(spec)")
        dummy = self.lm_run.source_vocab.id_of(DUMMY_SOURCE)
        if dummy == self.lm_run.source_vocab.id_of("<unk>"):
            raise ValueError(f"mmi-antilm: {self.spec.lm} is not a language model made by "
                             f"assembly_regularizers.mmi.lm_spec (no {DUMMY_SOURCE!r} source)")
        return LanguageModelScorer(lm_model, dummy)

    def search(self, model: Any, start: Any) -> Hypotheses:
        _require_tokens(model, "mmi-antilm")
        spec = self.spec
        lm = None
        if spec.lam > 0.0 and spec.gamma > 0:
            lm = self.scorer(model, start.memory.values.device)
        return beam_search(model, start, width=spec.width, n_best=spec.n_best,
                           early_finish=spec.early_finish, lm=lm, lam=spec.lam,
                           gamma=spec.gamma)


@torch.no_grad()
def reverse_log_probs(reverse: Any, sources: list[list[int]],
                      hypotheses: list[list[int]]) -> list[float]:
    """log p(S|T) under the reverse model for each (S, T) pair: the reverse model reads
    T (the forward target ids) and is scored, teacher-forced, on S followed by EOS.
    Empty T gets −inf (an encoder reads at least one step)."""
    scores = [NEG_INF] * len(sources)
    rows = [i for i, hyp in enumerate(hypotheses) if hyp]
    if not rows:
        return scores
    device = next(reverse.parameters()).device

    def pad(seqs: list[list[int]]) -> tuple[Tensor, Tensor]:
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        out = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)  # PAD = 0
        for r, s in enumerate(seqs):
            out[r, : len(s)] = torch.tensor(s, dtype=torch.long)
        return out.to(device), lengths.to(device)

    source, source_lengths = pad([hypotheses[i] for i in rows])  # (R, T)
    target, target_lengths = pad([[*sources[i], EOS_ID] for i in rows])  # (R, S + 1)
    outputs = reverse(source, source_lengths, target, target_lengths)
    logp = torch.log_softmax(outputs.predictions.float(), dim=-1)  # (R, S + 1, V)
    picked = logp.gather(-1, target[..., None]).squeeze(-1) * outputs.mask  # (R, S + 1)
    for r, value in zip(rows, picked.sum(dim=1).tolist(), strict=True):
        scores[r] = value
    return scores


class MmiBidi(Sampler):
    """``mmi-bidi``: beam search for an n-best list, reranked by log p(T|S) + λ log p(S|T)
    + length_bonus·|T|. See :class:`~assembly_regularizers.specs.MmiBidiSpec`. The reverse
    model is loaded from ``spec.reverse`` on first use (or given as ``reverse_run``)."""

    def __init__(self, spec: MmiBidiSpec, reverse_run: Any = None) -> None:
        super().__init__(spec)
        self.reverse_run = reverse_run

    def search(self, model: Any, start: Any) -> Hypotheses:
        _require_tokens(model, "mmi-bidi")
        spec = self.spec
        return beam_search(model, start, width=spec.width, n_best=spec.n_best,
                           early_finish=spec.early_finish)

    def reverse_model(self, model: Any, device: torch.device) -> Any:
        if self.reverse_run is None:
            self.reverse_run = _load(self.spec.reverse, device)
        reverse = self.reverse_run.model.to(device).eval()
        source_vocab = model.source_embedding.num_embeddings
        if reverse.output_size != source_vocab or \
                reverse.source_embedding.num_embeddings != model.output_size:
            raise ValueError(f"mmi-bidi: the reverse model {self.spec.reverse} does not mirror "
                             f"the model's vocabularies; train it from "
                             f"assembly_regularizers.mmi.reverse_spec(spec)")
        return reverse

    @torch.no_grad()
    def decode(self, model: Any, source: Tensor, source_lengths: Tensor, *,
               seed: int | None = None) -> Hypotheses:
        """Beam search (:meth:`search`), then the rerank, which needs the sources."""
        hyps = super().decode(model, source, source_lengths, seed=seed)
        spec = self.spec
        if spec.lam == 0.0 and spec.length_bonus == 0.0:
            return hyps
        flat_sources, flat_hyps, owner = [], [], []
        lengths = source_lengths.tolist()
        for i, row in enumerate(hyps.tokens):
            for hyp in row:
                flat_sources.append(source[i, : lengths[i]].tolist())
                flat_hyps.append(hyp)
                owner.append(i)
        backward = [0.0] * len(flat_hyps)
        if spec.lam > 0.0:
            reverse = self.reverse_model(model, source.device)
            backward = reverse_log_probs(reverse, flat_sources, flat_hyps)
        position = 0
        for i, row in enumerate(hyps.tokens):
            ranked = []
            for k, hyp in enumerate(row):
                forward = hyps.scores[i][k]
                b = backward[position]
                total = forward + (spec.lam * b if spec.lam > 0.0 else 0.0) + \
                    spec.length_bonus * len(hyp)
                ranked.append((total, k))
                position += 1
            ranked.sort(key=lambda item: -item[0])  # stable: ties keep the forward order
            hyps.tokens[i] = [row[k] for _, k in ranked]
            hyps.attention[i] = [hyps.attention[i][k] for _, k in ranked]
            hyps.scores[i] = [total for total, _ in ranked]
        assert position == len(owner)
        return hyps
