"""MMI: the anti-LM beam search against a plain one-row reference, λ = 0 against plain
beam search, bidi reranking against independent scores, and the derived LM / reverse
specs, data and command line."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
import torch
from assembly.data import Vocabulary
from assembly.data.vocab import EOS_ID, SPECIALS
from assembly.spec import DataSpec, dumps_spec, loads_spec
from regularizers_testlib import VOCAB, new_model, small_spec
from torch import Tensor

from assembly_regularizers import MmiAntiLmSpec, MmiBidiSpec
from assembly_regularizers.mmi import DUMMY_SOURCE, check_vocabularies, lm_spec, main, reverse_spec
from assembly_regularizers.mmi_search import MmiAntiLm, MmiBidi

LIMIT = 5


def _data_spec(**options: Any) -> Any:
    data = DataSpec(task="reverse", train_size=40, dev_size=8, test_size=8, symbols=VOCAB - 4,
                    min_length=2, max_length=5)
    return attrs.evolve(small_spec(**options), data=data)


def _sharpen(model: Any, scale: float = 4.0) -> Any:
    with torch.no_grad():
        for parameter in model.output.parameters():
            parameter.mul_(scale)
    return model.eval()


@pytest.fixture(scope="module")
def models(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A random forward model, a random LM of lm_spec's shape, a random reverse model."""
    spec = _data_spec()
    folder = tmp_path_factory.mktemp("mmi")
    lm = attrs.evolve(lm_spec(spec, folder / "lm"), source=attrs.evolve(
        spec.source, vocab_size=len(SPECIALS) + 1))
    reverse = reverse_spec(spec, folder / "reverse")
    lm_vocab = Vocabulary([*SPECIALS, DUMMY_SOURCE])
    return SimpleNamespace(
        forward=_sharpen(new_model(registry, spec, seed=0)),
        lm=SimpleNamespace(model=_sharpen(new_model(registry, lm, seed=1)), source_vocab=lm_vocab),
        reverse=SimpleNamespace(model=new_model(registry, reverse, seed=2).eval()))


def _batch(lengths: list[int], seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    source = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        source[row, :length] = torch.randint(4, VOCAB, (length,), generator=generator)
    return source, torch.tensor(lengths)


# -- an independent one-row reference ----------------------------------------------------


class _Runner:
    """One model decoding one row, one hypothesis at a time."""

    def __init__(self, model: Any, source: Tensor) -> None:
        self.model = model
        self.memory, encoded = model.encode(source[None], torch.tensor([source.shape[0]]))
        self.start = model.start(self.memory, encoded)

    def log_probs(self, tokens: list[int]) -> list[Tensor]:
        """log p(· | tokens[:t]) for t = 0 … len(tokens): each (V,)."""
        state, previous = self.start, self.model.first_input(1, self.memory.values)
        out = []
        for t in range(len(tokens) + 1):
            result = self.model.step(previous, state, self.memory)
            state = result.state
            out.append(result.scores[0])
            if t < len(tokens):
                previous = torch.tensor([tokens[t]])
        return out


@torch.no_grad()
def reference_beam(forward: Any, lm: Any, source: Tensor, *, width: int, n_best: int,
                   early_finish: bool, lam: float, gamma: int) -> list[tuple[list[int], float]]:
    """Beam search written plainly: every hypothesis rescored from scratch each step."""
    run = _Runner(forward, source)
    lm_run = _Runner(lm, torch.tensor([4])) if lm is not None and lam > 0 else None
    beams: list[tuple[float, list[int]]] = [(0.0, [])]
    finished: list[tuple[float, list[int]]] = []
    keep = min(n_best, width)
    for step in range(LIMIT):
        candidates = []
        for score, tokens in beams:
            gain = run.log_probs(tokens)[-1].clone()
            if lm_run is not None and step < gamma:
                gain -= lam * lm_run.log_probs(tokens)[-1]
            candidates += [(score + float(gain[v]), [*tokens, v]) for v in range(len(gain))]
        candidates.sort(key=lambda c: -c[0])
        top = candidates[: 2 * width]
        finished += [c for c in top[:width] if c[1][-1] == EOS_ID or step + 1 == LIMIT]
        finished = sorted(finished, key=lambda c: -c[0])[:width]
        beams = [c for c in top if c[1][-1] != EOS_ID][:width]
        monotone = lm_run is None or step + 1 >= gamma
        if monotone and len(finished) >= keep and finished[keep - 1][0] >= beams[0][0]:
            break
        if early_finish and len(finished) >= width:
            break
    return [([t for t in tokens if t != EOS_ID], score) for score, tokens in finished[:n_best]]


@pytest.mark.parametrize("lam, gamma, width, n_best, early", [
    (0.0, 3, 3, 2, True), (0.0, 3, 4, 4, False), (0.7, 2, 3, 3, False), (0.5, 9, 4, 2, True),
    (1.5, 1, 2, 1, False),
])
def test_antilm_matches_the_reference(models: SimpleNamespace, lam: float, gamma: int,
                                      width: int, n_best: int, early: bool) -> None:
    spec = MmiAntiLmSpec(lm="unused", lam=lam, gamma=gamma, width=width, n_best=n_best,
                         early_finish=early, max_length=LIMIT)
    sampler = MmiAntiLm(spec, lm_run=models.lm)
    source, lengths = _batch([4, 2, 6, 3, 5])
    hyps = sampler.decode(models.forward, source, lengths)
    for row in range(len(lengths)):
        expected = reference_beam(models.forward, models.lm.model, source[row, :lengths[row]],
                                  width=width, n_best=n_best, early_finish=early, lam=lam,
                                  gamma=gamma)
        assert hyps.tokens[row] == [tokens for tokens, _ in expected]
        assert hyps.scores[row] == pytest.approx([score for _, score in expected], abs=1e-4)


@torch.no_grad()
def test_antilm_scores_decompose_into_forward_minus_lm(models: SimpleNamespace) -> None:
    spec = MmiAntiLmSpec(lm="unused", lam=0.6, gamma=2, width=4, n_best=3, max_length=LIMIT)
    source, lengths = _batch([5, 3], seed=1)
    hyps = MmiAntiLm(spec, lm_run=models.lm).decode(models.forward, source, lengths)
    changed = False
    for row in range(2):
        run = _Runner(models.forward, source[row, :lengths[row]])
        lm_run = _Runner(models.lm.model, torch.tensor([4]))
        for tokens, score in zip(hyps.tokens[row], hyps.scores[row], strict=True):
            full = [*tokens, EOS_ID] if len(tokens) < LIMIT else tokens
            forward = sum(float(lp[t]) for lp, t in zip(run.log_probs(full), full, strict=False))
            lm = sum(float(lp[t]) for lp, t in zip(lm_run.log_probs(full), full[:2],
                                                    strict=False))
            assert score == pytest.approx(forward - 0.6 * lm, abs=1e-4)
    plain = MmiAntiLm(attrs.evolve(spec, lam=0.0)).decode(models.forward, source, lengths)
    changed = plain.tokens != hyps.tokens
    assert changed  # the LM term changes the search here


def test_antilm_with_lambda_zero_is_plain_beam_search(registry: Any,
                                                      models: SimpleNamespace) -> None:
    samplers = pytest.importorskip("assembly_samplers")
    source, lengths = _batch([4, 7, 2, 5, 3, 6], seed=2)
    for early in (True, False):
        beam = samplers.build_beam(samplers.BeamSpec(width=4, n_best=3, early_finish=early,
                                                     max_length=LIMIT))
        mine = MmiAntiLm(MmiAntiLmSpec(lm="never-loaded", lam=0.0, width=4, n_best=3,
                                       early_finish=early, max_length=LIMIT))
        theirs = beam.decode(models.forward, source, lengths)
        ours = mine.decode(models.forward, source, lengths)
        assert ours.tokens == theirs.tokens
        for a, b in zip(ours.scores, theirs.scores, strict=True):
            assert a == pytest.approx(b, abs=1e-4)


def test_antilm_refuses_a_language_model_of_another_vocabulary(
        registry: Any, models: SimpleNamespace) -> None:
    other = new_model(registry, small_spec(vocab=VOCAB + 3))
    run = SimpleNamespace(model=other, source_vocab=models.lm.source_vocab)
    sampler = MmiAntiLm(MmiAntiLmSpec(lm="x", lam=0.5), lm_run=run)
    source, lengths = _batch([3])
    with pytest.raises(ValueError, match="lm_spec"):
        sampler.decode(models.forward, source, lengths)


# -- bidi --------------------------------------------------------------------------------


def test_bidi_with_lambda_zero_keeps_the_forward_ranking(models: SimpleNamespace) -> None:
    source, lengths = _batch([4, 2, 6], seed=3)
    spec = MmiBidiSpec(reverse="never-loaded", lam=0.0, width=5, n_best=5, max_length=LIMIT)
    reranked = MmiBidi(spec).decode(models.forward, source, lengths)
    plain = MmiAntiLm(MmiAntiLmSpec(lm="x", lam=0.0, width=5, n_best=5, early_finish=False,
                                    max_length=LIMIT)).decode(models.forward, source, lengths)
    assert reranked.tokens == plain.tokens
    assert reranked.scores == plain.scores


@torch.no_grad()
def test_bidi_reranks_by_forward_plus_reverse_plus_length(models: SimpleNamespace) -> None:
    source, lengths = _batch([4, 2, 6], seed=3)
    spec = MmiBidiSpec(reverse="x", lam=0.8, length_bonus=0.3, width=5, n_best=4,
                       max_length=LIMIT)
    plain = MmiBidi(attrs.evolve(spec, lam=0.0, length_bonus=0.0)).decode(
        models.forward, source, lengths)
    reranked = MmiBidi(spec, reverse_run=models.reverse).decode(models.forward, source, lengths)
    for row in range(3):
        src = source[row, : lengths[row]].tolist()
        expected = []
        for tokens, forward in zip(plain.tokens[row], plain.scores[row], strict=True):
            if not tokens:  # an empty hypothesis cannot be read by the reverse encoder
                expected.append((float("-inf"), tokens))
                continue
            run = _Runner(models.reverse.model, torch.tensor(tokens))
            target = [*src, EOS_ID]
            backward = sum(float(lp[t]) for lp, t in zip(run.log_probs(target), target,
                                                         strict=False))
            expected.append((forward + 0.8 * backward + 0.3 * len(tokens), tokens))
        expected.sort(key=lambda e: -e[0])
        assert reranked.tokens[row] == [tokens for _, tokens in expected]
        assert reranked.scores[row] == pytest.approx([s for s, _ in expected], abs=1e-4)


# -- derived specs, data, command line ----------------------------------------------------


def test_lm_and_reverse_specs_round_trip_and_share_the_vocabularies(
        registry: Any, tmp_path: Path) -> None:
    from assembly.train.data_setup import prepare_data

    spec = _data_spec(attention=True, depth=2)
    lm, reverse = lm_spec(spec, tmp_path / "lm"), reverse_spec(spec, tmp_path / "reverse")
    for derived in (lm, reverse):
        loaded = loads_spec(dumps_spec(derived, "toml", registry), "toml", registry)
        # Core: a None ``data.task`` is left out when dumping and loads back as the default
        # "reverse"; files still take precedence over the task, so only the field differs.
        assert attrs.evolve(loaded, data=attrs.evolve(loaded.data, task=None)) == derived
        assert derived.regularizers == () and type(derived.sampler).__name__ == "GreedySpec"
    assert lm.decoder.attention is None and lm.depth == (1, 2)
    assert lm.training.metric == "loss" and lm.name == "model-lm"
    assert reverse.source == spec.target and reverse.target == spec.source
    forward_data = prepare_data(spec, tmp_path)
    lm_data = prepare_data(lm, tmp_path)
    reverse_data = prepare_data(reverse, tmp_path)
    assert lm_data.target_vocab == forward_data.target_vocab
    assert lm_data.source_vocab.tokens == (*SPECIALS, DUMMY_SOURCE)
    assert reverse_data.source_vocab == forward_data.target_vocab
    assert reverse_data.target_vocab == forward_data.source_vocab
    assert reverse_data.dev_pairs == [(t, s) for s, t in forward_data.dev_pairs]
    for derived in (lm, reverse):
        new_model(registry, attrs.evolve(derived, source=attrs.evolve(
            derived.source, vocab_size=VOCAB)))


def test_char_data_is_written_so_that_it_reads_back_the_same(tmp_path: Path) -> None:
    from assembly.train.data_setup import load_pairs

    data = tmp_path / "pairs.tsv"
    data.write_text("ab c\tc ba\nxy\tyx z\n", encoding="utf-8")
    spec = attrs.evolve(small_spec(), data=DataSpec(task=None, train=(str(data),),
                                                    tokenizer="char"))
    reverse = reverse_spec(spec, tmp_path / "reverse")
    assert load_pairs(reverse, tmp_path)["train"] == [
        (list("c ba"), list("ab c")), (list("yx z"), list("xy"))]


def test_the_command_line_writes_specs_and_checks_vocabularies(
        registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from assembly.spec import dump_spec

    spec_file = tmp_path / "model.toml"
    dump_spec(_data_spec(), spec_file, registry)
    assert main(["lm", str(spec_file), "--out", str(tmp_path / "lm")]) == 0
    assert main(["reverse", str(spec_file), "--out", str(tmp_path / "rev")]) == 0
    assert (tmp_path / "lm" / "spec.toml").exists() and (tmp_path / "rev" / "spec.toml").exists()
    assert (tmp_path / "lm" / "lm.train.tsv").exists()

    def run_dir(name: str, source: list[str], target: list[str]) -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        for side, tokens in (("source", source), ("target", target)):
            (folder / f"vocab.{side}.json").write_text(json.dumps({"tokens": tokens}))
        return folder

    words, letters = [*SPECIALS, "a", "b"], [*SPECIALS, "x"]
    forward = run_dir("fwd", words, letters)
    good_lm = run_dir("lm-run", [*SPECIALS, DUMMY_SOURCE], letters)
    bad_reverse = run_dir("rev-run", letters, [*SPECIALS, "b", "a"])
    assert check_vocabularies(forward, lm=good_lm) == []
    assert len(check_vocabularies(forward, reverse=bad_reverse)) == 1
    capsys.readouterr()
    assert main(["check", str(forward), "--lm", str(good_lm)]) == 0
    assert main(["check", str(forward), "--reverse", str(bad_reverse)]) == 2
    assert "differs" in capsys.readouterr().err
    assert main(["lm", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("make", [
    lambda: MmiAntiLmSpec(lm=""),
    lambda: MmiAntiLmSpec(lm="x", lam=-1.0),
    lambda: MmiAntiLmSpec(lm="x", width=2, n_best=3),
    lambda: MmiAntiLmSpec(lm="x", gamma=1.5),
    lambda: MmiBidiSpec(reverse="x", width=3, n_best=4),
    lambda: MmiBidiSpec(reverse="x", lam=-0.1),
])
def test_sampler_specs_refuse_bad_values(make: Any) -> None:
    with pytest.raises(ValueError):
        make()
