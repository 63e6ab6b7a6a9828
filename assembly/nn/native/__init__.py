"""Native (C++) code of the framework, compiled on this machine the first time it is used.

What is native, each with a Python twin that stays the reference:

- ``loops.cpp``: the step loops of the teacher-forcing node
  (:mod:`assembly.nn.teacher_forcing_native`), also run one step at a time for decoding
  (:mod:`assembly.nn.decoder_step_native`), the decoding attention step
  (:mod:`assembly.nn.attention`) and the encoder LSTM layer node's loops
  (:mod:`assembly.nn.lstm_node`); why and what they do are in its header;
- ``dropout.cpp``: nn.Dropout's masks, bit for bit, from torch's own generator
  (:mod:`assembly.nn.dropout`).

They are built with torch's C++ extension machinery
(a C++ compiler and ninja; ``-march=native``, so the build is specific to this CPU) into
a cache directory, once per source, torch version and machine: about 25 s the first
time, then a load of a few milliseconds. Row loops run on torch's OpenMP threads
(``at::parallel_for``).

:func:`loops` returns the built module, or None where it cannot be had:
``ASSEMBLY_NATIVE=0`` in the environment, or the build failed (no compiler, say: then a
RuntimeWarning says why, once per process). The Python paths then run instead, with the
same results (to float rounding; the dropout masks exactly) and about 1.6× slower
training updates (benchmarks/teacher_forcing.py --native). The cache lives in
``$ASSEMBLY_CACHE``, else ``$XDG_CACHE_HOME/assembly``, else ``~/.cache/assembly``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import sys
import sysconfig
import warnings
from pathlib import Path
from types import ModuleType

SOURCES = tuple(Path(__file__).with_name(name) for name in ("loops.cpp", "dropout.cpp"))

# -fno-trapping-math lets the compiler if-convert exp_poly's clamps (so its loops
# vectorise); no -ffast-math: the attention masks rely on −inf.
# -fopenmp: at::parallel_for is OpenMP inside torch's headers and runs serially without it
# (the same libgomp as torch's is used: the soname is already loaded).
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
         "-fno-signed-zeros")
LINK_FLAGS = ("-fopenmp",)


def enabled() -> bool:
    """False when ``ASSEMBLY_NATIVE=0`` is set: never build or use native code."""
    return os.environ.get("ASSEMBLY_NATIVE", "1") != "0"


def cache_root() -> Path:
    if os.environ.get("ASSEMBLY_CACHE"):
        return Path(os.environ["ASSEMBLY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "assembly"


def _machine() -> str:
    """What ``-march=native`` depends on: the CPU's model and feature flags."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return "|".join([platform.machine(), fields.get("model name", ""), fields.get("flags", "")])


def build_key() -> str:
    """A hash of everything the built module depends on."""
    import torch

    digest = hashlib.sha256()
    for source in SOURCES:
        digest.update(source.read_bytes())
    for part in (*FLAGS, *LINK_FLAGS, torch.__version__, sys.version, _machine()):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def _find_ninja() -> None:
    """torch runs ``ninja`` from PATH; the one pip installed with this package lives in
    this interpreter's scripts folder, which is not on PATH in an unactivated venv."""
    if shutil.which("ninja") is None:
        scripts = sysconfig.get_path("scripts")
        os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])


def _cached_sources(directory: Path) -> list[str]:
    """The sources, copied into the build directory once: ninja's build file names its
    sources' paths, so building from the checkout would rebuild (~25 s) whenever the same
    code is used from another place (a fresh clone, another venv)."""
    paths = []
    for source in SOURCES:
        target = directory / source.name
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)
        paths.append(str(target))
    return paths


@functools.cache
def loops() -> ModuleType | None:
    """The built module (``forward_steps`` and ``backward_steps`` of the teacher-forcing
    node, ``attend``, ``lstm_layer_forward`` and ``lstm_layer_backward``,
    ``dropout_mask_``), or None."""
    if not enabled():
        return None
    try:
        from torch.utils.cpp_extension import load

        _find_ninja()
        key = build_key()
        directory = cache_root() / "native" / f"loops-{key}"
        directory.mkdir(parents=True, exist_ok=True)
        name = f"assembly_loops_{key}"
        if not (directory / f"{name}.so").exists():
            print(f"assembly: building the native code (once, ~25 s) "
                  f"in {directory}", file=sys.stderr, flush=True)
        return load(name=name, sources=_cached_sources(directory), extra_cflags=list(FLAGS),
                    extra_ldflags=list(LINK_FLAGS), build_directory=str(directory),
                    verbose=False)
    except Exception as error:  # no compiler, no ninja, a failed build: run the Python node
        reason = " ".join(str(error).split())[:300]
        warnings.warn(f"assembly: the native step loops could not be built "
                      f"({type(error).__name__}: {reason}); the Python loops run instead "
                      f"(same results, about 1.6x slower training). Set ASSEMBLY_NATIVE=0 "
                      f"to skip the attempt.", RuntimeWarning, stacklevel=2)
        return None
