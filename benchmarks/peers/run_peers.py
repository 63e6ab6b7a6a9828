"""Train and decode the peer toolkits (OpenNMT-py 3.0.4, JoeyNMT 2.3.0) on the reverse task.

Usage (after ``bash benchmarks/peers/setup.sh``)::

    python benchmarks/peers/run_peers.py --out benchmarks/results/peers.json \
        [--updates 626] [--only opennmt|joeynmt] [--repeats 5] [--seed 1] [--greedy-only]

For each peer: write the data, render the config template from ``configs/``,
train for ``--updates`` updates in the peer's own virtual environment, decode the
1,000 test sentences greedily and with beam 5 (batch 500 sentences, ``--repeats``
runs each, median kept), score the greedy output, and collect everything in a
JSON object ``{peer: {...}}``.  See README.md beside this file for what each
number means.

``--seed`` is the TRAINING seed (initialisation, dropout, batch order: OpenNMT-py's
``seed:``, JoeyNMT's ``random_seed:`` plus ``set_seed`` before its CLI); the data are
always ``write_data(seed=1)``, identical for every training seed.  ``--greedy-only``
(for accuracy runs, e.g. ``benchmarks/seeds.py --peers``) decodes once, greedily, no
beam and no repeats, so a run costs the training plus one greedy decode.

Only the standard library is needed here; the peers run in their own venvs.
A later combined benchmark can reuse ``run_peer``, ``write_data``,
``exact_match`` and ``token_accuracy``::

    sys.path.insert(0, "benchmarks/peers"); import run_peers
    row = run_peers.run_peer("opennmt", Path("benchmarks/peers/work/run"), 626)
    row = run_peers.run_peer("joeynmt", workdir, 626, seed=3, greedy_only=True)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
CONFIGS = HERE / "configs"
DEFAULT_WORKDIR = WORK / "run"
PEERS = ("opennmt", "joeynmt")
VERSIONS = {"opennmt": "OpenNMT-py 3.0.4", "joeynmt": "JoeyNMT 2.3.0"}
LOG_EVERY = 50  # updates per throughput line in both configs
DECODE_BATCH = 500  # sentences, fixed in the configs / command lines
MAX_OUTPUT_LENGTH = 40  # both peers; targets are at most 20 tokens + EOS
MARKER = ".peer-benchmark-run"
# JoeyNMT 2.3.0 seeds torch only when predicting, not in `train` (model init and
# dropout then differ run to run); seed torch/numpy/random first, then run its CLI.
# Its config's `random_seed` (the same training seed) only orders the batches.
JOEY_SEEDED_MAIN = (
    "import sys; from joeynmt.helpers import set_seed; set_seed({seed}); "
    "from joeynmt.__main__ import main; sys.argv[0] = 'joeynmt'; main()"
)


def _load_data_module():
    """Import data.py beside this file under a unique name (no sys.path games)."""
    spec = importlib.util.spec_from_file_location("peers_data", HERE / "data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_data = _load_data_module()
write_data = _data.write_data


class SetupError(RuntimeError):
    """A peer's virtual environment is missing: setup.sh has not been run."""


class PeerRunError(RuntimeError):
    """A peer command failed or its log could not be parsed."""


# --------------------------------------------------------------------------- metrics


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of sentences whose token sequence equals the reference exactly."""
    _check_same_length(hypotheses, references)
    hits = sum(h.split() == r.split() for h, r in zip(hypotheses, references, strict=True))
    return hits / len(references)


def token_accuracy(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Position-wise token accuracy: sum of matches over sum of max(len(hyp), len(ref)).

    Position i counts as correct when hyp[i] == ref[i]; the denominator takes the
    longer of the two sequences, so missing and surplus tokens are both errors.
    EOS is not counted.
    """
    _check_same_length(hypotheses, references)
    correct = total = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        h, r = hyp.split(), ref.split()
        correct += sum(a == b for a, b in zip(h, r, strict=False))
        total += max(len(h), len(r))
    return correct / total if total else 0.0


def _check_same_length(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references) or not references:
        raise PeerRunError(f"{len(hypotheses)} hypotheses for {len(references)} references")


def steady_state_rate(rates: Sequence[float]) -> float:
    """Median of the per-interval token rates, first interval dropped when >1.

    Every logged interval covers the same number of updates (50 batches of 64
    sentences).  The first interval holds start-up work (data loading, bucketing,
    allocator warm-up) and is dropped.  The median, rather than total tokens /
    total time, keeps one interval slowed down by another process on a shared
    machine from dragging the figure; ``overall_rate`` gives the other reading.
    """
    if not rates:
        raise PeerRunError("no throughput lines found in the training log")
    kept = list(rates[1:]) if len(rates) > 1 else list(rates)
    return statistics.median(kept)


def overall_rate(rates: Sequence[float]) -> float:
    """Harmonic mean of the interval rates (first dropped): total tokens / total time.

    Exact when every interval carries the same number of target tokens, which
    holds closely here (50 batches of 64 i.i.d. sentences per interval).
    """
    if not rates:
        raise PeerRunError("no throughput lines found in the training log")
    kept = list(rates[1:]) if len(rates) > 1 else list(rates)
    return statistics.harmonic_mean(kept)


# --------------------------------------------------------------------------- plumbing


def venv_dir(name: str) -> Path:
    """The peer's venv; raise SetupError with the fix when it is missing."""
    venv = WORK / f"venv-{name}"
    if not (venv / ".installed").is_file() or not (venv / "bin" / "python").exists():
        raise SetupError(
            f"{VERSIONS[name]} is not installed: {venv} is missing or incomplete.\n"
            f"Run `bash {HERE.relative_to(HERE.parents[1])}/setup.sh` first "
            "(creates both venvs under benchmarks/peers/work/)."
        )
    return venv


PEER_THREADS: int | None = None  # torch threads of the peers' runs (None: torch's default)


def _peer_env(name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # keep the peer's venv clean of our package
    if PEER_THREADS:  # torch reads these at start-up for its intra-op thread pool
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(PEER_THREADS)
    env["PYTHONUNBUFFERED"] = "1"
    if name == "opennmt":
        # torch >= 2.6 defaults torch.load to weights_only=True, which OpenNMT-py 3.0.4
        # checkpoints (pickled options) do not satisfy.
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    return env


def _run(
    cmd: Sequence[str | Path],
    *,
    log: Path,
    env: dict[str, str],
    cwd: Path,
    stdin: Path | None = None,
    stdout: Path | None = None,
) -> float:
    """Run ``cmd``; stderr (and stdout unless redirected) go to ``log``. Return wall seconds."""
    args = [str(c) for c in cmd]
    with log.open("w", encoding="utf-8") as log_file:
        out_file = stdout.open("w", encoding="utf-8") if stdout else log_file
        in_file = stdin.open("r", encoding="utf-8") if stdin else subprocess.DEVNULL
        try:
            start = time.perf_counter()
            proc = subprocess.run(
                args,
                cwd=cwd,
                env=env,
                stdin=in_file,
                stdout=out_file,
                stderr=log_file,
                check=False,
            )
            wall = time.perf_counter() - start
        finally:
            if stdout:
                out_file.close()
            if stdin:
                in_file.close()
    if proc.returncode != 0:
        tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-25:])
        raise PeerRunError(f"command failed ({proc.returncode}): {' '.join(args)}\n{tail}")
    return wall


def _render(template: str, target: Path, **values: object) -> Path:
    text = Template((CONFIGS / template).read_text(encoding="utf-8")).substitute(
        {k: str(v) for k, v in values.items()}
    )
    target.write_text(text, encoding="utf-8")
    return target


def _search(pattern: str, text: str, what: str) -> re.Match[str]:
    match = re.search(pattern, text)
    if match is None:
        raise PeerRunError(f"could not find {what} in the log")
    return match


def _fresh_dir(folder: Path) -> Path:
    """Empty ``folder`` for a new run; refuse to delete a folder we did not create."""
    if folder.exists():
        if not (folder / MARKER).exists():
            raise PeerRunError(f"{folder} exists and was not made by run_peers.py; move it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("scratch folder of benchmarks/peers/run_peers.py\n")
    return folder


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _median_run(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """Median (decode seconds, wall seconds) over repeated decoding runs."""
    return (
        statistics.median(r[0] for r in runs),
        statistics.median(r[1] for r in runs),
    )


# --------------------------------------------------------------------------- OpenNMT-py


def _opennmt(
    run: Path, data: Path, updates: int, repeats: int, seed: int, beams: tuple[int, ...]
) -> dict[str, object]:
    venv = venv_dir("opennmt")
    env = _peer_env("opennmt")
    config = _render(
        "opennmt.yaml",
        run / "train.yaml",
        data=data,
        run=run,
        updates=updates,
        valid_steps=updates + 1_000_000,
        seed=seed,
    )
    _run(
        [venv / "bin/onmt_build_vocab", "-config", config, "-n_sample", "-1"],
        log=run / "build_vocab.out",
        env=env,
        cwd=run,
    )
    train_wall = _run(
        [venv / "bin/onmt_train", "-config", config], log=run / "train.out", env=env, cwd=run
    )
    log = (run / "train.out").read_text(encoding="utf-8", errors="replace")
    parameters = int(_search(r"\* number of parameters: (\d+)", log, "parameter count")[1])
    # "Step 100/  626; ... bsz:  774/ 838/64; 11430/12375 tok/s; ..." -> src/tgt rates
    rates = [float(m[2]) for m in re.finditer(r"Step\s+\d+/\s*\d+;.*?(\d+)/\s*(\d+) tok/s;", log)]
    checkpoints = sorted(run.glob("model_step_*.pt"), key=lambda p: p.stat().st_mtime)
    if not checkpoints:
        raise PeerRunError("onmt_train wrote no checkpoint")
    model = checkpoints[-1]

    def decode(beam: int, index: int) -> tuple[float, float, Path]:
        hyp = run / f"beam{beam}.{index}.hyp"
        out = run / f"translate.beam{beam}.{index}.out"
        wall = _run(
            [
                venv / "bin/onmt_translate",
                "-model",
                model,
                "-src",
                data / "test.src",
                "-output",
                hyp,
                "-batch_size",
                DECODE_BATCH,
                "-batch_type",
                "sents",
                "-beam_size",
                beam,
                "-length_penalty",
                "none",
                "-max_length",
                MAX_OUTPUT_LENGTH,
                "-gpu",
                "-1",
                "-report_time",
            ],
            log=out,
            env=env,
            cwd=run,
        )
        text = out.read_text(encoding="utf-8", errors="replace")
        # The log rounds the loop time to 0.1 s; recover it precisely from the
        # logged rate: seconds = predicted tokens / (predicted tokens per second).
        rate = float(_search(r"Tokens per second: ([\d.]+)", text, "decode rate")[1])
        tokens = sum(len(line.split()) for line in _read_lines(hyp))
        if rate > 0 and tokens > 0:
            seconds = tokens / rate
        else:
            seconds = float(_search(r"Total translation time \(s\): ([\d.]+)", text, "time")[1])
        return seconds, wall, hyp

    return _decode_and_score(
        "opennmt",
        decode,
        data,
        repeats,
        parameters,
        rates,
        train_wall,
        updates,
        beams,
        how=(
            "train_tokens_per_s: median of onmt_train's per-50-update target "
            "'tok/s' log figures (non-padding target tokens, EOS included; no validation "
            "corpus configured), first interval dropped as warm-up "
            "(train_tokens_per_s_overall: their harmonic mean, i.e. tokens / time). "
            "Decoding: loop time "
            "logged by onmt_translate -report_time (excludes model loading; recovered "
            "as predicted tokens / logged 'Tokens per second'), batch 500 sentences, "
            "median of repeats; beam 5 without length penalty; max length 40. "
            "Accuracy on greedy output."
        ),
    )


# --------------------------------------------------------------------------- JoeyNMT


def _joeynmt(
    run: Path, data: Path, updates: int, repeats: int, seed: int, beams: tuple[int, ...]
) -> dict[str, object]:
    venv = venv_dir("joeynmt")
    env = _peer_env("joeynmt")
    validation_freq = (updates // LOG_EVERY + 1) * LOG_EVERY  # > updates: never validates
    common = {
        "data": data,
        "run": run,
        "updates": updates,
        "validation_freq": validation_freq,
        "seed": seed,
    }
    config = _render(
        "joeynmt.yaml",
        run / "train.yaml",
        load_model=run / "model" / "latest.ckpt",
        beam_size=1,
        **common,
    )
    seeded_main = JOEY_SEEDED_MAIN.format(seed=seed)
    train_wall = _run(
        [venv / "bin/python", "-c", seeded_main, "train", config, "--skip-test"],
        log=run / "train.out",
        env=env,
        cwd=run,
    )
    log = (run / "train.out").read_text(encoding="utf-8", errors="replace")
    parameters = int(_search(r"Total params: (\d+)", log, "parameter count")[1])
    rates = [float(m[2]) for m in re.finditer(r"Step:\s+(\d+),.*?Tokens per Sec:\s+([\d.]+)", log)]
    model = (run / "model" / "latest.ckpt").resolve()
    if not model.is_file():
        raise PeerRunError("joeynmt train wrote no checkpoint")
    test_configs = {
        beam: _render(
            "joeynmt.yaml",
            run / f"test.beam{beam}.yaml",
            load_model=model,
            beam_size=beam,
            **common,
        )
        for beam in beams
    }

    def decode(beam: int, index: int) -> tuple[float, float, Path]:
        hyp = run / f"beam{beam}.{index}.hyp"
        out = run / f"translate.beam{beam}.{index}.out"
        # `translate -o FILE` crashes in 2.3.0 (args.n_best); hypotheses go to stdout.
        wall = _run(
            [venv / "bin/python", "-m", "joeynmt", "translate", test_configs[beam]],
            log=out,
            env=env,
            cwd=run,
            stdin=data / "test.src",
            stdout=hyp,
        )
        text = out.read_text(encoding="utf-8", errors="replace")
        seconds = float(_search(r"Generation took ([\d.]+)\[sec\]", text, "decode time")[1])
        return seconds, wall, hyp

    return _decode_and_score(
        "joeynmt",
        decode,
        data,
        repeats,
        parameters,
        rates,
        train_wall,
        updates,
        beams,
        how=(
            "train_tokens_per_s: median of JoeyNMT's per-50-update 'Tokens per "
            "Sec' log figures (non-padding target tokens, EOS included; its timer "
            "excludes validation, and validation_freq > updates so none runs), first "
            "interval dropped as warm-up (train_tokens_per_s_overall: their harmonic "
            "mean, i.e. tokens / time). Decoding: 'Generation took' logged by "
            "`joeynmt translate` on stdin (excludes model and vocabulary loading), "
            "batch 500 sentences, median of repeats; beam 5 with beam_alpha -1 (no "
            "length penalty); max output length 40. Accuracy on greedy output."
        ),
    )


# --------------------------------------------------------------------------- common


def _decode_and_score(
    name, decode, data, repeats, parameters, rates, train_wall, updates, beams, how
) -> dict[str, object]:
    references = _read_lines(data / "test.tgt")
    # Fewer than LOG_EVERY updates (a smoke test) log no throughput line: no rate then.
    logged = bool(rates) or updates >= LOG_EVERY
    result: dict[str, object] = {
        "toolkit": VERSIONS[name],
        "parameters": parameters,
        "updates": updates,
        "train_tokens_per_s": round(steady_state_rate(rates), 1) if logged else None,
        "train_tokens_per_s_overall": round(overall_rate(rates), 1) if logged else None,
        "train_interval_tokens_per_s": rates,
        "train_wall_s": round(train_wall, 2),
    }
    for beam in beams:
        key = "greedy" if beam == 1 else f"beam{beam}"
        runs, first_hyp = [], None
        for index in range(repeats):
            seconds, wall, hyp = decode(beam, index)
            runs.append((seconds, wall))
            first_hyp = first_hyp or hyp
        seconds, wall = _median_run(runs)
        hypotheses = _read_lines(first_hyp)
        result[f"{key}_sent_per_s"] = round(len(references) / seconds, 1)
        result[f"{key}_decode_s"] = round(seconds, 4)
        result[f"{key}_wall_s"] = round(wall, 2)
        result[f"{key}_runs_decode_s"] = [round(r[0], 4) for r in runs]
        if beam == 1:
            # a fingerprint of the greedy output: same seed, same output? (reproducibility)
            digest = hashlib.md5(first_hyp.read_bytes()).hexdigest()
            result["greedy_output_md5"] = digest
            result["exact_match"] = round(exact_match(hypotheses, references), 4)
            result["token_accuracy"] = round(token_accuracy(hypotheses, references), 4)
        else:
            result[f"{key}_exact_match"] = round(exact_match(hypotheses, references), 4)
    if tuple(beams) == (1,):
        how += " Greedy-only run (accuracy): one greedy decode, no beam 5, no repeats."
    result["how_measured"] = how
    return result


def run_peer(
    name: str,
    workdir: str | Path,
    updates: int,
    repeats: int = 5,
    *,
    seed: int = 1,
    greedy_only: bool = False,
) -> dict[str, object]:
    """Train and decode one peer under ``workdir/<name>``; return its result row.

    ``workdir/data`` receives the data (rewritten each call, deterministic: always
    ``write_data(seed=1)``, whatever ``seed`` is); ``workdir/<name>`` is emptied first
    (only if an earlier run made it).  ``seed`` is the training seed (initialisation,
    dropout, batch order).  ``greedy_only``: decode once, greedily (no beam 5, no
    repeats; the row then has no ``beam5_*`` keys), for accuracy runs.
    Raises SetupError when setup.sh has not been run.
    """
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose from {PEERS}")
    if updates < 1 or repeats < 1:
        raise ValueError("updates and repeats must be positive")
    venv_dir(name)  # fail fast, before writing anything
    workdir = Path(workdir).resolve()
    data_info = write_data(workdir / "data", seed=1)  # the DATA seed: fixed
    run = _fresh_dir(workdir / name)
    load_before = os.getloadavg()[0]
    runner = _opennmt if name == "opennmt" else _joeynmt
    beams = (1,) if greedy_only else (1, 5)
    result = runner(run, workdir / "data", updates, 1 if greedy_only else repeats, seed, beams)
    result["seed"] = seed
    result["greedy_only"] = greedy_only
    result["data_generator"] = data_info["generator"]
    result["data_md5"] = data_info["md5"]
    result["load_average_before"] = round(load_before, 2)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    result["workdir"] = str(run)
    result["machine"] = machine_info()
    return result


def machine_info() -> dict[str, object]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def format_table(results: dict[str, dict[str, object]]) -> str:
    header = (
        f"{'peer':<8} {'params':>8} {'updates':>7} {'train tok/s':>11} "
        f"{'greedy sent/s':>13} {'beam5 sent/s':>12} {'exact':>6} {'tok acc':>7}"
    )
    rows = [header, "-" * len(header)]
    for name, r in results.items():
        beam5 = r.get("beam5_sent_per_s")  # absent in --greedy-only rows
        beam5_text = f"{beam5:>12.0f}" if beam5 is not None else f"{'-':>12}"
        train = r["train_tokens_per_s"]  # None below LOG_EVERY updates
        train_text = f"{train:>11.0f}" if train is not None else f"{'-':>11}"
        rows.append(
            f"{name:<8} {r['parameters']:>8} {r['updates']:>7} {train_text} "
            f"{r['greedy_sent_per_s']:>13.0f} {beam5_text} "
            f"{r['exact_match']:>6.3f} {r['token_accuracy']:>7.3f}"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark OpenNMT-py and JoeyNMT.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/peers.json"))
    parser.add_argument("--updates", type=int, default=626)
    parser.add_argument(
        "--only", choices=PEERS, action="append", help="run only this peer (repeatable)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="decoding runs per setting")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument(
        "--seed", type=int, default=1, help="training seed (the data stay write_data(seed=1))"
    )
    parser.add_argument(
        "--greedy-only",
        action="store_true",
        help="accuracy run: decode once, greedily (no beam 5, no repeats)",
    )
    args = parser.parse_args(argv)
    names = args.only or list(PEERS)
    try:
        for name in names:
            venv_dir(name)
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, object]] = {}
    for name in names:
        print(
            f"[run_peers] {VERSIONS[name]}: training {args.updates} updates, seed {args.seed} ...",
            flush=True,
        )
        results[name] = run_peer(
            name,
            args.workdir,
            args.updates,
            args.repeats,
            seed=args.seed,
            greedy_only=args.greedy_only,
        )
        print(f"[run_peers] {name}: {json.dumps(results[name], indent=None)[:300]} ...", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists():  # keep the rows of peers not run this time (--only)
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        results = {**{k: v for k, v in previous.items() if k not in results}, **results}
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(format_table(results))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
