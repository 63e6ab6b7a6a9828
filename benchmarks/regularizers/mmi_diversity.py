"""MMI decoding (Li et al. 2016) raises the diversity of the outputs over plain beam
search on a task with many valid outputs.

Synthetic "dialogue": the source is 3–6 content words (100 kinds, w00 … w99); each
training target is one of four valid responses drawn at random: two generic ones that fit
every source ("i do not know" 30 %, "that is nice" 20 %) and two specific ones (the
source reversed 25 %, the source copied 25 %). The most probable response is generic for
every source, so beam search answers "i do not know" almost everywhere; MMI should prefer
the responses that are specific to the source.

Three models are trained with the normal trainer: the forward model (attentional LSTM),
the target-side language model from ``assembly_regularizers.mmi.lm_spec`` and the
reverse model from ``reverse_spec``. The test sources are decoded with greedy, plain beam
(``mmi-antilm`` with λ = 0, which is plain beam search), MMI-antiLM (λ, γ = 2) and
MMI-bidi (λ); reported: distinct-1 / distinct-2 (distinct uni/bigrams over all output
tokens), the share of distinct output sentences, the share of generic outputs, and the
share of outputs that are one of the four valid responses.

    python benchmarks/regularizers/mmi_diversity.py  # 3 models, ~6 min on a busy 2-core machine
    python benchmarks/regularizers/mmi_diversity.py --quick
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path
from typing import Any

import torch
from regbench import registry, train, write_result

CONTENT = [f"w{i:02d}" for i in range(100)]
GENERIC = (["i", "do", "not", "know"], ["that", "is", "nice"])


def responses(source: list[str]) -> list[list[str]]:
    """The valid responses to ``source``: the generic ones, reversed, copied."""
    return [*GENERIC, source[::-1], list(source)]


def draw(rng: random.Random) -> tuple[list[str], list[str]]:
    source = [rng.choice(CONTENT) for _ in range(rng.randint(3, 6))]
    pick = rng.random()
    if pick < 0.30:
        return source, GENERIC[0]
    if pick < 0.50:
        return source, GENERIC[1]
    if pick < 0.75:
        return source, source[::-1]
    return source, list(source)


def write_data(folder: Path, train_size: int) -> dict[str, Path]:
    rng = random.Random(7)
    paths = {}
    for split, size in (("train", train_size), ("dev", 300)):
        path = folder / f"{split}.tsv"
        path.write_text("".join(f"{' '.join(s)}\t{' '.join(t)}\n"
                                for s, t in (draw(rng) for _ in range(size))))
        paths[split] = path
    return paths


def forward_spec(paths: dict[str, Path], epochs: int) -> Any:
    from assembly.builtin.cells import LstmSpec
    from assembly.spec import (
        AttentionSpec,
        DataSpec,
        DecoderSpec,
        EncoderSpec,
        OptimizerSpec,
        Spec,
        TokenSideSpec,
        TrainingSpec,
    )

    return Spec(
        name="dialogue",
        source=TokenSideSpec(embedding=32), target=TokenSideSpec(embedding=32),
        encoder=EncoderSpec(cell=LstmSpec(), hidden=64),
        decoder=DecoderSpec(cell=LstmSpec(), hidden=64, attention=AttentionSpec()),
        training=TrainingSpec(seed=1, epochs=epochs, batch_size=64, metric="loss",
                              optimizer=OptimizerSpec(lr=3e-3)),
        data=DataSpec(task=None, format="tsv", train=(str(paths["train"]),),
                      dev=(str(paths["dev"]),)),
    )


def distinct(outputs: list[list[str]], n: int) -> float:
    grams = [tuple(o[i:i + n]) for o in outputs for i in range(len(o) - n + 1)]
    return len(set(grams)) / max(len(grams), 1)


def score_outputs(sources: list[list[str]], outputs: list[list[str]]) -> dict[str, float]:
    valid = sum(o in responses(s) for s, o in zip(sources, outputs, strict=True))
    generic = sum(o in GENERIC for o in outputs)
    return {"distinct_1": round(distinct(outputs, 1), 4),
            "distinct_2": round(distinct(outputs, 2), 4),
            "generic_share": round(generic / len(outputs), 4),
            "valid_share": round(valid / len(outputs), 4),
            "unique_outputs": round(len({" ".join(o) for o in outputs}) / len(outputs), 4),
            "mean_length": round(sum(map(len, outputs)) / len(outputs), 3)}


def decode(run: Any, sampler: Any, sources: list[list[str]]) -> list[list[str]]:
    from assembly.decode.generate import decode_batches

    encoded = [run.source_vocab.encode(s) for s in sources]
    decoded = decode_batches(run.model, sampler, encoded, batch_size=100)
    return [run.target_vocab.decode(hyps[0]) for hyps, *_ in decoded]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.train_size, args.test_size = 1, 600, 40
    torch.set_num_threads(args.threads)
    from assembly_regularizers import MmiAntiLmSpec, MmiBidiSpec
    from assembly_regularizers.mmi import check_vocabularies, lm_spec, reverse_spec
    from assembly_regularizers.mmi_search import MmiAntiLm, MmiBidi

    from assembly.builtin.samplers import GreedySpec
    from assembly.run import load_run

    reg = registry()
    rng = random.Random(123)
    sources = [draw(rng)[0] for _ in range(args.test_size)]
    results: dict[str, Any] = {}
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_data(folder, args.train_size)
        spec = forward_spec(paths, args.epochs)
        lm, reverse = lm_spec(spec, folder / "lm-data"), reverse_spec(spec, folder / "rev-data")
        for name, derived in (("forward", spec), ("lm", lm), ("reverse", reverse)):
            _, result, took = train(derived, folder / name, reg)
            seconds[name] = round(took, 1)
            print(f"trained {name}: {result.updates} updates, dev {result.dev}", flush=True)
        problems = check_vocabularies(folder / "forward", lm=folder / "lm",
                                      reverse=folder / "reverse")
        assert not problems, problems
        run = load_run(folder / "forward", reg)
        lm_dir, reverse_dir = str(folder / "lm"), str(folder / "reverse")
        settings: dict[str, Any] = {
            "greedy": reg.record_of(GreedySpec()).build(GreedySpec()),
            "beam (width 5)": MmiAntiLm(MmiAntiLmSpec(lm=lm_dir, lam=0.0, width=5)),
        }
        for lam in (0.25, 0.5):
            settings[f"mmi-antilm (lam {lam}, gamma 2, width 5)"] = MmiAntiLm(
                MmiAntiLmSpec(lm=lm_dir, lam=lam, gamma=2, width=5))
        for lam in (0.25, 0.5):
            settings[f"mmi-bidi (lam {lam}, width 10, n_best 10)"] = MmiBidi(
                MmiBidiSpec(reverse=reverse_dir, lam=lam, width=10, n_best=10))
        for name, sampler in settings.items():
            outputs = decode(run, sampler, sources)
            results[name] = score_outputs(sources, outputs)
            results[name]["examples"] = [" ".join(s) + " -> " + " ".join(o)
                                         for s, o in zip(sources[:4], outputs[:4], strict=True)]
            print(name, {k: v for k, v in results[name].items() if k != "examples"}, flush=True)
    path = write_result("regularizers_mmi_diversity", {
        "task": "synthetic dialogue: 3-6 symbols -> 'i do not know' 30%, 'that is nice' 20%, "
                "reversed 25%, copied 25%; 100 content words",
        "models": "forward attentional LSTM 64; LM and reverse model derived by "
                  "assembly_regularizers.mmi.lm_spec / reverse_spec",
        "epochs": args.epochs, "train_size": args.train_size, "test_size": args.test_size,
        "quick": args.quick, "training_seconds": seconds, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
