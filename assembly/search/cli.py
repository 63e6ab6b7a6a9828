"""``assemble search``: architecture search from a base spec and a space file.

Wiring (in :func:`assembly.cli.parser`, after the other subcommands)::

    from assembly.search.cli import add_parser as add_search_parser
    add_search_parser(sub)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EPILOG = """\
Each trial draws a spec from the space, trains it for --budget-updates updates and
evaluates it on the dev set; Optuna proposes the next. The study is kept in
OUT/study.db (or --storage, any Optuna storage URL), so running the same command again
continues an interrupted search up to --trials finished trials (trials it left running
are marked failed once silent for --stale-after seconds). Writes OUT/results.csv,
OUT/search.png and OUT/best.toml (the best spec with its own training settings).
Needs Optuna: pip install 'assembly[search]'."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``search`` subcommand to an ``assemble`` subparsers object."""
    parser = subparsers.add_parser(
        "search", help="architecture search: train and evaluate specs drawn from a space",
        description=__doc__.split("\n")[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="the base spec (TOML or JSON)")
    parser.add_argument("--space", required=True, help="the space file (TOML or JSON)")
    parser.add_argument("--trials", type=int, required=True,
                        help="finished trials the study should hold (a continued search "
                             "runs only the missing ones)")
    parser.add_argument("--budget-updates", type=int, required=True,
                        help="training updates per trial")
    parser.add_argument("--out", required=True, help="the search directory")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    parser.add_argument("--study", help="study name (default: the base spec's name)")
    parser.add_argument("--metric", help="dev metric to optimise (default: the base spec's "
                                         "training.metric)")
    parser.add_argument("--max-parameters", type=int,
                        help="skip specs planned larger than this (no training)")
    parser.add_argument("--seed", type=int, default=0, help="seed of Optuna's sampler")
    parser.add_argument("--stale-after", type=int, default=None, metavar="SECONDS",
                        help="a trial left running with no heartbeat for this long was "
                             "interrupted: mark it failed (default: 120)")
    parser.set_defaults(handler=cmd_search)
    return parser


def cmd_search(args: argparse.Namespace) -> int:
    """Run the search the arguments describe; print the results table."""
    from assembly.registry import make_registry
    from assembly.search.run import STALE_AFTER, search
    from assembly.search.space import load_space
    from assembly.spec import load_spec

    registry = make_registry(strict=getattr(args, "strict", False),
                             block=tuple(getattr(args, "block", None) or ()))
    base = load_spec(args.spec, registry)
    space = load_space(args.space, base, registry)
    result = search(base, space, args.out, trials=args.trials,
                    budget_updates=args.budget_updates, storage=args.storage,
                    study=args.study, metric=args.metric, max_parameters=args.max_parameters,
                    seed=args.seed, spec_dir=Path(args.spec).parent, registry=registry,
                    stale_after=STALE_AFTER if args.stale_after is None else args.stale_after)
    print(result.table())
    if result.best is not None:
        print(f"\nbest: trial {result.best.number}, {result.metric} "
              f"{result.best.value:.4g}; spec in {Path(args.out) / 'best.toml'}")
    print(f"results in {Path(args.out) / 'results.csv'} and {Path(args.out) / 'search.png'}; "
          f"study {result.study!r} in {result.storage}")
    return 0
