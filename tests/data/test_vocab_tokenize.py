"""Vocabulary building, encoding, persistence; tokenisers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assembly.data import DataError
from assembly.data.tokenize import detokenize, get_tokenizer
from assembly.data.vocab import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK, UNK_ID, Vocabulary


def test_specials_and_order() -> None:
    vocab = Vocabulary.build([["b", "a", "b"], ["c", "a", "b"], ["d"]])
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert vocab.tokens[:4] == SPECIALS
    # frequency descending, ties by token
    assert vocab.tokens[4:] == ("b", "a", "c", "d")
    assert len(vocab) == 8


def test_min_freq_and_max_size() -> None:
    data = [["a"] * 3 + ["b"] * 2 + ["c"]]
    assert Vocabulary.build(data, min_freq=2).tokens[4:] == ("a", "b")
    assert Vocabulary.build(data, max_size=5).tokens[4:] == ("a",)


def test_encode_decode_with_eos_and_unk() -> None:
    vocab = Vocabulary.build([["x", "y"]])
    ids = vocab.encode(["y", "zzz", "x"], add_eos=True)
    assert ids == [vocab.id_of("y"), UNK_ID, vocab.id_of("x"), EOS_ID]
    assert vocab.decode(ids) == ["y", UNK, "x"]
    # stops at the first EOS, drops pad and bos
    assert vocab.decode([BOS_ID, vocab.id_of("x"), PAD_ID, EOS_ID, vocab.id_of("y")]) == ["x"]
    assert vocab.decode([BOS_ID, vocab.id_of("x")], strip_specials=False) == ["<s>", "x"]


def test_save_load_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary.build([["é", "ß", "a b", "a"]])
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = Vocabulary.load(path)
    assert loaded == vocab
    assert loaded.tokens == vocab.tokens
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temp files left


@pytest.mark.parametrize(
    "content",
    ["not json {", json.dumps({"tokens": ["a", "b"]}), json.dumps([1, 2]), "\xff"],
)
def test_load_junk_names_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "junk.json"
    path.write_text(content, encoding="latin-1")
    with pytest.raises(DataError, match=r"junk\.json"):
        Vocabulary.load(path)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.json"):
        Vocabulary.load(tmp_path / "missing.json")


_TOKEN = st.text(min_size=1, max_size=4).filter(lambda t: t not in SPECIALS)


@given(
    st.lists(st.lists(_TOKEN, max_size=8), min_size=1, max_size=5),
    st.lists(_TOKEN, max_size=8),
)
def test_encode_decode_round_trip(sequences: list[list[str]], other: list[str]) -> None:
    vocab = Vocabulary.build(sequences)
    for tokens in sequences:
        ids = vocab.encode(tokens, add_eos=True)
        assert ids[-1] == EOS_ID and EOS_ID not in ids[:-1]
        assert vocab.decode(ids) == tokens
    # tokens never seen come back as <unk>, the rest unchanged
    assert vocab.decode(vocab.encode(other)) == [t if t in vocab else UNK for t in other]


def test_tokenizers() -> None:
    char = get_tokenizer("char")
    assert char("a b") == ["a", " ", "b"]
    assert detokenize(char("a b"), "char") == "a b"
    words = get_tokenizer("whitespace")
    assert words("  the  cat\tsat ") == ["the", "cat", "sat"]
    assert detokenize(["the", "cat"], "whitespace") == "the cat"


def test_unknown_tokenizer() -> None:
    with pytest.raises(DataError, match=r"'bpe'.*char, whitespace"):
        get_tokenizer("bpe")
    with pytest.raises(DataError, match="known tokenizers"):
        detokenize(["a"], "bpe")
