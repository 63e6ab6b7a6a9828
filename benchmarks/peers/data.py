"""Data for the peer benchmark: the synthetic "reverse" task as plain text files.

Source: 3-20 symbols (length uniform), each symbol uniform over "a".."t",
whitespace-separated; target: the same tokens reversed.  Splits are drawn from
``random.Random(seed)`` (train), ``seed + 1`` (dev) and ``seed + 2`` (test).

When the project package provides ``assembly.data.tasks.generate_pairs`` it is
used, so that the peers and our framework see byte-identical data; otherwise the
stand-alone generator below (same semantics) is used.  Only the standard library
is needed, so this file runs under any Python >= 3.11.

Usage: ``python benchmarks/peers/data.py OUT_DIR [--seed 1]``
"""

from __future__ import annotations

import argparse
import hashlib
import random
import string
from collections.abc import Callable
from pathlib import Path

SPLITS: dict[str, tuple[int, int]] = {
    # split: (number of pairs, offset added to the seed)
    "train": (20_000, 0),
    "dev": (500, 1),
    "test": (1_000, 2),
}

Pairs = list[tuple[list[str], list[str]]]


def builtin_generate_pairs(
    task: str,
    count: int,
    seed: int,
    min_length: int = 3,
    max_length: int = 20,
    symbols: int = 20,
) -> Pairs:
    """Stand-alone twin of ``assembly.data.tasks.generate_pairs`` (reverse task only).

    For each pair: ``length = rng.randint(min_length, max_length)``, then ``length``
    draws of ``rng.choice(vocabulary)``; the target is the reversed source.
    """
    if task != "reverse":
        raise ValueError(f"builtin generator only knows the 'reverse' task, not {task!r}")
    if not 1 <= symbols <= 26:
        raise ValueError("symbols must be between 1 and 26")
    if not 1 <= min_length <= max_length:
        raise ValueError("need 1 <= min_length <= max_length")
    vocabulary = list(string.ascii_lowercase[:symbols])
    rng = random.Random(seed)
    pairs: Pairs = []
    for _ in range(count):
        length = rng.randint(min_length, max_length)
        source = [rng.choice(vocabulary) for _ in range(length)]
        pairs.append((source, source[::-1]))
    return pairs


def pick_generator() -> tuple[Callable[..., Pairs], str]:
    """Return (generate_pairs, where it came from): the package's if importable."""
    try:
        from assembly.data.tasks import generate_pairs  # type: ignore[import-not-found]
    except ImportError:
        return builtin_generate_pairs, "benchmarks/peers/data.py:builtin_generate_pairs"
    return generate_pairs, "assembly.data.tasks.generate_pairs"


def write_data(folder: str | Path, seed: int = 1) -> dict[str, object]:
    """Write ``{train,dev,test}.{src,tgt}`` into ``folder``; return paths and checksums.

    The returned dict maps ``"<split>.<side>"`` to the file path, plus
    ``"generator"`` (which generate_pairs was used) and ``"md5"`` (per file).
    """
    generate_pairs, origin = pick_generator()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info: dict[str, object] = {"generator": origin, "seed": seed}
    digests: dict[str, str] = {}
    for split, (count, offset) in SPLITS.items():
        pairs = generate_pairs("reverse", count, seed + offset)
        for side, index in (("src", 0), ("tgt", 1)):
            text = "".join(" ".join(pair[index]) + "\n" for pair in pairs)
            path = folder / f"{split}.{side}"
            path.write_text(text, encoding="utf-8")
            info[f"{split}.{side}"] = str(path)
            digests[path.name] = hashlib.md5(text.encode("utf-8")).hexdigest()
    info["md5"] = digests
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="output folder")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    info = write_data(args.folder, seed=args.seed)
    print(f"wrote {args.folder} with {info['generator']} (seed {args.seed})")


if __name__ == "__main__":
    main()
