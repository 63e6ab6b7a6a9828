"""A one-time warning when training on several threads slows down sharply.

Torch's intra-op threads spin while they wait for one another. When another process
takes one of the cores, a small model on several threads trains slower than on one
(the reference model beside one busy process: 2.2× slower on 2 threads than on 1,
``benchmarks/threads.py --busy``), and the run gives no sign of why. The trainer cannot
tell contention from a harder mix of batches, so it only reports what it sees (an
interval far below the fastest so far), once, with the remedy. It changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

SLOWDOWN = 3.0  # an interval this many times slower than the fastest so far is reported


class SlowdownWatch:
    """Fed every logged interval's training rate; warns once through ``log`` when one is
    :data:`SLOWDOWN` times below the fastest interval so far and training runs on more than
    one torch thread (on one thread there is no spinning to blame)."""

    def __init__(self, threads: int, log: Callable[[str], None]) -> None:
        self.threads = threads
        self.log = log
        self.fastest = 0.0
        self.warned = False

    def observe(self, rate: float, step: int) -> None:
        """``rate``: target tokens (steps) per second over the interval ending at ``step``."""
        if self.threads <= 1 or self.warned or rate <= 0:
            return
        self.fastest = max(self.fastest, rate)
        if rate * SLOWDOWN < self.fastest:
            self.warned = True
            self.log(f"warning: training slowed to {rate:,.0f} tokens/s at update {step}, "
                     f"{self.fastest / rate:.1f}x below its fastest interval "
                     f"({self.fastest:,.0f} tokens/s), on {self.threads} torch threads. If "
                     f"other processes use these cores, torch's waiting threads spin: "
                     f"--threads 1 (training.threads = 1) is then faster.")
