"""Tokenisers by name: ``char`` and ``whitespace``.

A tokeniser turns one line of text into a list of string tokens; :func:`detokenize` is its
inverse for display and for string metrics (BLEU, chrF, CER).

- ``char``: every character is a token, spaces included (``"a b" -> ["a", " ", "b"]``);
  detokenised by joining with ``""``.
- ``whitespace``: ``str.split()`` (runs of whitespace separate tokens, none are kept);
  detokenised by joining with ``" "``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from assembly.data.errors import DataError

__all__ = ["JOINERS", "TOKENIZERS", "Tokenizer", "detokenize", "get_tokenizer"]

Tokenizer = Callable[[str], list[str]]


def char_tokenize(text: str) -> list[str]:
    """One token per character, spaces kept as ``" "`` tokens."""
    return list(text)


def whitespace_tokenize(text: str) -> list[str]:
    """Tokens separated by runs of whitespace (``str.split()``)."""
    return text.split()


TOKENIZERS: dict[str, Tokenizer] = {"char": char_tokenize, "whitespace": whitespace_tokenize}
"""Known tokeniser names mapped to their functions."""

JOINERS: dict[str, str] = {"char": "", "whitespace": " "}
"""The string each tokeniser's tokens are joined with when detokenising."""


def _known() -> str:
    return ", ".join(sorted(TOKENIZERS))


def get_tokenizer(name: str) -> Tokenizer:
    """The tokeniser called ``name``.

    Raises:
        DataError: for an unknown name (the message lists the known ones).
    """
    try:
        return TOKENIZERS[name]
    except KeyError:
        raise DataError(f"unknown tokenizer {name!r}; known tokenizers: {_known()}") from None


def detokenize(tokens: Sequence[str], name: str) -> str:
    """Join ``tokens`` back into text the way tokeniser ``name`` splits it.

    Raises:
        DataError: for an unknown tokeniser name.
    """
    try:
        joiner = JOINERS[name]
    except KeyError:
        raise DataError(f"unknown tokenizer {name!r}; known tokenizers: {_known()}") from None
    return joiner.join(tokens)
