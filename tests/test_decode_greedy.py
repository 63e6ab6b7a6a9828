"""Greedy decoding through the Python API (``generate(load_run(RUN), texts)``): texts out,
batch-independence, EOS and length limits, attention weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers_train import reverse_run

from assembly.builtin.samplers import GreedySpec
from assembly.data import DataError
from assembly.data.vocab import EOS_ID
from assembly.decode.generate import Generated, generate
from assembly.nn import native
from assembly.run import LoadedRun, load_run

INPUTS = ["a", "f e d c b a", "c d", "b a f e", "d d d", "a b c d e"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> LoadedRun:
    return load_run(reverse_run(tmp_path_factory))


@pytest.fixture(scope="module")
def batched(run: LoadedRun) -> list[Generated]:
    return generate(run, INPUTS)


def test_generate_returns_texts(run: LoadedRun, batched: list[Generated]) -> None:
    assert len(batched) == len(INPUTS)
    for text, result in zip(INPUTS, batched, strict=True):
        assert result.source == text.split()
        assert isinstance(result.text, str) and result.text == " ".join(result.hypotheses[0])
        assert len(result.texts) == len(result.scores) == len(result.attention) == 1
        assert result.scores[0] <= 0.0  # a log-probability
        assert "</s>" not in result.hypotheses[0] and "<s>" not in result.hypotheses[0]
    assert generate(str(run.path), INPUTS[:2])[1].texts == batched[1].texts  # a path works


def test_trained_model_mostly_reverses(batched: list[Generated]) -> None:
    right = sum(
        r.text == " ".join(reversed(t.split())) for t, r in zip(INPUTS, batched, strict=True)
    )
    assert right >= 2  # a sanity check of the whole pipeline, not an accuracy target


def test_a_sentence_decodes_the_same_alone_and_in_a_mixed_batch(
    run: LoadedRun, batched: list[Generated]
) -> None:
    for text, in_batch in zip(INPUTS, batched, strict=True):
        [alone] = generate(run, [text])
        assert alone.hypotheses == in_batch.hypotheses, text
        assert alone.scores[0] == pytest.approx(in_batch.scores[0], abs=1e-5)
        assert torch.allclose(alone.attention[0], in_batch.attention[0], atol=1e-5)
    # and in batches of one, in another order
    split = generate(run, INPUTS[::-1], batch_size=1)[::-1]
    assert [r.hypotheses for r in split] == [r.hypotheses for r in batched]


def test_decoding_is_deterministic(run: LoadedRun, batched: list[Generated]) -> None:
    assert [r.texts for r in generate(run, INPUTS)] == [r.texts for r in batched]


def test_max_length_caps_every_output(run: LoadedRun, batched: list[Generated]) -> None:
    capped = generate(run, INPUTS, sampler=GreedySpec(max_length=3))
    for full, short in zip(batched, capped, strict=True):
        assert len(short.hypotheses[0]) <= 3
        assert short.hypotheses[0] == full.hypotheses[0][:3]
    assert max(len(r.hypotheses[0]) for r in batched) > 3


def force(run: LoadedRun, monkeypatch: pytest.MonkeyPatch, *, eos_from: int | None) -> None:
    """Make the model emit EOS from step ``eos_from`` on (``None``: never)."""
    original = run.model.step
    steps = {"n": 0}

    def step(previous, state, memory):
        result = original(previous, state, memory)
        steps["n"] += 1
        scores = result.scores.clone()
        if eos_from is None:
            scores[:, EOS_ID] = float("-inf")
        elif steps["n"] >= eos_from:
            scores[:] = float("-inf")
            scores[:, EOS_ID] = 0.0
        result.scores = scores
        return result

    monkeypatch.setattr(run.model, "step", step)


def test_decoding_stops_at_eos(run: LoadedRun, monkeypatch: pytest.MonkeyPatch) -> None:
    force(run, monkeypatch, eos_from=3)
    for result in generate(run, INPUTS):
        assert len(result.hypotheses[0]) == 2
        assert result.attention[0].shape[0] == 3  # the EOS step is attended too


def test_without_eos_each_row_stops_at_its_own_limit(
    run: LoadedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    force(run, monkeypatch, eos_from=None)
    for text, result in zip(INPUTS, generate(run, INPUTS), strict=True):
        assert len(result.hypotheses[0]) == 2 * len(text.split()) + 10


def test_attention_is_target_steps_by_source_and_sums_to_one(batched: list[Generated]) -> None:
    for text, result in zip(INPUTS, batched, strict=True):
        weights = result.attention[0]
        steps, source = weights.shape
        assert source == len(text.split())
        assert steps in (len(result.hypotheses[0]), len(result.hypotheses[0]) + 1)
        assert torch.allclose(weights.sum(-1), torch.ones(steps), atol=1e-5)
        assert (weights >= 0).all()
    # the weights move over time (the score uses the decoder state)
    long = batched[1].attention[0]
    assert not torch.allclose(long[0], long[-1], atol=1e-2)


def test_bad_inputs_are_clear_errors(run: LoadedRun) -> None:
    with pytest.raises(DataError, match="input 2: empty"):
        generate(run, ["a b", "", "c"])
    with pytest.raises(DataError, match=r"input 1: 401 tokens exceed data\.max_source_length"):
        generate(run, [" ".join(["a"] * 401)])


def test_unknown_tokens_decode(run: LoadedRun) -> None:
    [result] = generate(run, ["a zz b zz <unk> qq"])
    assert result.source == ["a", "zz", "b", "zz", "<unk>", "qq"]
    assert isinstance(result.text, str)
    assert result.unknown == ["zz", "qq"]  # once each, in order; "<unk>" itself is known


def test_generate_refuses_a_continuous_model(tmp_path: Path) -> None:
    from assembly.build import build_model
    from assembly.registry import make_registry
    from assembly.spec.model import ContinuousSpec, Spec

    registry = make_registry()
    spec = Spec(mode="continuous", continuous=ContinuousSpec(input_dim=2, output_dim=2))
    loaded = LoadedRun(build_model(spec, registry), spec, None, None, registry, tmp_path)
    with pytest.raises(DataError, match="continuous"):
        generate(loaded, ["a"])


def test_ended_rows_leave_by_narrowing_or_by_copying_alike(
    run: LoadedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """decode_batches puts the longest sources first. Rows that end as the batch's last
    ones leave by narrowing (Memory.head), others by copying (Memory.select); either
    way every row decodes as it does alone. Here the long sources (5+ tokens) are made to
    end at step 2, before the short ones (a copy), and the short ones end in turn."""
    from assembly.nn.decoder import Memory

    used = {"head": 0, "select": 0}
    for name in used:
        method = getattr(Memory, name)

        def counted(self: Memory, rows: object, method: object = method, name: str = name
                    ) -> Memory:
            used[name] += 1
            return method(self, rows)  # type: ignore[operator]

        monkeypatch.setattr(Memory, name, counted)
    natural = generate(run, INPUTS)
    assert used["head"] > 0  # a trained model ends the short sources first

    original = run.model.step
    steps = {"n": 0}

    def step(previous, state, memory):
        result = original(previous, state, memory)
        steps["n"] += 1
        if steps["n"] >= 2:
            scores = result.scores.clone()
            long = memory.source_lengths >= 5
            scores[long] = float("-inf")
            scores[long, EOS_ID] = 0.0
            result.scores = scores
        return result

    monkeypatch.setattr(run.model, "step", step)
    used.update(head=0, select=0)
    batched = generate(run, INPUTS)
    assert used["select"] > 0
    for text, in_batch in zip(INPUTS, batched, strict=True):
        steps["n"] = 0
        [alone] = generate(run, [text])
        assert alone.hypotheses == in_batch.hypotheses, text
        assert torch.allclose(alone.attention[0], in_batch.attention[0], atol=1e-5)
        if len(text.split()) >= 5:
            assert len(in_batch.hypotheses[0]) == 1
    assert [r.hypotheses for r in batched] != [r.hypotheses for r in natural]


def test_native_encoder_loops_decode_as_the_python_loops_do(
        run: LoadedRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trained reverse model decodes the same texts, and attention to float rounding,
    with the encoder's step loops in C++ (the default where they build) and in Python."""
    module = native.loops()
    if module is None:
        pytest.skip("the native loops could not be built here")
    calls = []
    original = module.lstm_layer_forward
    monkeypatch.setattr(module, "lstm_layer_forward",
                        lambda *a: (calls.append(1), original(*a))[1])
    inputs = INPUTS * 3  # without gradients the node takes batches of 16 and more
    ours = generate(run, inputs)
    assert calls
    monkeypatch.setenv("ASSEMBLY_NATIVE", "0")
    steps = len(calls)
    reference = generate(run, inputs)
    assert len(calls) == steps
    assert [r.texts for r in ours] == [r.texts for r in reference]
    for mine, theirs in zip(ours, reference, strict=True):
        torch.testing.assert_close(mine.attention[0], theirs.attention[0], rtol=1e-4,
                                   atol=1e-5)
        assert abs(mine.scores[0] - theirs.scores[0]) < 1e-4
