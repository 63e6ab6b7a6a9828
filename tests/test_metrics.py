"""Corpus metrics on hand-computed examples."""

from __future__ import annotations

import pytest

from assembly.metrics import (
    bleu,
    cer,
    chrf,
    compute_metrics,
    exact_match,
    token_accuracy,
    wer,
)

REF = ["the", "cat", "sat", "down"]


def test_wer_one_substitution_in_four_words() -> None:
    assert wer([["the", "dog", "sat", "down"]], [REF]) == 0.25


def test_wer_and_cer_are_corpus_sums() -> None:
    hyps = [["a", "b"], ["x", "y", "z"]]
    refs = [["a", "c"], ["x", "y"]]
    # edits 1 + 1 over 2 + 2 reference words
    assert wer(hyps, refs) == 0.5
    # characters with join="": "ab" vs "ac" (1), "xyz" vs "xy" (1) over 4 characters
    assert cer(hyps, refs, join="") == 0.5
    # with join=" ": "a b" vs "a c" (1), "x y z" vs "x y" (2) over 3 + 3 characters
    assert cer(hyps, refs) == 0.5


def test_exact_match() -> None:
    assert exact_match([REF, ["a"], []], [REF, ["b"], []]) == pytest.approx(2 / 3)


def test_token_accuracy_shorter_and_longer_hyps() -> None:
    # 2 of 4 right, then 1 of 2 right (extra hyp tokens are ignored): 3 / 6
    hyps = [["the", "cat"], ["x", "b", "extra"]]
    refs = [REF, ["a", "b"]]
    assert token_accuracy(hyps, refs) == 0.5
    assert token_accuracy([REF], [REF]) == 1.0


def test_bleu_and_chrf() -> None:
    assert bleu([REF, REF], [REF, REF]) == pytest.approx(100.0)
    assert chrf([REF], [REF]) == pytest.approx(100.0)
    assert bleu([["a", "b", "c", "d"]], [["w", "x", "y", "z"]]) == pytest.approx(0.0)
    assert 0.0 < chrf([["the", "cat", "sat"]], [REF]) < 100.0


def test_compute_metrics_all_and_unknown() -> None:
    result = compute_metrics([["the", "dog", "sat", "down"]], [REF])
    assert set(result) == {"token_accuracy", "exact_match", "bleu", "chrf", "cer", "wer"}
    assert result["token_accuracy"] == 0.75
    assert result["exact_match"] == 0.0
    assert result["wer"] == 0.25
    assert compute_metrics([REF], [REF], names=("exact_match",)) == {"exact_match": 1.0}
    with pytest.raises(ValueError, match=r"unknown metric 'blue'.*known metrics: token_accuracy"):
        compute_metrics([REF], [REF], names=("blue",))


def test_mismatched_lengths_and_empty_corpus() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        token_accuracy([REF, REF], [REF])
    assert token_accuracy([], []) == 1.0
    assert wer([[]], [[]]) == 0.0
    assert wer([["a"]], [[]]) == 1.0
    assert bleu([], []) == 0.0
