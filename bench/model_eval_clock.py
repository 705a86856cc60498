"""Wall-clock sections and the machine's load, for `model_evaluation.py` (and `scaling.py`)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator


class Clock:
    """Named wall-clock sections (seconds), accumulated."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def total(self, *names: str) -> float:
        return sum(self.seconds.get(n, 0.0) for n in names)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"
