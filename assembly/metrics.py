"""Corpus-level evaluation metrics over token sequences.

Every metric takes ``hyps`` and ``refs``: equally long lists of token lists (one
hypothesis and one reference per example), and returns one float for the whole corpus.

- ``token_accuracy``: position-wise matches over the reference length (the hypothesis is
  truncated or padded to it), summed over the corpus / total reference tokens; in [0, 1].
- ``exact_match``: fraction of hypotheses equal to their reference; in [0, 1].
- ``bleu``, ``chrf``: sacrebleu corpus scores on detokenised strings (tokens joined with
  ``join``), on sacrebleu's 0-100 scale.
- ``cer``, ``wer``: Levenshtein edits between the detokenised strings, over characters or
  whitespace-separated words respectively, summed over the corpus / total reference
  length. Can exceed 1 (many insertions).

An empty corpus (or one with no reference tokens) scores 1.0 for accuracy/match and 0.0
for the error rates when every hypothesis is empty too, and the worst value otherwise;
BLEU/chrF of an empty corpus are 0.0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rapidfuzz.distance import Levenshtein

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "bleu",
    "cer",
    "chrf",
    "compute_metrics",
    "exact_match",
    "token_accuracy",
    "wer",
]

Tokens = Sequence[str]
Corpus = Sequence[Tokens]


def _check(hyps: Corpus, refs: Corpus) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")


def _empty_hyps(hyps: Corpus) -> bool:
    return all(len(hyp) == 0 for hyp in hyps)


def token_accuracy(hyps: Corpus, refs: Corpus) -> float:
    """Correct tokens at matching positions / reference tokens, over the corpus."""
    _check(hyps, refs)
    total = sum(len(ref) for ref in refs)
    if total == 0:
        return 1.0 if _empty_hyps(hyps) else 0.0
    correct = sum(
        sum(h == r for h, r in zip(hyp, ref, strict=False))
        for hyp, ref in zip(hyps, refs, strict=True)
    )
    return correct / total


def exact_match(hyps: Corpus, refs: Corpus) -> float:
    """Fraction of examples whose hypothesis equals the reference token for token."""
    _check(hyps, refs)
    if not refs:
        return 1.0
    return sum(list(h) == list(r) for h, r in zip(hyps, refs, strict=True)) / len(refs)


def _strings(corpus: Corpus, join: str) -> list[str]:
    return [join.join(tokens) for tokens in corpus]


def bleu(hyps: Corpus, refs: Corpus, join: str = " ", tokenize: str = "13a") -> float:
    """sacrebleu corpus BLEU (0-100) of the joined strings; ``tokenize`` is sacrebleu's."""
    _check(hyps, refs)
    if not refs:
        return 0.0
    import sacrebleu

    score = sacrebleu.corpus_bleu(_strings(hyps, join), [_strings(refs, join)], tokenize=tokenize)
    return float(score.score)


def chrf(hyps: Corpus, refs: Corpus, join: str = " ") -> float:
    """sacrebleu corpus chrF (0-100) of the joined strings."""
    _check(hyps, refs)
    if not refs:
        return 0.0
    import sacrebleu

    return float(sacrebleu.corpus_chrf(_strings(hyps, join), [_strings(refs, join)]).score)


def _error_rate(pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> float:
    total = sum(len(ref) for _, ref in pairs)
    edits = sum(Levenshtein.distance(hyp, ref) for hyp, ref in pairs)
    if total == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / total


def cer(hyps: Corpus, refs: Corpus, join: str = " ") -> float:
    """Character error rate: character edits of the joined strings / reference characters."""
    _check(hyps, refs)
    return _error_rate(list(zip(_strings(hyps, join), _strings(refs, join), strict=True)))


def wer(hyps: Corpus, refs: Corpus, join: str = " ") -> float:
    """Word error rate: word edits (joined strings split on whitespace) / reference words."""
    _check(hyps, refs)
    pairs = [
        (h.split(), r.split())
        for h, r in zip(_strings(hyps, join), _strings(refs, join), strict=True)
    ]
    return _error_rate(pairs)


def _plain(fn: Callable[[Corpus, Corpus], float]) -> Callable[[Corpus, Corpus, str], float]:
    return lambda hyps, refs, join: fn(hyps, refs)


METRICS: dict[str, Callable[[Corpus, Corpus, str], float]] = {
    "token_accuracy": _plain(token_accuracy),
    "exact_match": _plain(exact_match),
    "bleu": lambda hyps, refs, join: bleu(hyps, refs, join),
    "chrf": chrf,
    "cer": cer,
    "wer": wer,
}
"""Metric names mapped to ``fn(hyps, refs, join) -> float``."""

DEFAULT_METRICS = ("token_accuracy", "exact_match", "bleu", "chrf", "cer", "wer")


def compute_metrics(
    hyps: Corpus,
    refs: Corpus,
    names: Sequence[str] = DEFAULT_METRICS,
    join: str = " ",
) -> dict[str, float]:
    """Compute the named metrics; ``join`` joins tokens into strings for the string metrics.

    Raises:
        ValueError: an unknown metric name (the message lists the known ones), or
            ``len(hyps) != len(refs)``.
    """
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(
            f"unknown metric{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"known metrics: {', '.join(METRICS)}"
        )
    _check(hyps, refs)
    return {name: METRICS[name](hyps, refs, join) for name in names}
