"""Native (C++) code of the framework, compiled on this machine the first time it is used.

Only the teacher-forcing node's step loops are native (``teacher_forcing.cpp``, why and
what they do are in its header). They are built with torch's C++ extension machinery
(a C++ compiler and ninja; ``-march=native``, so the build is specific to this CPU) into
a cache directory, once per source, torch version and machine: about 20 s the first
time, then a load of a few milliseconds.

:func:`teacher_forcing` returns the built module, or None where it cannot be had:
``ASSEMBLY_NATIVE=0`` in the environment, or the build failed (no compiler, say: then a
RuntimeWarning says why, once per process). The Python node then runs instead, with the
same results and about 1.3× slower training. The cache lives in ``$ASSEMBLY_CACHE``,
else ``$XDG_CACHE_HOME/assembly``, else ``~/.cache/assembly``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import warnings
from pathlib import Path
from types import ModuleType

SOURCE = Path(__file__).with_name("teacher_forcing.cpp")

# -fno-trapping-math lets the compiler if-convert exp_poly's clamps (so its loops
# vectorise); no -ffast-math: the attention masks rely on −inf.
FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math",
         "-fno-signed-zeros")


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

    digest = hashlib.sha256(SOURCE.read_bytes())
    for part in (*FLAGS, torch.__version__, sys.version, _machine()):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


@functools.cache
def teacher_forcing() -> ModuleType | None:
    """The built ``teacher_forcing.cpp`` (``forward_steps``, ``backward_steps``), or None."""
    if not enabled():
        return None
    try:
        from torch.utils.cpp_extension import load

        key = build_key()
        directory = cache_root() / "native" / f"teacher_forcing-{key}"
        directory.mkdir(parents=True, exist_ok=True)
        name = f"assembly_teacher_forcing_{key}"
        if not (directory / f"{name}.so").exists():
            print(f"assembly: building the native teacher-forcing loops (once, ~20 s) "
                  f"in {directory}", file=sys.stderr, flush=True)
        return load(name=name, sources=[str(SOURCE)], extra_cflags=list(FLAGS),
                    build_directory=str(directory), verbose=False)
    except Exception as error:  # no compiler, no ninja, a failed build: run the Python node
        reason = " ".join(str(error).split())[:300]
        warnings.warn(f"assembly: the native teacher-forcing loops could not be built "
                      f"({type(error).__name__}: {reason}); the Python node runs instead "
                      f"(same results, about 1.3x slower training). Set ASSEMBLY_NATIVE=0 "
                      f"to skip the attempt.", RuntimeWarning, stacklevel=2)
        return None
