"""MMI decoding (Li et al. 2016): the models it needs, derived from a forward model's spec.

MMI-antiLM needs a target-side language model U(T), MMI-bidi a reverse model p(S|T).
Both are ordinary assembly models trained by the ordinary trainer:

- :func:`lm_spec`: a decoder-only model realised as a Seq2Seq whose source is always the
  single token ``@`` (a 1-layer 16-unit encoder whose final state the ``linear`` bridge
  maps to the decoder's initial state: a learned start state). Its decoder is the forward
  model's decoder without attention or peek, its target side is the forward target side;
  it is trained on the forward training targets, with ``loss`` as the dev metric.
- :func:`reverse_spec`: the forward architecture with the source and target sides
  swapped, trained on the swapped pairs.

Both write their data (the forward spec's splits, generated or read from files) as TSV
files into ``data_dir`` and name them by absolute path in the returned spec, so the
vocabularies built from them are the forward model's own: the LM's target vocabulary is
the forward target vocabulary, the reverse model's source/target vocabularies are the
forward target/source ones (:func:`check_vocabularies` verifies a trained pair of runs).

Command line (``assembly-mmi`` or ``python -m assembly_regularizers.mmi``)::

    assembly-mmi lm specs/model.toml --out mmi/lm            # writes mmi/lm/spec.toml + data
    assemble train mmi/lm/spec.toml --out runs/model-lm
    assembly-mmi reverse specs/model.toml --out mmi/reverse
    assemble train mmi/reverse/spec.toml --out runs/model-reverse
    assembly-mmi check runs/model --lm runs/model-lm --reverse runs/model-reverse
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

DUMMY_SOURCE = "@"
"""The language model's only source token."""

LM_ENCODER_HIDDEN = 16

Pair = tuple[list[str], list[str]]


def _load_pairs(spec: Any, spec_dir: Path) -> dict[str, list[Pair]]:
    """Every split the forward spec names (generated, or read from its files)."""
    if not spec.token_mode:
        raise ValueError("MMI works on token-mode models; this spec is continuous")
    from assembly.plugin import load_pairs

    return load_pairs(spec, spec_dir)


def _write_split(path: Path, pairs: list[Pair], joiner: str) -> None:
    lines = []
    for number, (source, target) in enumerate(pairs, start=1):
        sides = [joiner.join(source), joiner.join(target)]
        if any(not side or any(c in side for c in "\t\r\n") for side in sides):
            raise ValueError(f"example {number}: a side is empty or holds a tab or line "
                             f"break, so it cannot be written as TSV")
        lines.append("\t".join(sides) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)


def _write_data(spec: Any, splits: dict[str, list[Pair]], data_dir: Path, prefix: str,
                source_limit: int) -> Any:
    """Write the splits as TSV into ``data_dir``; the spec's data section naming them."""
    joiner = "" if spec.data.tokenizer == "char" else " "
    named: dict[str, tuple[str, ...]] = {}
    for split, pairs in splits.items():
        path = (data_dir / f"{prefix}.{split}.tsv").resolve()
        _write_split(path, pairs, joiner)
        named[split] = (str(path),)
    return attrs.evolve(spec.data, task=None, format="tsv", train=named["train"],
                        dev=named.get("dev", ()), test=named.get("test", ()),
                        max_source_length=source_limit)


def _default_sampler(spec: Any) -> Any:
    """The Spec class's default sampler (greedy): derived models are plain models."""
    default = attrs.fields(type(spec)).sampler.default
    return default.factory() if isinstance(default, attrs.Factory) else default  # type: ignore


def _data_dir(data_dir: str | Path | None, spec: Any, kind: str) -> Path:
    return Path(data_dir) if data_dir is not None else Path("mmi-data") / f"{spec.name}-{kind}"


def lm_spec(spec: Any, data_dir: str | Path | None = None, *,
            spec_dir: str | Path = ".") -> Any:
    """The Spec of a target-side language model for the forward model ``spec``.

    Writes ``lm.{train,dev,test}.tsv`` (source ``@``, target: the forward targets) into
    ``data_dir`` (default ``mmi-data/<name>-lm``); ``spec_dir`` is where the forward
    spec's relative data paths start. Train the result with the normal trainer and give
    its run directory to the ``mmi-antilm`` sampler's ``lm`` option."""
    splits = _load_pairs(spec, Path(spec_dir))
    lm_splits = {split: [([DUMMY_SOURCE], list(target)) for _, target in pairs]
                 for split, pairs in splits.items()}
    data = _write_data(spec, lm_splits, _data_dir(data_dir, spec, "lm"), "lm", 1)
    decoder_depth = spec.decoder_depth
    return attrs.evolve(
        spec,
        name=f"{spec.name}-lm",
        depth=(1, decoder_depth),
        source=attrs.evolve(spec.source, vocab_size=None, embedding=8, dropout=0.0),
        encoder=attrs.evolve(spec.encoder, cell=spec.decoder.cell, hidden=LM_ENCODER_HIDDEN,
                             bidirectional=False, dropout=0.0),
        bridge=attrs.evolve(spec.bridge, type="linear"),
        decoder=attrs.evolve(spec.decoder, attention=None, peek=None, feed_previous=True,
                             broadcast_state=True),
        regularizers=(),
        sampler=_default_sampler(spec),
        training=attrs.evolve(spec.training, metric="loss"),
        data=data,
    )


def reverse_spec(spec: Any, data_dir: str | Path | None = None, *,
                 spec_dir: str | Path = ".") -> Any:
    """The Spec of the reverse (target → source) model for the forward model ``spec``:
    the same architecture with the two token sides swapped, trained on the swapped pairs
    (written as ``reverse.{train,dev,test}.tsv`` into ``data_dir``, default
    ``mmi-data/<name>-reverse``). Give its run directory to ``mmi-bidi``'s ``reverse``."""
    splits = _load_pairs(spec, Path(spec_dir))
    swapped = {split: [(list(target), list(source)) for source, target in pairs]
               for split, pairs in splits.items()}
    longest = max((len(s) for pairs in swapped.values() for s, _ in pairs), default=1)
    data = _write_data(spec, swapped, _data_dir(data_dir, spec, "reverse"), "reverse",
                       max(spec.data.max_source_length, longest))
    return attrs.evolve(spec, name=f"{spec.name}-reverse", source=spec.target,
                        target=spec.source, regularizers=(), sampler=_default_sampler(spec),
                        data=data)


def _vocab_tokens(run_dir: Path, side: str) -> list[str]:
    path = run_dir / f"vocab.{side}.json"
    if not path.exists():
        raise ValueError(f"{run_dir}: no {path.name} (not a token-mode run directory?)")
    return list(json.loads(path.read_text(encoding="utf-8"))["tokens"])


def check_vocabularies(forward: str | Path, *, lm: str | Path | None = None,
                       reverse: str | Path | None = None) -> list[str]:
    """Problems (empty: none) with using ``lm`` / ``reverse`` runs beside the ``forward``
    run: their vocabularies must give every token the same id as the forward model's."""
    forward = Path(forward)
    problems = []
    checks = []
    if lm is not None:
        checks.append((Path(lm), "target", "target", "the language model"))
    if reverse is not None:
        checks += [(Path(reverse), "source", "target", "the reverse model"),
                   (Path(reverse), "target", "source", "the reverse model")]
    for run, side, forward_side, what in checks:
        theirs, ours = _vocab_tokens(run, side), _vocab_tokens(forward, forward_side)
        if theirs != ours:
            problems.append(f"{what} ({run}) {side} vocabulary differs from the forward "
                            f"model's {forward_side} vocabulary ({len(theirs)} vs {len(ours)} "
                            f"tokens): train it from lm_spec/reverse_spec of the same spec")
    return problems


# -- command line ----------------------------------------------------------------------


def _derive(args: argparse.Namespace, derive: Any) -> int:
    from assembly.plugin import dump_spec, load_spec, make_registry

    registry = make_registry()
    spec = load_spec(args.spec, registry)
    out = Path(args.out)
    derived = derive(spec, out, spec_dir=Path(args.spec).parent)
    dump_spec(derived, out / "spec.toml", registry)
    print(f"wrote {out / 'spec.toml'} and its data; train it with: "
          f"assemble train {out / 'spec.toml'} --out runs/{derived.name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``assembly-mmi lm|reverse SPEC --out DIR`` and ``assembly-mmi check RUN ...``."""
    parser = argparse.ArgumentParser(prog="assembly-mmi", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("lm", "derive the target-side language model's spec and data"),
                            ("reverse", "derive the reverse model's spec and data")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("spec", help="the forward model's spec file")
        command.add_argument("--out", required=True, help="folder for spec.toml and the data")
    check = commands.add_parser("check", help="check that trained runs share vocabularies")
    check.add_argument("forward", help="the forward model's run directory")
    check.add_argument("--lm", help="the language model's run directory")
    check.add_argument("--reverse", help="the reverse model's run directory")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            problems = check_vocabularies(args.forward, lm=args.lm, reverse=args.reverse)
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            if not problems:
                print("ok: the vocabularies agree")
            return 2 if problems else 0
        return _derive(args, lm_spec if args.command == "lm" else reverse_spec)
    except Exception as error:  # user errors: one line, exit 2
        if type(error).__name__ not in ("SpecError", "UserError", "DataError", "ValueError"):
            raise
        render = getattr(error, "render", None)
        print(render() if callable(render) else f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
