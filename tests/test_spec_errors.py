"""What a user reads when a spec is wrong: one line per problem, ``file: message @ $.path``.

Each test holds an exact part of the message (what is wrong and what is allowed) and the
exact path; a spec with several problems reports all of them at once.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assembly.errors import SpecError
from assembly.plan import plan_model
from assembly.registry import make_registry
from assembly.spec import load_spec, loads_spec

REGISTRY = make_registry(entrypoints=False, strict=True)
SOURCE = "model.toml"


def problems(text: str, fmt: str = "toml") -> list[tuple[str, str]]:
    """(message, path) of every line of the SpecError that loading ``text`` raises."""
    with pytest.raises(SpecError) as caught:
        loads_spec(text, fmt, REGISTRY, source=SOURCE)
    lines = str(caught.value).splitlines()
    assert len(lines) == len(caught.value.problems)
    result = []
    for line in lines:
        match = re.fullmatch(rf"{re.escape(SOURCE)}: (.+) @ (\$\S*)", line)
        assert match, line
        result.append((match.group(1), match.group(2)))
    return result


def one_problem(text: str, fmt: str = "toml") -> tuple[str, str]:
    found = problems(text, fmt)
    assert len(found) == 1, found
    return found[0]


def test_unknown_component_names_the_known_ones_and_suggests_the_closest() -> None:
    message, path = one_problem('[encoder.cell]\ntype = "lstn"\n')
    assert path == "$.encoder.cell.type"
    assert "unknown cell 'lstn'" in message
    assert "known: gru, lstm" in message
    assert "did you mean 'lstm'?" in message


def test_unknown_component_without_a_close_name_suggests_nothing() -> None:
    message, path = one_problem('[sampler]\ntype = "zzzzzz"\n')
    assert path == "$.sampler.type"
    assert message == "unknown sampler 'zzzzzz'; known: greedy"


def test_unknown_component_in_a_list_has_the_item_index() -> None:
    message, path = one_problem('[[regularizers]]\ntype = "l2"\n')
    assert path == "$.regularizers[0].type"
    assert message == "unknown regularizer 'l2'; none are registered"


def test_a_kind_without_components_says_none_are_registered() -> None:
    message, path = one_problem("[[regularizers]]\nweight = 1.0\n")
    assert (message, path) == ("missing 'type' (a regularizer name; none are registered)",
                               "$.regularizers[0].type")


def test_missing_type() -> None:
    message, path = one_problem("[encoder.cell]\nbias = false\n")
    assert path == "$.encoder.cell.type"
    assert message == "missing 'type' (a cell name; known: gru, lstm)"
    message, path = one_problem("[sampler]\nmax_length = 3\n")
    assert (message, path) == ("missing 'type' (a sampler name; known: greedy)", "$.sampler.type")


def test_extra_key_suggests_the_closest_and_lists_the_allowed() -> None:
    message, path = one_problem("[encoder]\nhiden = 3\n")
    assert path == "$.encoder"
    assert message == ("unknown key 'hiden'; did you mean 'hidden'? "
                       "(allowed: cell, hidden, bidirectional, merge, dropout)")


def test_extra_key_in_a_component() -> None:
    message, path = one_problem('[decoder.cell]\ntype = "lstm"\nforget = 1.0\n')
    assert path == "$.decoder.cell"
    assert "unknown key 'forget'; did you mean 'forget_bias'?" in message


def test_extra_top_level_key() -> None:
    message, path = one_problem("dept = 2\n")
    assert path == "$"
    assert "unknown key 'dept'; did you mean 'depth'?" in message


@pytest.mark.parametrize(("text", "expected", "path"), [
    ('depth = "3"\n', "expected an integer, got a string ('3')", "$.depth"),
    ("[source]\nvocab_size = 1.5\n", "expected an integer, got a number (1.5)",
     "$.source.vocab_size"),
    ("[source]\nvocab_size = true\n", "expected an integer, got a boolean (true)",
     "$.source.vocab_size"),
    ("[encoder]\nbidirectional = 1\n", "expected true or false, got an integer (1)",
     "$.encoder.bidirectional"),
    ('[training.optimizer]\nlr = "fast"\n', "expected a number, got a string ('fast')",
     "$.training.optimizer.lr"),
    ("name = 3\n", "expected a string, got an integer (3)", "$.name"),
    ("encoder = 3\n", "expected a table, got an integer (3)", "$.encoder"),
    ("sampler = 3\n", "expected a table with a 'type' key naming a sampler, got an integer (3)",
     "$.sampler"),
    ("regularizers = 3\n", "expected a list, got an integer (3)", "$.regularizers"),
    ("[training.optimizer]\nbetas = [0.9]\n", "expected a list of 2 items, got 1",
     "$.training.optimizer.betas"),
])
def test_wrong_type(text: str, expected: str, path: str) -> None:
    message, got_path = one_problem(text)
    assert expected in message
    assert got_path == path


@pytest.mark.parametrize(("text", "fmt", "expected"), [
    ("[encoder]\nbidirectional = false\nhidden = false\n", "toml",
     ("expected an integer, got a boolean (false)", "$.encoder.hidden")),
    ('{"name": null}', "json", ("expected a string, got null", "$.name")),
    ('{"encoder": {"hidden": [null, 2]}}', "json",
     ("expected an integer, got null", "$.encoder.hidden[0]")),
    ("name = [true, 1.5, \"a\"]\n", "toml",
     ('expected a string, got a list ([true, 1.5, "a"])', "$.name")),
    ('[training]\nseed = {a = false}\n', "toml",
     ('expected an integer, got a table ({"a": false})', "$.training.seed")),
])
def test_values_are_shown_as_toml_and_json_write_them(text: str, fmt: str,
                                                      expected: tuple[str, str]) -> None:
    assert one_problem(text, fmt) == expected


@pytest.mark.parametrize(("text", "expected", "path"), [
    ('mode = "x"\n', "mode must be one of tokens, continuous; got 'x'", "$.mode"),
    ('[decoder.attention]\nscore = "dott"\n',
     "score must be one of additive, dot, general, concat; got 'dott'",
     "$.decoder.attention.score"),
    ("depth = 0\n", "depth must be a positive integer or a non-empty list of them; got 0",
     "$.depth"),
    ("depth = [1, 2, 3]\n", "depth must be an integer or an [encoder, decoder] pair", "$.depth"),
    ("[encoder]\nhidden = []\n", "hidden must be a positive integer or a non-empty list",
     "$.encoder.hidden"),
    ("[decoder]\ndropout = 1.0\n", "dropout must lie in [0, 1); got 1.0", "$.decoder.dropout"),
    ("[decoder.attention]\nsize = 0\n", "size must be positive; got 0",
     "$.decoder.attention.size"),
    ('[encoder.cell]\ntype = "gru"\nupdate = "x"\n', "update must be one of torch, cho; got 'x'",
     "$.encoder.cell.update"),
    ('[sampler]\ntype = "greedy"\nmax_length = 0\n', "max_length must be positive; got 0",
     "$.sampler.max_length"),
    ("[training]\nscheduled_sampling = 1.5\n", "scheduled_sampling must lie in [0, 1]",
     "$.training.scheduled_sampling"),
])
def test_bad_value_says_what_is_allowed(text: str, expected: str, path: str) -> None:
    message, got_path = one_problem(text)
    assert expected in message
    assert got_path == path


@pytest.mark.parametrize(("text", "expected", "path"), [
    ("depth = 2\n[encoder]\nhidden = [3, 4, 5]\n",
     "3 hidden sizes given for the encoder of depth 2; give one size or exactly 2",
     "$.encoder.hidden"),
    ('[decoder.attention]\nposition = "before"\ninput_feeding = true\n',
     "input feeding feeds the attentional vector", "$.decoder.attention.input_feeding"),
    ('mode = "continuous"\n', "continuous mode needs a [continuous] section", "$.continuous"),
    ("[continuous]\ninput_dim = 2\noutput_dim = 2\n",
     'a [continuous] section is only for mode = "continuous"', "$.continuous"),
    ('mode = "continuous"\n[continuous]\ninput_dim = 2\noutput_dim = 2\n[output]\n'
     "tied = true\n", "tied output embeddings need token mode", "$.output.tied"),
    ('[data]\ntask = "copy"\ntrain = ["a.tsv"]\n',
     "give either a generated task or train files, not both", "$.data.task"),
    ("[decoder]\nfeed_previous = false\n", "with feed_previous = false the decoder needs peek",
     "$.decoder.feed_previous"),
    ('[decoder]\nbroadcast_state = false\n[bridge]\ntype = "linear"\n',
     "contradicts bridge type 'linear'", "$.decoder.broadcast_state"),
])
def test_rules_between_fields(text: str, expected: str, path: str) -> None:
    message, got_path = one_problem(text)
    assert expected in message
    assert got_path == path


def test_every_problem_at_once() -> None:
    found = problems('depth = "3"\nmode = "x"\n[encoder]\nhiden = 3\nbidirectional = 1\n'
                     '[decoder.attention]\nscore = "dott"\n[[regularizers]]\ntype = "l2"\n')
    paths = sorted(path for _message, path in found)
    assert paths == sorted(["$.depth", "$.mode", "$.encoder", "$.encoder.bidirectional",
                            "$.decoder.attention.score", "$.regularizers[0].type"])


def test_a_component_reports_all_its_bad_fields() -> None:
    found = problems('[encoder.cell]\ntype = "gru"\nupdate = "x"\nbias = "no"\n')
    assert sorted(path for _m, path in found) == ["$.encoder.cell.bias", "$.encoder.cell.update"]


def test_broken_text() -> None:
    message, path = one_problem("depth = = 3\n")
    assert path == "$" and message.startswith("invalid TOML: ")
    assert "line 1" in message
    message, path = one_problem('{"depth": [1', "json")
    assert path == "$" and message.startswith("invalid JSON: ")
    assert "(line 1, column 13)" in message
    message, path = one_problem("[1, 2]", "json")
    assert (message, path) == ("the spec must be a table (a JSON object)", "$")


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(SpecError) as caught:
        load_spec(missing, REGISTRY)
    text = str(caught.value)
    assert text.startswith(f"{missing}: cannot read the spec file: ")
    assert text.endswith(" @ $")


def test_a_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"depth": "x"}')
    with pytest.raises(SpecError) as caught:
        load_spec(path, REGISTRY)
    assert str(caught.value) == f"{path}: expected an integer, got a string ('x') @ $.depth"


def test_a_model_that_cannot_be_sized_says_which_vocabulary_is_missing() -> None:
    spec = loads_spec('[data]\ntrain = ["a.tsv"]\n', registry=REGISTRY)
    with pytest.raises(SpecError) as caught:
        plan_model(spec, REGISTRY)
    paths = [p.path for p in caught.value.problems]
    assert paths == ["$.source.vocab_size", "$.target.vocab_size"]
    assert "source vocab_size is needed" in caught.value.problems[0].message


def test_a_bad_item_in_a_size_list_has_its_index() -> None:
    _message, path = one_problem('depth = [1, "a"]\n')
    assert path == "$.depth[1]"
