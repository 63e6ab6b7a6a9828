"""The Python decoding API: load a run, then ``generate`` from text or batches.

>>> run = load_run("runs/reverse")                                   # doctest: +SKIP
>>> [r.text for r in generate(run, ["a b c"])]                        # doctest: +SKIP
['c b a']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch

from assembly.data import DataError, detokenize, get_tokenizer
from assembly.data.vocab import UNK_ID
from assembly.run import LoadedRun, load_run

__all__ = ["Generated", "decode_batches", "generate", "load_run", "make_sampler"]


@attrs.define
class Generated:
    """One input's results: hypotheses best first (tokens and text), their scores, and
    the attention weights of each (T, S) or None; ``unknown``: the input's tokens that
    are not in the source vocabulary (each was read as ``<unk>``)."""

    source: list[str]
    hypotheses: list[list[str]]
    texts: list[str]
    scores: list[float]
    attention: list[torch.Tensor | None]
    unknown: list[str] = attrs.Factory(list)

    @property
    def text(self) -> str:
        return self.texts[0]


def make_sampler(run: LoadedRun, sampler: Any = None) -> Any:
    """The sampler object for a sampler spec (default: the run spec's own sampler)."""
    spec = sampler if sampler is not None else run.spec.sampler
    return run.registry.record_of(spec).build(spec)


def decode_batches(model: Any, sampler: Any, sources: Sequence[list[int]] | Any,
                   batch_size: int, seed: int | None = None, device: Any = None) -> Any:
    """Decode encoded sources in length-sorted batches; yields (index, hypotheses-of-row,
    scores, attention) in the input order's indices."""
    from assembly.data import PAD_ID

    device = device or next(model.parameters()).device
    # longest first: rows that end early then tend to be the batch's last ones, which a
    # sampler can drop by narrowing instead of copying (see GreedySampler)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]), reverse=True)
    results: list[Any] = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        sizes = [len(sources[i]) for i in chunk]
        lengths = torch.tensor(sizes)
        width = max(sizes)
        if isinstance(sources[chunk[0]], torch.Tensor):  # continuous: (S, D) arrays
            dim = sources[chunk[0]].shape[-1]
            batch = torch.zeros(len(chunk), width, dim)
            for row, i in enumerate(chunk):
                batch[row, : len(sources[i])] = sources[i]
        else:  # one tensor from padded lists, not one per row
            batch = torch.tensor([list(sources[i]) + [PAD_ID] * (width - size)
                                  for i, size in zip(chunk, sizes, strict=True)],
                                 dtype=torch.long)
        hyps = sampler.decode(model, batch.to(device), lengths.to(device), seed=seed)
        for row, i in enumerate(chunk):
            vectors = hyps.vectors[row] if hyps.vectors is not None else None
            results[i] = (hyps.tokens[row], hyps.scores[row], hyps.attention[row], vectors)
    return results


def generate(run: LoadedRun | str, inputs: Sequence[str], *, sampler: Any = None,
             seed: int | None = None, batch_size: int = 500) -> list[Generated]:
    """Decode text inputs with a loaded run (token mode). ``sampler``: a sampler spec
    (default: the run spec's). Inputs longer than ``data.max_source_length`` or empty
    are refused with a :class:`DataError` naming them."""
    if isinstance(run, str):
        run = load_run(run)
    spec = run.spec
    if not spec.token_mode:
        raise DataError("generate() takes text; this is a continuous-mode model: use "
                        "decode_batches with arrays")
    tokenizer = get_tokenizer(spec.data.tokenizer)
    tokenized = [tokenizer(text) for text in inputs]
    problems = []
    for number, tokens in enumerate(tokenized, 1):
        if not tokens:
            problems.append(f"input {number}: empty")
        elif len(tokens) > spec.data.max_source_length:
            problems.append(f"input {number}: {len(tokens)} tokens exceed data."
                            f"max_source_length = {spec.data.max_source_length}")
    if problems:
        raise DataError("\n".join(problems))
    encoded = [run.source_vocab.encode(tokens) for tokens in tokenized]
    decoded = decode_batches(run.model, make_sampler(run, sampler), encoded, batch_size, seed)
    results = []
    for tokens, ids, (hyps, scores, attention, _vectors) in zip(tokenized, encoded, decoded,
                                                                strict=True):
        words = [run.target_vocab.decode(h) for h in hyps]
        # only a token read as <unk> can be unknown (the literal "<unk>" is not); most
        # inputs have none, and the scan cost 6 µs an input (7 % of greedy decoding)
        unknown = list(dict.fromkeys(t for t, i in zip(tokens, ids, strict=True)
                                     if i == UNK_ID and t not in run.source_vocab)) \
            if UNK_ID in ids else []
        results.append(Generated(tokens, words,
                                 [detokenize(w, spec.data.tokenizer) for w in words],
                                 list(scores), list(attention), unknown))
    return results
