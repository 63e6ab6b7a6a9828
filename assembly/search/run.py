"""Run an architecture search: Optuna proposes specs from a space, each trial trains briefly.

Each trial draws an assignment from the :class:`~assembly.search.space.Space` (through the
Optuna trial, so the sampler learns from earlier trials), builds and plans the spec,
skips it (pruned, with the reason) when it is invalid or larger than
``max_parameters``, reuses the result of an earlier trial with the same spec (canonical
hash), and otherwise trains it for ``budget_updates`` updates with the
:class:`~assembly.train.trainer.Trainer` into ``OUT/trials/trial-NNNN`` and returns its dev
metric. The study lives in an Optuna storage (SQLite under ``OUT`` by default), so a
search that is interrupted continues where it stopped: ``trials`` is the total number of
finished trials the study should hold. A running trial beats a heartbeat into the
storage; a trial left running by a search that was killed or crashed (no heartbeat for
``stale_after`` seconds) is marked failed when the search continues, and logged, while
trials that other processes are running on the same study are left alone. Results: a
table (stdout and ``OUT/results.csv``), a plot (``OUT/search.png``) and the best trial's
spec (``OUT/best.toml``, with its own training settings rather than the search's short
budget).

Optuna is the optional extra ``search`` (``pip install 'assembly[search]'``).
"""

from __future__ import annotations

import csv
import datetime
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from assembly.errors import Problem, SpecError, UserError
from assembly.search.space import Space
from assembly.spec import dump_spec, spec_from_dict, spec_hash, spec_to_dict
from assembly.spec.model import Spec

__all__ = ["OptunaDrawer", "SearchResult", "TrialRow", "fail_stale_trials", "search"]

STALE_AFTER = 120
"""Seconds without a heartbeat after which a running trial counts as interrupted."""

HEARTBEAT_SECONDS = 30
"""How often a running trial records that it is alive (at most; see :func:`_storage`)."""

HEARTBEAT_ATTR = "heartbeat"
"""User attribute of trials that beat a heartbeat; a running trial without it was left by
a search that did not, and is judged by its start time instead."""

HIGHER_IS_BETTER = {"loss": False, "token_accuracy": True, "exact_match": True, "bleu": True,
                    "chrf": True, "mse": False, "cer": False, "wer": False}
"""Whether a dev metric improves upwards (the study's direction)."""


@attrs.frozen
class TrialRow:
    """One trial as the results table shows it. ``params``: the drawn values by key
    (choices by their label), ``note``: why it was pruned, failed or not trained."""

    number: int
    state: str
    value: float | None
    parameters: int | None
    seconds: float | None
    params: dict[str, Any]
    note: str = ""


@attrs.define
class SearchResult:
    """The study's trials, the best one, and how many trials this call ran."""

    study: str
    storage: str
    out: Path
    metric: str
    rows: list[TrialRow]
    best: TrialRow | None
    ran: int
    best_spec: Spec | None = None

    def table(self) -> str:
        """The trials as an aligned text table."""
        return format_table(self.rows, self.metric)


class OptunaDrawer:
    """Draws a space's values through an Optuna trial (its ``suggest_*`` methods)."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def choice(self, key: str, labels: Sequence[Any]) -> Any:
        return self.trial.suggest_categorical(key, list(labels))

    def integer(self, key: str, low: int, high: int, step: int, log: bool) -> int:
        return int(self.trial.suggest_int(key, low, high, step=step, log=log))

    def real(self, key: str, low: float, high: float, step: float | None, log: bool) -> float:
        return float(self.trial.suggest_float(key, low, high, step=step, log=log))


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserError("architecture search needs Optuna: pip install 'assembly[search]' "
                        "(or pip install optuna)") from None
    return optuna


def resolve_metric(spec: Spec, metric: str | None = None) -> str:
    """The dev metric trials are compared by: ``metric``, else the base spec's
    ``training.metric`` (``auto``: exact match in token mode, mse in continuous mode)."""
    chosen = metric or spec.training.metric
    if chosen == "auto":
        chosen = "exact_match" if spec.token_mode else "mse"
    if chosen not in HIGHER_IS_BETTER:
        raise UserError(f"unknown metric {chosen!r}; known: {', '.join(HIGHER_IS_BETTER)}")
    return chosen


def search(base: Spec, space: Space, out: str | Path, *, trials: int, budget_updates: int,
           storage: str | None = None, study: str | None = None, metric: str | None = None,
           max_parameters: int | None = None, seed: int = 0, spec_dir: str | Path = ".",
           registry: Any = None, log: Callable[[str], None] = print,
           stale_after: int = STALE_AFTER) -> SearchResult:
    """Run (or continue) a search until the study holds ``trials`` finished trials.

    ``storage``: any Optuna storage URL (default ``sqlite:///OUT/study.db``); ``study``:
    the study name (default: the base spec's name). Several processes given the same
    storage and study share the work. Trials left running by an interrupted search (no
    heartbeat for ``stale_after`` seconds) are marked failed first (see
    :func:`fail_stale_trials`)."""
    optuna = _optuna()
    if trials < 1 or budget_updates < 1:
        raise UserError("--trials and --budget-updates must be at least 1")
    if stale_after < 1:
        raise UserError("--stale-after must be at least 1 second")
    registry = registry if registry is not None else space.registry
    metric = resolve_metric(base, metric)
    for key in _keys(space):
        if key.split("#")[0] in ("training.metric", "training.max_updates"):
            raise SpecError([Problem(f"the search sets {key.split('#')[0]} itself; leave it "
                                     f"out of the space", "$")])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{out.resolve() / 'study.db'}"
    name = study or base.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if HIGHER_IS_BETTER[metric] else "minimize"
    try:
        the_study = optuna.create_study(storage=_storage(optuna, storage, stale_after),
                                        study_name=name, direction=direction,
                                        load_if_exists=True)
    except Exception as error:  # a bad URL, an unreachable database, another direction
        raise UserError(f"cannot open study {name!r} in {storage}: {error}") from None
    if the_study.direction.name.lower() != direction:
        raise UserError(f"study {name!r} in {storage} is set to {the_study.direction.name.lower()}"
                        f", but metric {metric!r} needs {direction}; use another --study")
    failed = fail_stale_trials(the_study, stale_after)
    if failed:
        log(f"study {name!r}: trials {', '.join(map(str, failed))} were left running by an "
            f"interrupted search (no sign of life for {stale_after} s); marked failed")
    busy = [t.number for t in the_study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    if busy:
        log(f"study {name!r}: trials {', '.join(map(str, busy))} are running elsewhere (or "
            f"were interrupted less than {stale_after} s ago: they are marked failed later)")
    states = _finished(optuna)
    done = len(the_study.get_trials(deepcopy=False, states=states))
    # A fresh sampler seed per continuation: a resumed search must not replay its
    # first suggestions.
    the_study.sampler = optuna.samplers.TPESampler(seed=seed + len(the_study.trials))
    remaining = max(0, trials - done)
    if done:
        log(f"study {name!r}: {done} finished trials in {storage}; running {remaining} more")
    objective = _Objective(space, registry, out, metric, budget_updates, max_parameters,
                           Path(spec_dir), the_study, log)
    if remaining:
        the_study.optimize(objective, n_trials=remaining, catch=(UserError,),
                           callbacks=[optuna.study.MaxTrialsCallback(trials, states=states)])
    rows = [_row(trial) for trial in the_study.get_trials(deepcopy=False)]
    result = SearchResult(name, storage, out, metric, rows, None, objective.ran)
    complete = [r for r in rows if r.state == "COMPLETE" and r.value is not None]
    if complete:
        best = the_study.best_trial
        result.best = next(r for r in rows if r.number == best.number)
        data = _spec_data(the_study, best)
        if data is not None:
            result.best_spec = spec_from_dict(data, registry, source="best trial")
            dump_spec(result.best_spec, out / "best.toml", registry)
    write_csv(rows, out / "results.csv")
    if rows:
        plot_search(rows, metric, out / "search.png")
    return result


def _storage(optuna: Any, url: str, stale_after: int) -> Any:
    """The study's storage at ``url``, with heartbeats: running trials record that they
    are alive every ``HEARTBEAT_SECONDS`` (more often for a short ``stale_after``), and
    Optuna itself fails those silent for ``stale_after`` seconds before each new trial."""
    interval = max(1, min(HEARTBEAT_SECONDS, stale_after // 4))
    with warnings.catch_warnings():  # heartbeats are an "experimental" Optuna feature
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=interval,
                                          grace_period=stale_after)


def fail_stale_trials(study: Any, stale_after: int = STALE_AFTER) -> list[int]:
    """Mark the trials an interrupted search left ``RUNNING`` as failed; their numbers.

    A trial is stale when its last heartbeat is more than ``stale_after`` seconds old, or,
    for a trial that never beat one (started by a search without heartbeats, or by hand),
    when it started more than ``stale_after`` seconds ago. Trials other processes are
    running keep beating and are left alone. ``study``'s storage must have heartbeats
    (:func:`search` opens it so)."""
    optuna = _optuna()
    storage = study._storage  # Optuna has no public call to fail one trial
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if not running:
        return []
    silent = set(storage._get_stale_trial_ids(study._study_id))  # heartbeats too old
    now = datetime.datetime.now()  # Optuna stores local, naive start times
    failed = []
    for trial in running:
        never_beat = HEARTBEAT_ATTR not in trial.user_attrs and trial.datetime_start is not None \
            and (now - trial.datetime_start).total_seconds() > stale_after
        if trial._trial_id not in silent and not never_beat:
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "note",
                                        "interrupted: left running, marked failed")
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another process was faster
            continue
        failed.append(trial.number)
    return failed


def _finished(optuna: Any) -> tuple[Any, ...]:
    state = optuna.trial.TrialState
    return (state.COMPLETE, state.PRUNED, state.FAIL)


def _keys(space: Space) -> list[str]:
    keys = []
    stack = list(space.nodes)
    while stack:
        node = stack.pop()
        if node.kind == "when":
            stack.extend(node.children)
        else:
            keys.append(node.key)
    return keys


class _Objective:
    """One trial: draw, build, plan, deduplicate, train briefly, evaluate."""

    def __init__(self, space: Space, registry: Any, out: Path, metric: str, budget: int,
                 max_parameters: int | None, spec_dir: Path, study: Any,
                 log: Callable[[str], None]) -> None:
        self.space, self.registry, self.out, self.metric = space, registry, out, metric
        self.budget, self.max_parameters, self.spec_dir = budget, max_parameters, spec_dir
        self.study, self.log = study, log
        self.ran = 0

    def __call__(self, trial: Any) -> float:
        optuna = _optuna()
        trial.set_user_attr(HEARTBEAT_ATTR, True)  # judged by its heartbeat if interrupted
        self.ran += 1
        started = time.perf_counter()
        try:
            spec = self.space.build(self.space.draw(OptunaDrawer(trial)))
            plan = self.space.plans(spec)
        except SpecError as error:
            note = "invalid: " + "; ".join(p.message for p in error.problems)
            trial.set_user_attr("note", note)
            self.log(f"trial {trial.number}: {note}")
            raise optuna.TrialPruned(note) from None
        trial.set_user_attr("parameters", plan.total)
        if self.max_parameters is not None and plan.total > self.max_parameters:
            note = f"{plan.total:,} parameters > {self.max_parameters:,}"
            trial.set_user_attr("note", note)
            raise optuna.TrialPruned(note)
        digest = spec_hash(spec, self.registry)
        trial.set_user_attr("spec_hash", digest)
        for earlier in self.study.get_trials(deepcopy=False,
                                             states=(optuna.trial.TrialState.COMPLETE,)):
            if earlier.user_attrs.get("spec_hash") == digest and earlier.value is not None:
                trial.set_user_attr("duplicate_of", earlier.number)
                trial.set_user_attr("note", f"same spec as trial {earlier.number}")
                return float(earlier.value)
        trial.set_user_attr("spec", spec_to_dict(spec, self.registry))
        training = attrs.evolve(spec.training, max_updates=self.budget)
        briefly = attrs.evolve(spec, name=f"{spec.name}-trial-{trial.number}",
                               training=training)
        run_dir = self.out / "trials" / f"trial-{trial.number:04d}"
        from assembly.train.trainer import Trainer

        result = Trainer(briefly, run_dir, registry=self.registry, spec_dir=self.spec_dir,
                         progress=False, log=lambda line: None).fit()
        if self.metric not in result.dev:
            raise UserError(f"trial {trial.number}: the dev evaluation has no {self.metric!r} "
                            f"(got {', '.join(result.dev) or 'no dev set'})")
        value = float(result.dev[self.metric])
        trial.set_user_attr("dev", {k: float(v) for k, v in result.dev.items()})
        trial.set_user_attr("updates", result.updates)
        trial.set_user_attr("seconds", time.perf_counter() - started)
        self.log(f"trial {trial.number}: {self.metric} {value:.4g} ({plan.total:,} parameters, "
                 f"{result.updates} updates)")
        return value


def _spec_data(study: Any, trial: Any) -> dict[str, Any] | None:
    if "spec" in trial.user_attrs:
        return trial.user_attrs["spec"]
    original = trial.user_attrs.get("duplicate_of")
    if original is None:
        return None
    return study.trials[original].user_attrs.get("spec")


def _row(trial: Any) -> TrialRow:
    attrs_ = trial.user_attrs
    seconds = attrs_.get("seconds")
    if seconds is None and trial.datetime_start and trial.datetime_complete:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return TrialRow(trial.number, trial.state.name, trial.value, attrs_.get("parameters"),
                    seconds, dict(trial.params), attrs_.get("note", ""))


# -- reporting ---------------------------------------------------------------------------------
def _columns(rows: list[TrialRow]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row.params if k not in keys)
    return keys


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: list[TrialRow], metric: str) -> str:
    """Trials as an aligned table: number, state, metric, parameters, seconds, each
    drawn value, and the note."""
    keys = _columns(rows)
    header = ["trial", "state", metric, "parameters", "seconds", *keys, "note"]
    lines = [[str(r.number), r.state, _shown(r.value),
              f"{r.parameters:,}" if r.parameters is not None else "", _shown(r.seconds),
              *(_shown(r.params.get(k)) for k in keys), r.note] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(header)]
    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def write_csv(rows: list[TrialRow], path: Path) -> None:
    """The results table as CSV (one row per trial, one column per drawn value)."""
    keys = _columns(rows)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "state", "value", "parameters", "seconds", *keys, "note"])
        for r in rows:
            writer.writerow([r.number, r.state, "" if r.value is None else r.value,
                             "" if r.parameters is None else r.parameters,
                             "" if r.seconds is None else round(r.seconds, 3),
                             *(r.params.get(k, "") for k in keys), r.note])
    tmp.replace(path)


def plot_search(rows: list[TrialRow], metric: str, path: Path) -> None:
    """Left: the metric of every completed trial and the best so far; right: the metric
    against the planned parameter count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    done = [r for r in rows if r.state == "COMPLETE" and r.value is not None]
    higher = HIGHER_IS_BETTER.get(metric, True)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if done:
        numbers = [r.number for r in done]
        values = [float(r.value) for r in done]  # type: ignore[arg-type]
        best, best_so_far = -math.inf if higher else math.inf, []
        for value in values:
            best = max(best, value) if higher else min(best, value)
            best_so_far.append(best)
        left.plot(numbers, values, "o", label="trial")
        left.step(numbers, best_so_far, where="post", label="best so far")
        left.legend()
        sized = [(r.parameters, float(r.value)) for r in done if r.parameters]  # type: ignore[arg-type]
        if sized:
            right.scatter(*zip(*sized, strict=True))
            sizes = [size for size, _ in sized]
            if max(sizes) > 10 * min(sizes):
                right.set_xscale("log")
        left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("trial")
    left.set_ylabel(f"dev {metric}")
    right.set_xlabel("parameters")
    right.set_ylabel(f"dev {metric}")
    figure.suptitle(f"search: {len(done)} completed of {len(rows)} trials")
    figure.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)
