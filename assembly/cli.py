"""The ``assemble`` command line.

``check`` and the other spec commands import no torch. Errors a user can cause (a wrong
spec, bad data, a missing run) print one clear message per problem and exit with 2;
a diverged training run exits with 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assembly.errors import SpecError, UserError


def _registry(args: argparse.Namespace) -> Any:
    from assembly.registry import make_registry

    return make_registry(strict=getattr(args, "strict", False),
                         block=tuple(getattr(args, "block", None) or ()))


def _plugin_notes(registry: Any) -> None:
    for failure in registry.failures:
        print(f"warning: {failure.render()}", file=sys.stderr)


# -- spec commands (no torch) ---------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    from assembly.plan import plan_model
    from assembly.spec import load_spec

    registry = _registry(args)
    _plugin_notes(registry)
    failed = False
    reports = []
    for path in args.specs:
        try:
            spec = load_spec(path, registry)
            plan = plan_model(spec, registry)
        except SpecError as error:
            print(error.with_source(str(path)).render(), file=sys.stderr)
            failed = True
            continue
        placement = registry.record_of(spec.placement).describe(spec.placement, plan)
        regularizers = [_component_line(registry, r) for r in spec.regularizers]
        if args.format == "json":
            reports.append({"file": str(path), **plan.to_dict(), "placement": placement,
                            "regularizers": regularizers,
                            "sampler": _component_line(registry, spec.sampler)})
            continue
        print(f"{path}: ok — {spec.name}, {plan.total:,} parameters")
        print(plan.table())
        print(f"sampler: {_component_line(registry, spec.sampler)}")
        print(f"placement: {_component_line(registry, spec.placement)}; " + "; ".join(placement))
        print("regularizers: " + (", ".join(regularizers) if regularizers else "none"))
        print()
    if args.format == "json":
        print(json.dumps(reports, indent=2))
    return 2 if failed else 0


def _component_line(registry: Any, spec: Any) -> str:
    import attrs

    _kind, name = registry.name_of(spec)
    fields = ", ".join(f"{k}={v!r}" for k, v in attrs.asdict(spec).items() if v is not None)
    return f"{name}({fields})"


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = _registry(args)
    for info in registry.plugins():
        print(f"{info.name}  [{info.dist}]")
        for kind, name in info.components:
            summary = registry.get(kind, name).summary
            print(f"    {kind:<12} {name:<18} {summary}")
    for failure in registry.failures:
        print(f"FAILED {failure.render()}")
    return 0


def cmd_components(args: argparse.Namespace) -> int:
    import attrs

    from assembly.plugin import KINDS

    registry = _registry(args)
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        if kind not in KINDS:
            raise UserError(f"unknown component kind {kind!r}; known: {', '.join(KINDS)}")
        names = [args.name] if args.name else registry.names(kind)
        for name in names:
            record = registry.get(kind, name)
            print(f"{kind} {name} ({registry.source_of(kind, name)}): {record.summary}")
            doc = (record.spec.__doc__ or "").strip()
            if doc and args.name:
                print("    " + doc.replace("\n", "\n    "))
            for field in attrs.fields(record.spec):
                default = field.default
                if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                    default = default.factory()
                shown = "required" if default is attrs.NOTHING else f"default {default!r}"
                allowed = getattr(field.validator, "allowed", None)
                extra = f", one of {', '.join(allowed)}" if allowed else ""
                print(f"    {field.name}: {_type_name(field.type)} ({shown}{extra})")
    return 0


def _type_name(tp: Any) -> str:
    return tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))


def cmd_schema(args: argparse.Namespace) -> int:
    from assembly.spec.schema import spec_schema

    print(json.dumps(spec_schema(_registry(args)), indent=2))
    return 0


# -- torch commands -------------------------------------------------------------------
def cmd_build(args: argparse.Namespace) -> int:
    from assembly.build import build_model, count_parameters, module_table
    from assembly.plan import plan_model
    from assembly.spec import dump_spec, load_spec
    from assembly.train.checkpoint import save_weights

    registry = _registry(args)
    spec = load_spec(args.spec, registry)
    plan = plan_model(spec, registry)
    model = build_model(plan, registry, seed=args.seed)
    table = module_table(model, plan)
    total = count_parameters(model)
    if args.format == "json":
        print(json.dumps({**table.to_dict(), "total_parameters": total,
                          "planned_parameters": plan.total}, indent=2))
    else:
        print(table.table().rsplit("\n", 1)[0])
        print(f"total parameters: {total:,} (planned {plan.total:,})")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        dump_spec(spec, out / "spec.toml", registry)
        save_weights(model, out / "model.safetensors")
        _write_task_vocabularies(spec, out)
        if args.format != "json":
            print(f"wrote {out}/spec.toml and {out}/model.safetensors")
    return 0


def _write_task_vocabularies(spec: Any, out: Path) -> None:
    """A built model of a generated task gets the task's vocabularies, so the directory
    loads and decodes like a trained run (file data has none until trained)."""
    if not spec.token_mode or spec.data.task is None:
        return
    from assembly.data import Vocabulary
    from assembly.data.tasks import task_inventory

    source, target = task_inventory(spec.data.task, spec.data.symbols)
    Vocabulary.build([source]).save(out / "vocab.source.json")
    Vocabulary.build([target]).save(out / "vocab.target.json")


def cmd_train(args: argparse.Namespace) -> int:
    if args.nproc and args.nproc > 1:
        from assembly.distributed import launch

        return launch(args.argv, args.nproc)
    from assembly.distributed import maybe_init_process_group
    from assembly.spec import load_spec
    from assembly.train.trainer import Trainer

    maybe_init_process_group()
    registry = _registry(args)
    _plugin_notes(registry)
    if args.resume:
        from assembly.train.checkpoint import latest_checkpoint

        if latest_checkpoint(Path(args.out)) is None:
            raise UserError(f"{args.out}: nothing to resume (no checkpoint)")
        if args.spec or args.seed is not None:
            raise UserError("--resume continues the run's own spec and seed; give only --out "
                            "(and --epochs / --max-updates to extend it)")
        spec = _apply_overrides(load_spec(Path(args.out) / "spec.toml", registry), args)
        spec_dir = Path(".")
    else:
        if not args.spec:
            raise UserError("give a spec file (or --resume with --out RUN)")
        spec = load_spec(args.spec, registry)
        spec_dir = Path(args.spec).parent
        spec = _apply_overrides(spec, args)
    trainer = Trainer(spec, args.out, registry=registry, spec_dir=spec_dir, resume=args.resume,
                      progress=not args.quiet, device=args.device, threads=args.threads)
    result = trainer.fit()
    if trainer.is_main:
        print(f"trained {result.updates} updates in {result.seconds:.1f} s "
              f"({result.train_tokens_per_second:,.0f} target tokens/s); run in {args.out}")
        if result.dev:
            print("dev: " + ", ".join(f"{k} {v:.4g}" for k, v in result.dev.items()))
    return 0


def _apply_overrides(spec: Any, args: argparse.Namespace) -> Any:
    import attrs

    training = spec.training
    changes = {}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.max_updates is not None:
        changes["max_updates"] = args.max_updates
    if args.seed is not None:
        changes["seed"] = args.seed
    return attrs.evolve(spec, training=attrs.evolve(training, **changes)) if changes else spec


def _sampler_spec(args: argparse.Namespace, registry: Any, default: Any) -> Any:
    """A sampler spec from ``--sampler NAME`` and ``--option value`` pairs, validated like
    a spec component (same errors, path ``$.sampler``)."""
    if args.sampler is None and not args.options:
        return default
    from assembly.spec.convert import problems_from

    data: dict[str, Any] = {"type": args.sampler or registry.name_of(default)[1]}
    extra = list(args.options)
    while extra:
        key = extra.pop(0)
        if not key.startswith("--"):
            raise UserError(f"unexpected argument {key!r}")
        name = key[2:].replace("-", "_")
        if "=" in name:
            name, value = name.split("=", 1)
        elif extra and not extra[0].startswith("--"):
            value = extra.pop(0)
        else:
            value = "true"
        data[name] = _parse_value(value)
    from assembly.plugin import SamplerSpec

    try:
        return registry.converter.structure(data, SamplerSpec)
    except Exception as error:
        raise SpecError([p.__class__(p.message, p.path.replace("$", "$.sampler", 1))
                         for p in problems_from(error)], "command line") from None


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_generate(args: argparse.Namespace) -> int:
    from assembly.data import read_lines
    from assembly.decode.generate import generate
    from assembly.run import load_run

    registry = _registry(args)
    run = load_run(args.run, registry, device=args.device, threads=args.threads)
    sampler = _sampler_spec(args, registry, run.spec.sampler)
    inputs = list(args.input or [])
    if args.file:
        inputs += read_lines(args.file)
    if not inputs:
        raise UserError("nothing to decode: give --input TEXT or --file FILE")
    results = generate(run, inputs, sampler=sampler, seed=args.seed,
                       batch_size=args.batch_size)
    for index, result in enumerate(results):
        if result.unknown:
            print(f"warning: input {index + 1}: not in the source vocabulary, read as <unk>: "
                  f"{' '.join(result.unknown)}", file=sys.stderr)
        if args.format == "json":
            print(json.dumps({"input": inputs[index], "outputs": result.texts,
                              "scores": result.scores, "unknown": result.unknown}))
        elif len(result.texts) == 1:
            print(result.text)
        else:
            for rank, (text, score) in enumerate(zip(result.texts, result.scores, strict=True)):
                print(f"{index + 1}.{rank + 1}\t{score:.3f}\t{text}")
    if args.plot:
        from assembly.train.logs import plot_attention

        folder = Path(args.plot)
        folder.mkdir(parents=True, exist_ok=True)
        for index, result in enumerate(results):
            if result.attention[0] is None:
                raise UserError("this model has no attention to plot")
            plot_attention(result.attention[0], result.source, result.hypotheses[0],
                           folder / f"attention_{index + 1}.png")
        print(f"attention plots in {folder}", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import attrs

    from assembly.decode.generate import make_sampler
    from assembly.evaluate import evaluate
    from assembly.run import load_run
    from assembly.train.data_setup import prepare_data

    registry = _registry(args)
    run = load_run(args.run, registry, device=args.device, threads=args.threads)
    spec = run.spec
    if args.data:
        data = attrs.evolve(spec.data, task=None, train=tuple(args.data), dev=(), test=())
        spec = attrs.evolve(spec, data=data)
        bundle = prepare_data(spec, Path("."), run.path)
        dataset = bundle.train
    else:
        bundle = prepare_data(spec, Path("."), run.path)
        dataset = bundle.test or bundle.dev
        if dataset is None:
            raise UserError("the run's data has no test or dev split: give --data FILE")
    sampler = make_sampler(run, _sampler_spec(args, registry, run.spec.sampler))
    results, _ = evaluate(run.model, dataset, sampler, target_vocab=run.target_vocab,
                          tokenizer=spec.data.tokenizer, batch_size=args.batch_size,
                          seed=args.seed)
    if args.format == "json":
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:>15}  {value:.4f}")
    return 0


# -- parser ---------------------------------------------------------------------------
THREADS_HELP = ("torch intra-op threads for this command (train: overrides training.threads; "
                "generate/evaluate: default torch's own, one per core)")


def _threads(text: str) -> int:
    """``--threads N``: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}")
    return value


def _parser_without_abbreviations(**kwargs: Any) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(**kwargs, allow_abbrev=False)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="assemble", description=__doc__.split("\n")[0],
                                   allow_abbrev=False)
    main.add_argument("--strict", action="store_true",
                      help="fail on any plugin that cannot load (CI)")
    main.add_argument("--block", action="append", metavar="PLUGIN",
                      help="do not load this plugin (repeatable)")
    sub = main.add_subparsers(dest="command", required=True,
                              parser_class=_parser_without_abbreviations)

    check = sub.add_parser("check", help="validate specs and print their plans (no torch)")
    check.add_argument("specs", nargs="+")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(handler=cmd_check)

    build = sub.add_parser("build", help="build the torch module and print its table")
    build.add_argument("spec")
    build.add_argument("--out", help="write an initialised model directory here")
    build.add_argument("--seed", type=int, default=1)
    build.add_argument("--format", choices=("text", "json"), default="text")
    build.set_defaults(handler=cmd_build)

    sub.add_parser("plugins", help="installed plugins and their components").set_defaults(
        handler=cmd_plugins)
    components = sub.add_parser("components", help="components with their parameters")
    components.add_argument("kind", nargs="?")
    components.add_argument("name", nargs="?")
    components.set_defaults(handler=cmd_components)
    sub.add_parser("schema", help="JSON Schema of the spec format").set_defaults(handler=cmd_schema)

    train = sub.add_parser("train", help="train a spec into a run directory")
    train.add_argument("spec", nargs="?")
    train.add_argument("--out", required=True, help="the run directory")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--epochs", type=int)
    train.add_argument("--max-updates", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--device", help="override the placement: put everything here")
    train.add_argument("--threads", type=_threads, metavar="N", help=THREADS_HELP)
    train.add_argument("--nproc", type=int, help="data-parallel processes (torchrun)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=cmd_train)

    for name, handler, text in (("generate", cmd_generate, "decode inputs with a trained run"),
                                ("evaluate", cmd_evaluate, "metrics of a run on data")):
        command = sub.add_parser(name, help=text)
        command.add_argument("run", help="a run or model directory")
        command.add_argument("--sampler", help="sampler name; its options follow as --key value")
        command.add_argument("--seed", type=int)
        command.add_argument("--batch-size", type=int, default=500)
        command.add_argument("--device")
        command.add_argument("--threads", type=_threads, metavar="N", help=THREADS_HELP)
        command.add_argument("--format", choices=("text", "json"), default="text")
        if name == "generate":
            command.add_argument("--input", action="append", help="text to decode (repeatable)")
            command.add_argument("--file", help="one input per line")
            command.add_argument("--plot", metavar="DIR", help="write attention heat maps")
        else:
            command.add_argument("--data", nargs="+", help="data files in the run's format")
        command.set_defaults(handler=handler)
    from assembly.search.cli import add_parser as add_search_parser

    add_search_parser(sub)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    main_parser = parser()
    args, unknown = main_parser.parse_known_args(arguments)
    args.options = unknown
    args.argv = arguments
    if unknown and args.command not in ("generate", "evaluate"):
        main_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.handler(args)
    except SpecError as error:
        print(error.render(), file=sys.stderr)
        return 2
    except UserError as error:
        from assembly.train.trainer import TrainingDiverged

        print(f"error: {error}", file=sys.stderr)
        return 3 if isinstance(error, TrainingDiverged) else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
