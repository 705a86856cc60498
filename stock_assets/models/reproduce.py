"""Recompute a stored prediction from its recorded inputs and compare bit for bit.

``stock-assets audit --reproduce TICKER DATE``: the feature row is recomputed by the code that
wrote it (`gold.assemble.assemble`, inputs read by `gold.daily_features.read_context`) from the
inputs read at the Delta versions stored on the row (`tables.FEATURE_PROVENANCE`), over the
same run start (OBV continues from the value stored before it); the registered model version
the prediction names is loaded from MLflow and scores the recomputed row. Equality is exact:
the same bits, or the first column that differs with both values.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import polars as pl

from stock_assets import tables
from stock_assets.lake import LakeIO
from stock_assets.models.audit import stored_prediction


@dataclass
class Reproduction:
    ticker: str
    day: dt.date
    model_version: str
    columns_compared: int
    first_difference: tuple[str, object, object] | None  # column, stored, recomputed

    @property
    def identical(self) -> bool:
        return self.first_difference is None

    def summary(self) -> str:
        head = (
            f"reproduce {self.ticker} {self.day} (model v{self.model_version}): "
            f"{self.columns_compared} feature columns and the prediction compared"
        )
        if self.identical:
            return f"{head}: bit-identical"
        column, stored, again = self.first_difference
        return f"{head}: first difference in {column}: stored {stored!r}, recomputed {again!r}"


def same_bits(a: object, b: object) -> bool:
    """Exact equality that treats two nulls (and two NaNs) as equal."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def first_difference(stored: dict, again: dict, columns: list[str]):
    for column in columns:
        if not same_bits(stored[column], again.get(column)):
            return column, stored[column], again.get(column)
    return None


def recompute_features(lake: LakeIO, row: dict) -> pl.DataFrame:
    """The feature rows of ``row``'s run start .. ``row``'s day, from the recorded versions."""
    from stock_assets.calendar import sessions_before
    from stock_assets.gold.assemble import LOOKBACK_SESSIONS, assemble
    from stock_assets.gold.daily_features import read_context

    start, day = row["computed_from"], row["date"]
    versions = {column: row[column] for column in tables.FEATURE_INPUTS}
    bars = lake.read_dates(
        tables.ADJUSTED_DAILY_BARS,
        sessions_before(start, LOOKBACK_SESSIONS),
        day,
        versions["adjusted_bars_version"],
    )
    context = read_context(lake, start, day, versions, row["obv_anchor_version"])
    return assemble(bars, start, day, context)


def reproduce(
    lake: LakeIO, registry, ticker: str, day: dt.date, role: str = "champion"
) -> Reproduction:
    """Recompute the stored ``role`` prediction of ``ticker`` on ``day`` and compare."""
    from stock_assets.gold.feature_set import SCHEMA
    from stock_assets.models.walk_forward import predict

    prediction = stored_prediction(lake, ticker, day, role)
    rows = lake.read_dates(
        tables.GOLD_DAILY_FEATURES, day, day, prediction["feature_table_version"]
    ).filter(pl.col("instrument") == prediction["instrument"])
    row = rows.row(0, named=True)
    again = recompute_features(lake, row).filter(
        (pl.col("instrument") == row["instrument"]) & (pl.col("date") == day)
    )
    if again.is_empty():
        raise LookupError(f"the recorded inputs give no feature row for {ticker} on {day}")
    columns = list(SCHEMA)
    difference = first_difference(row, again.row(0, named=True), columns)
    if difference is None:
        booster = registry.load_booster(prediction["model_version"])
        rescored = predict(booster, again)["prediction"].item()
        if not same_bits(prediction["prediction"], rescored):
            difference = ("prediction", prediction["prediction"], rescored)
    return Reproduction(ticker, day, prediction["model_version"], len(columns), difference)
