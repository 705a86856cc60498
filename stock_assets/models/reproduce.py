"""Recompute a stored prediction from its recorded inputs and compare bit for bit.

``stock-assets audit --reproduce TICKER DATE`` walks the audit chain (`models.audit`) bottom
up, every link read at the version recorded on the row above it: each silver bar of the
instrument's lookback is recomputed from the bronze rows at its ``bronze_version`` (the latest
published record of the ticker-day wins, as silver does), each adjusted bar from that silver bar
and the corporate actions at the row's ``corporate_actions_version``; the feature row by the
code that wrote it (`gold.assemble.assemble`, inputs read by `gold.daily_features.read_context`)
from the inputs at the versions stored on it (`tables.FEATURE_PROVENANCE`), over the same run
start (OBV continues from the value stored before it); the registered model version the
prediction names, loaded from MLflow, scores the recomputed row. Equality is exact: the same
bits, or the first difference with both values.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import polars as pl

from stock_assets import tables
from stock_assets.lake import LakeIO
from stock_assets.models.audit import (
    SILVER_KEYS,
    PredictionChain,
    prediction_chain,
    read_recorded,
)

ADJUSTED_KEYS = ["instrument", "date"]


@dataclass
class Reproduction:
    ticker: str
    day: dt.date
    model_version: str
    columns_compared: int
    first_difference: tuple[str, object, object] | None  # column, stored, recomputed
    links_compared: dict[str, int] = field(default_factory=dict)  # table -> rows recomputed

    @property
    def identical(self) -> bool:
        return self.first_difference is None

    def summary(self) -> str:
        links = "".join(f"{rows} {table} rows, " for table, rows in self.links_compared.items())
        head = (
            f"reproduce {self.ticker} {self.day} (model v{self.model_version}): {links}"
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


def first_row_difference(
    table: tables.Table, stored: pl.DataFrame, again: pl.DataFrame, keys: list[str]
) -> tuple[str, object, object] | None:
    """The first cell where ``again`` differs from ``stored`` (same keys, every column)."""
    columns = [c for c in stored.columns if c not in keys]
    joined = stored.join(again, on=keys, how="left", suffix="__again", nulls_equal=True)
    for row in joined.sort(keys).iter_rows(named=True):
        recomputed = {c: row.get(f"{c}__again") for c in columns}
        difference = first_difference(row, recomputed, columns)
        if difference is not None:
            column, was, now = difference
            where = " ".join(str(row[k]) for k in keys)
            return f"{table.path} {where} {column}", was, now
    return None


def recompute_silver(lake: LakeIO, chain: PredictionChain) -> pl.DataFrame:
    """The chain's silver bars again, from the bronze rows at each one's ``bronze_version``."""
    from stock_assets.silver.daily_bars import latest_bar_per_ticker_day

    parts = []
    for (version,), group in chain.silver_bars.group_by("bronze_version", maintain_order=True):
        days = group.select("ticker", "date")
        first, last = days["date"].min(), days["date"].max()
        recorded_by = f"silver/daily_bars ({chain.prediction['instrument']})"
        bronze = read_recorded(
            lake, tables.BRONZE_MARKET_BARS, first, last, version, recorded_by
        ).join(days, on=["ticker", "date"], how="semi")
        parts.append(latest_bar_per_ticker_day(bronze, version))
    return pl.concat(parts)


def recompute_adjusted(lake: LakeIO, chain: PredictionChain) -> pl.DataFrame:
    """The chain's adjusted bars again, from its silver bars and the corporate actions at each
    row's ``corporate_actions_version``."""
    from stock_assets.pit import adjust_bars
    from stock_assets.silver.adjusted_daily_bars import with_versions
    from stock_assets.silver.corporate_actions import read_events

    versions = list(tables.ADJUSTED_BAR_PROVENANCE)
    parts = []
    for keys, group in chain.adjusted_bars.group_by(versions, maintain_order=True):
        recorded = dict(zip(versions, keys, strict=True))
        events = read_events(lake, recorded["corporate_actions_version"])
        bars = chain.silver_bars.join(group.select("ticker", "date"), on=["ticker", "date"])
        parts.append(with_versions(adjust_bars(bars, events), recorded))
    return pl.concat(parts)


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

    chain = prediction_chain(lake, registry, ticker, day, role)
    prediction = chain.prediction
    links = [  # bottom up: the first link that differs is the one reported
        (tables.DAILY_BARS, chain.silver_bars, recompute_silver, SILVER_KEYS),
        (tables.ADJUSTED_DAILY_BARS, chain.adjusted_bars, recompute_adjusted, ADJUSTED_KEYS),
    ]
    difference, compared = None, {}
    for table, stored, recompute, keys in links:
        compared[table.path] = stored.height
        difference = first_row_difference(table, stored, recompute(lake, chain), keys)
        if difference is not None:
            break
    columns = list(SCHEMA)
    row = chain.features.row(0, named=True)
    if difference is None:
        features = recompute_features(lake, row).filter(
            (pl.col("instrument") == row["instrument"]) & (pl.col("date") == day)
        )
        if features.is_empty():
            raise LookupError(f"the recorded inputs give no feature row for {ticker} on {day}")
        difference = first_difference(row, features.row(0, named=True), columns)
    if difference is None:
        booster = registry.load_booster(prediction["model_version"])
        rescored = predict(booster, features)["prediction"].item()
        if not same_bits(prediction["prediction"], rescored):
            difference = ("prediction", prediction["prediction"], rescored)
    model = prediction["model_version"]
    return Reproduction(ticker, day, model, len(columns), difference, compared)
