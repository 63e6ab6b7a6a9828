"""Token vocabularies: a fixed, ordered token list with four reserved specials.

Ids 0-3 are always the specials ``<pad>``, ``<s>``, ``</s>`` and ``<unk>``; the other
tokens follow in order of frequency (descending), ties broken by the token itself, so
building from the same data always gives the same ids. Vocabularies are saved as JSON
(``{"format": ..., "tokens": [...]}``) and are immutable once built.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from assembly.data.errors import DataError
from assembly.data.files import atomic_write_text

__all__ = [
    "BOS",
    "BOS_ID",
    "EOS",
    "EOS_ID",
    "PAD",
    "PAD_ID",
    "SPECIALS",
    "UNK",
    "UNK_ID",
    "Vocabulary",
]

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
_FORMAT = "assembly.vocabulary/1"


class Vocabulary:
    """An immutable mapping between tokens and integer ids.

    Contract: ``tokens[:4] == SPECIALS``; tokens are unique strings; ``id_of(token)`` is
    the token's position in ``tokens``, unknown tokens map to ``UNK_ID``.
    """

    __slots__ = ("_index", "_tokens")

    def __init__(self, tokens: Sequence[str]) -> None:
        """Make a vocabulary from its full token list (specials first).

        Raises:
            DataError: if the specials are not the first four tokens, a token is not a
                string, or a token occurs twice.
        """
        tokens = tuple(tokens)
        if tokens[: len(SPECIALS)] != SPECIALS:
            raise DataError(f"vocabulary must start with the special tokens {list(SPECIALS)}")
        index: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if not isinstance(token, str):
                raise DataError(f"vocabulary token {i} is not a string: {token!r}")
            if token in index:
                first = index[token]
                raise DataError(f"vocabulary token {token!r} occurs twice (ids {first}, {i})")
            index[token] = i
        self._tokens = tokens
        self._index = index

    @classmethod
    def build(
        cls,
        sequences: Iterable[Sequence[str]],
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Build a vocabulary from token sequences.

        Tokens seen fewer than ``min_freq`` times are left out; ``max_size`` (if given)
        caps the total size *including* the four specials. Order: frequency descending,
        then token ascending. Special tokens occurring in the data are not added twice.
        """
        if min_freq < 1:
            raise DataError(f"min_freq must be at least 1, got {min_freq}")
        if max_size is not None and max_size < len(SPECIALS):
            raise DataError(f"max_size must be at least {len(SPECIALS)}, got {max_size}")
        counts: Counter[str] = Counter()
        for sequence in sequences:
            counts.update(sequence)
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
            key=lambda t: (-counts[t], t),
        )
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIALS)]
        return cls((*SPECIALS, *ranked))

    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens, in id order."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)})"

    def id_of(self, token: str) -> int:
        """The id of ``token``, or ``UNK_ID`` if it is unknown."""
        return self._index.get(token, UNK_ID)

    def token_of(self, index: int) -> str:
        """The token with id ``index`` (``IndexError`` if out of range)."""
        if not 0 <= index < len(self._tokens):
            raise IndexError(f"token id {index} out of range for vocabulary of size {len(self)}")
        return self._tokens[index]

    def encode(self, tokens: Iterable[str], add_eos: bool = False) -> list[int]:
        """Token ids of ``tokens`` (unknown -> ``UNK_ID``), plus ``EOS_ID`` if ``add_eos``."""
        ids = [self._index.get(token, UNK_ID) for token in tokens]
        if add_eos:
            ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        """Tokens of ``ids``, stopping at the first ``EOS_ID`` (which is not included).

        With ``strip_specials`` (default), ``<pad>`` and ``<s>`` are dropped; ``<unk>`` is
        kept (it stands for a real token). Without it, every id up to EOS is rendered.
        """
        tokens, size = self._tokens, len(self._tokens)
        skipped = (PAD_ID, BOS_ID) if strip_specials else ()
        out: list[str] = []
        for raw in ids:  # a loop every decoded sentence runs: no method call per token
            index = int(raw)
            if index == EOS_ID:
                break
            if index in skipped:
                continue
            if not 0 <= index < size:
                self.token_of(index)  # raises the IndexError naming the id
            out.append(tokens[index])
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: ``{"format": ..., "tokens": [...]}``."""
        return {"format": _FORMAT, "tokens": list(self._tokens)}

    @classmethod
    def from_dict(cls, data: Any, source: str = "vocabulary") -> Vocabulary:
        """Inverse of :meth:`to_dict`; ``source`` names the origin in error messages.

        Raises:
            DataError: if ``data`` is not a vocabulary description.
        """
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise DataError(f"{source}: not a vocabulary (expected an object with 'tokens')")
        if data.get("format", _FORMAT) != _FORMAT:
            raise DataError(f"{source}: unsupported vocabulary format {data.get('format')!r}")
        try:
            return cls(data["tokens"])
        except DataError as error:
            raise DataError(f"{source}: {error}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as UTF-8 JSON, atomically (temporary file + rename)."""
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`.

        Raises:
            DataError: naming the file, if it cannot be read or is not a vocabulary.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise DataError(f"{path}: cannot read vocabulary: {error.strerror or error}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(f"{path}: not a vocabulary JSON file: {error}") from None
        return cls.from_dict(data, source=str(path))
