"""Adjusted bars in Qlib's binary day-frequency layout, for running Qlib beside the platform.

calendars/day.txt, instruments/all.txt, and per instrument features/<name>/<field>.day.bin: a
little-endian float32 array whose first element is the instrument's start index in the calendar.
A missing stock-day is NaN, as Qlib's own dump writes it. Qlib has no VWAP field here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from stock_assets.gold.bars import KEY

QLIB_FIELDS = ("open", "high", "low", "close", "volume")


def write_qlib_provider(root: Path, bars: pl.DataFrame) -> tuple[list[str], list[str]]:
    """Write ``bars`` (adjusted columns) under ``root``: ([first, last date], instruments)."""
    calendar = sorted(bars["date"].unique().to_list())
    position = {d: i for i, d in enumerate(calendar)}
    (root / "calendars").mkdir(parents=True)
    (root / "calendars" / "day.txt").write_text("".join(f"{d}\n" for d in calendar))
    lines = []
    for (instrument,), one in bars.sort(KEY).group_by("instrument", maintain_order=True):
        index = np.array([position[d] for d in one["date"].to_list()])
        first, last = int(index[0]), int(index[-1])
        lines.append(f"{instrument}\t{calendar[first]}\t{calendar[last]}\n")
        folder = root / "features" / instrument.lower()
        folder.mkdir(parents=True)
        for field in QLIB_FIELDS:
            values = np.full(last - first + 1, np.nan, dtype="<f4")
            values[index - first] = one[f"adj_{field}"].to_numpy()
            np.concatenate([[first], values]).astype("<f4").tofile(folder / f"{field}.day.bin")
    (root / "instruments").mkdir()
    (root / "instruments" / "all.txt").write_text("".join(lines))
    span = [str(calendar[0]), str(calendar[-1])]
    return span, sorted(bars["instrument"].unique().to_list())


def init_qlib_client(
    root: Path, kernels: int | None = None, storage: type | str | None = None
) -> None:
    """Point Qlib (a dev dependency) at ``root``: caches off, ``kernels`` workers (default one per
    core), optionally another feature storage class, and no experiment recorder.

    Qlib's recorder imports mlflow and, on mlflow 3, refuses its file store; neither the oracle
    tests nor the benchmarks use it, so the client is configured directly.
    """
    import logging
    import os

    from qlib.config import C
    from qlib.data.cache import H
    from qlib.data.data import register_all_wrappers
    from qlib.data.ops import register_all_ops

    H.clear()
    backend = {} if storage is None else {"backend": {"class": storage}}
    C.set(
        "client",
        provider_uri=str(root),
        region="us",
        expression_cache=None,
        dataset_cache=None,
        kernels=kernels or os.cpu_count(),
        logging_level=logging.WARNING,
        feature_provider={"class": "LocalFeatureProvider", "kwargs": backend},
    )
    register_all_ops(C)
    register_all_wrappers(C)
    C._registered = True
