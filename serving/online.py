"""On-demand predictions from the Feast online store: a cached path and a cold read.

The online store only changes when the pipeline loads a session, so the service keeps the
online rows of its known tickers in memory, with the `gold/daily_features` version they carry,
and re-reads them (through Feast, `feature_store.online_features`) when the lake's feature table
moves on. An on-demand request is then the booster applied to cached vectors. The cold path reads
Feast for the request's tickers and applies `walk_forward.predict` to what it returns; both give
the same numbers for the same rows (tested).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from stock_assets.feast.feature_store import (
    EVENT_TS,
    NYSE,
    VERSION,
    FeatureStoreSettings,
    online_features,
    open_store,
)
from stock_assets.models.explain import explain, explain_matrix
from stock_assets.models.walk_forward import feature_matrix, predict
from stock_assets.outputs import ModelCard

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_FAR = dt.timedelta(days=365_000)  # statuses are recomputed per request, not at read time


@dataclass(frozen=True)
class ServedModel:
    """A registered version loaded for scoring: its card (interval rule) and its booster."""

    card: ModelCard
    booster: object  # lightgbm.Booster

    @property
    def num_iteration(self) -> int | None:
        return self.booster.best_iteration or None  # as walk_forward.predict does

    def score(self, matrix: np.ndarray) -> np.ndarray:
        """The booster on rows already in its feature order (one thread: rows are few)."""
        return self.booster.predict(matrix, num_iteration=self.num_iteration, num_threads=1)


@dataclass(frozen=True)
class OnlineCache:
    """Online rows of the known tickers as read at ``read_at``, and one matrix per model."""

    frame: pl.DataFrame  # ticker, instrument, date, event_timestamp, feature_table_version, ...
    index: Mapping[str, int]  # ticker -> row
    event_us: Sequence[int]  # per row: event timestamp, microseconds since the epoch
    dates: Sequence[dt.date]  # per row: the session the features describe
    versions: Sequence[int]  # per row: the feature_table_version it carries
    lake_version: int | None  # gold/daily_features version when the rows were read
    carried_version: int | None  # newest feature_table_version among the rows
    read_at: float  # time.monotonic()
    read_seconds: float
    matrices: Mapping[str, np.ndarray] = field(default_factory=dict)  # model version -> rows

    def with_models(self, models: Sequence[ServedModel]) -> OnlineCache:
        """The same rows with a feature matrix for each model (in its booster's order)."""
        matrices = {}
        for model in models:
            known = self.matrices.get(model.card.version)
            names = model.booster.feature_name()
            matrices[model.card.version] = (
                known if known is not None else feature_matrix(self.frame, names)
            )
        return replace(self, matrices=matrices)

    def describe(self) -> dict:
        return {
            "rows": self.frame.height,
            "feature_table_version": self.carried_version,
            "lake_feature_table_version": self.lake_version,
            "read_seconds": round(self.read_seconds, 3),
        }


class FeastReader:
    """One Feast store per process, used by one thread at a time (the SDK is not thread-safe)."""

    def __init__(self, settings: FeatureStoreSettings | None = None) -> None:
        self.settings = settings or FeatureStoreSettings.from_env()
        self._store = None
        self._lock = threading.Lock()

    def read(self, tickers: Sequence[str], now: dt.datetime, max_age: dt.timedelta):
        """`online_features` for ``tickers``, with instrument and session date as predict needs."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings)
            frame = online_features(self._store, list(tickers), max_age, now)
        return frame.with_columns(
            pl.col(EVENT_TS).dt.convert_time_zone(NYSE.key).dt.date().alias("date")
        )

    def refresh_registry(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.refresh_registry()

    def load_cache(self, tickers: Sequence[str], lake_version: int | None) -> OnlineCache:
        """Read every ticker's online row (a background job: seconds for hundreds)."""
        started = time.monotonic()
        self.refresh_registry()
        frame = self.read(tickers, dt.datetime.now(dt.UTC), _FAR)
        frame = frame.filter(pl.col("status") != "missing").drop("age", "fresh", "status")
        carried = frame[VERSION].max() if frame.height else None
        return OnlineCache(
            frame=frame,
            index={ticker: i for i, ticker in enumerate(frame["ticker"].to_list())},
            event_us=frame[EVENT_TS].cast(pl.Int64).to_list(),
            dates=frame["date"].to_list(),
            versions=frame[VERSION].to_list(),
            lake_version=lake_version,
            carried_version=carried,
            read_at=time.monotonic(),
            read_seconds=time.monotonic() - started,
        )


def status_of(event_us: int | None, now_us: int, max_age_us: int) -> str:
    """fresh / stale / missing, with the rule `feature_store.online_features` applies."""
    if event_us is None:
        return "missing"
    return "fresh" if 0 <= now_us - event_us <= max_age_us else "stale"


def from_cache(
    cache: OnlineCache,
    model: ServedModel,
    tickers: Sequence[str],
    max_age: dt.timedelta,
    top: int | None = None,
) -> list[dict]:
    """One item per ticker: the model's prediction and interval on the cached online row (and,
    with ``top``, its explanation)."""
    now_us = (dt.datetime.now(dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)
    max_age_us = max_age // dt.timedelta(microseconds=1)
    rows = [cache.index.get(t) for t in tickers]
    present = [r for r in rows if r is not None]
    matrix = cache.matrices[model.card.version][present]
    values = model.score(matrix) if present else []
    whys = (
        explain_matrix(model.booster, matrix, top, model.num_iteration) if top and present else []
    )
    items, position = [], 0
    for ticker, row in zip(tickers, rows, strict=True):
        if row is None:
            items.append(_missing(ticker))
            continue
        value = float(values[position])
        position += 1
        event = cache.event_us[row]
        status = status_of(event, now_us, max_age_us)
        day, version = cache.dates[row], cache.versions[row]
        item = _item(ticker, value, model.card, day, version, status, (now_us - event) / 1e6)
        if whys:
            item["explanation"] = whys[position - 1].as_dict()
        items.append(item)
    return items


def from_feast(
    reader: FeastReader,
    model: ServedModel,
    tickers: Sequence[str],
    max_age: dt.timedelta,
    top: int | None = None,
) -> list[dict]:
    """The cold path: Feast's online read now, scored by `walk_forward.predict` (and, with
    ``top``, explained)."""
    frame = reader.read(tickers, dt.datetime.now(dt.UTC), max_age)
    found = frame.filter(pl.col("status") != "missing")
    scored = predict(model.booster, found) if found.height else None
    whys = explain(model.booster, found, top) if top and found.height else [None] * found.height
    by_ticker = {}
    if scored is not None:
        rows = zip(found.iter_rows(named=True), scored["prediction"], whys, strict=True)
        for row, value, why in rows:
            by_ticker[row["ticker"]] = (row, value, why)
    items = []
    for ticker in tickers:
        if ticker not in by_ticker:
            items.append(_missing(ticker))
            continue
        row, value, why = by_ticker[ticker]
        age = row["age"].total_seconds() if row["age"] is not None else None
        item = _item(ticker, value, model.card, row["date"], row[VERSION], row["status"], age)
        if why is not None:
            item["explanation"] = why.as_dict()
        items.append(item)
    return items


def _item(ticker, value, card: ModelCard, day, version, status, age_s) -> dict:
    lower, upper = card.interval(value)
    return {
        "ticker": ticker,
        "prediction": value,
        "lower": lower,
        "upper": upper,
        "interval_level": card.interval_level,
        "horizon": card.horizon,
        "feature_date": day,
        "feature_table_version": version,
        "status": status,
        "age_seconds": age_s,
    }


def _missing(ticker: str) -> dict:
    return {
        "ticker": ticker,
        "prediction": None,
        "lower": None,
        "upper": None,
        "interval_level": None,
        "horizon": None,
        "feature_date": None,
        "feature_table_version": None,
        "status": "missing",
        "age_seconds": None,
    }
