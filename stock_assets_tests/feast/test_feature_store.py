"""gold.feature_store against real Feast 0.67.0, DuckDB, SQLite and a real redis-server.

Mechanics on synthetic gold-shaped frames (real data is in test_online_features.py): 50 tickers x
300 sessions x 200 Float64 columns plus a String, a Boolean and an Int32 column, listings that
start late, delistings, halts longer than the TTL, leading nulls and a few NaNs. ``DAYNUM`` (the
session's ordinal) is one of the features, so every served row says which session it came from.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stock_assets.feast import feature_store as fs

N_TICKERS, N_SESSIONS, N_FEATURES = 50, 300, 200
EPOCH = dt.date(1970, 1, 1).toordinal()  # DAYNUM is the date's proleptic ordinal
HOLIDAYS = {
    dt.date(2023, 1, 16),
    dt.date(2023, 2, 20),
    dt.date(2023, 4, 7),
    dt.date(2023, 5, 29),
    dt.date(2023, 6, 19),
    dt.date(2023, 7, 4),
    dt.date(2023, 9, 4),
    dt.date(2023, 11, 23),
    dt.date(2023, 12, 25),
    dt.date(2024, 1, 1),
    dt.date(2024, 1, 15),
    dt.date(2024, 2, 19),
}


def sessions(n: int = N_SESSIONS, first: dt.date = dt.date(2023, 1, 3)) -> list[dt.date]:
    days, day = [], first
    while len(days) < n:
        if day.weekday() < 5 and day not in HOLIDAYS:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def feature_names(n: int = N_FEATURES) -> list[str]:
    bases = "KMID KLEN KUP KLOW ROC MA STD BETA RSQR RESI MAX MIN QTLU QTLD RANK RSV IMAX IMIN"
    bases += " CORR CNTP SUMP VMA RSI_ WVMA"
    names = ["DAYNUM"] + [
        f"{b}{w}" for w in (5, 10, 14, 20, 30, 60, 90, 120, 250) for b in bases.split()
    ]
    return names[:n]


def gold_frame(seed: int = 0, version: int = 40) -> pl.DataFrame:
    """A gold-shaped frame; ``feature_version`` steps by month (one Delta write per month)."""
    rng = np.random.default_rng(seed)
    days = sessions()
    rows = []
    for i in range(N_TICKERS):
        keep = np.ones(len(days), dtype=bool)
        if i % 7 == 1:
            keep[: 20 + i] = False  # listed late
        if i % 9 == 2:
            keep[-(15 + i % 5) :] = False  # delisted: stale at the end
        if i % 5 == 3:
            gap = 40 + 3 * i
            keep[gap : gap + 6] = False  # a 6-session halt, longer than the TTL
        kept = pl.Series("date", days, dtype=pl.Date).filter(pl.Series(keep))
        rows.append(pl.DataFrame({"ticker": f"INS{i:03d}", "date": kept}))
    frame = pl.concat(rows)
    n = frame.height
    names = feature_names()
    values = {name: rng.normal(size=n) for name in names[1:]}
    for name in names[1:20]:  # rolling windows: null until enough history
        values[name][rng.random(n) < 0.05] = np.nan
    frame = frame.with_columns(
        (pl.col("date").cast(pl.Int32) + EPOCH).cast(pl.Float64).alias("DAYNUM"),
        *(pl.Series(name, v).fill_nan(None) for name, v in values.items()),
    )
    nan_rows = rng.random(n) < 0.01  # a few genuine NaNs survive (e.g. 0/0 ratios)
    frame = frame.with_columns(
        pl.when(pl.Series(nan_rows))
        .then(float("nan"))
        .otherwise(pl.col(names[-1]))
        .alias(names[-1])
    )
    month = pl.col("date").dt.year() * 12 + pl.col("date").dt.month()
    version = (version + month - month.min()).cast(pl.Int64)
    return frame.with_columns(
        version.alias(fs.VERSION),
        ("X" + pl.col("ticker")).alias("instrument"),
        (pl.col("DAYNUM") % 3 != 0).alias("in_universe"),
        (pl.col("DAYNUM") % 4 + 1).cast(pl.Int32).alias("sessions_since_previous_bar"),
    )


def fill_nan(frame: pl.DataFrame) -> list[pl.Expr]:
    """Feature columns as Feast serves them: NaN as null, online and offline."""
    return [
        pl.col(n).fill_nan(None) if t == pl.Float64 else pl.col(n)
        for n, t in fs.features_of(frame).items()
    ]


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return gold_frame()


def settings_for(tmp: Path, online: str = "sqlite", location: str = "") -> fs.FeatureStoreSettings:
    return fs.FeatureStoreSettings(tmp / "repo", tmp / "offline", online, location)


def loaded_store(tmp: Path, frame: pl.DataFrame, online: str = "sqlite", location: str = ""):
    settings = settings_for(tmp, online, location)
    fs.write_offline_snapshot(settings, frame, frame["date"].min(), frame["date"].max())
    return settings, fs.build_store(settings, fs.features_of(frame))


def expected_asof(frame: pl.DataFrame, entity_rows: pl.DataFrame, ttl: dt.timedelta):
    """The reference: a backward as-of join by ticker on event time, within the TTL."""
    features = frame.with_columns(fs.event_time_expr().alias("feature_ts")).sort("feature_ts")
    joined = (
        entity_rows.with_row_index("row")
        .sort("event_timestamp")
        .join_asof(
            features,
            left_on="event_timestamp",
            right_on="feature_ts",
            by="ticker",
            strategy="backward",
            tolerance=ttl,  # inclusive, as Feast's feature_ts + ttl >= entity_ts
            check_sortedness=False,  # sorted by time overall, hence within each ticker
        )
        .sort("row")
    )
    return joined.select("ticker", "event_timestamp", fs.VERSION, *fill_nan(frame))


def entity_rows_for(frame: pl.DataFrame, ttl: dt.timedelta, seed: int = 1) -> pl.DataFrame:
    """Random times plus the edges: at a close, 1 us before it, at close + TTL and 1 us past it."""
    rng = np.random.default_rng(seed)
    first, last = fs.event_time(frame["date"].min()), fs.event_time(frame["date"].max())
    span = int((last - first).total_seconds() * 1e6) + 20 * 86_400_000_000
    start = first - dt.timedelta(days=10)
    tickers = frame["ticker"].unique().sort().to_list() + ["UNKNOWN"]
    rows = [
        (str(rng.choice(tickers)), start + dt.timedelta(microseconds=int(rng.integers(span))))
        for _ in range(6000)
    ]
    us = dt.timedelta(microseconds=1)
    for inst, day in frame.sample(300, seed=seed).select("ticker", "date").iter_rows():
        close = fs.event_time(day)
        rows += [(inst, close), (inst, close - us), (inst, close + ttl), (inst, close + ttl + us)]
    rows += rows[:50]  # duplicate entity rows stay duplicated
    return pl.DataFrame(
        rows, schema={"ticker": pl.String, "event_timestamp": fs.TIMESTAMP}, orient="row"
    )


# -- event time -----------------------------------------------------------------------------------
def test_event_time_is_the_nyse_close_in_utc():
    assert fs.event_time(dt.date(2024, 1, 2)) == dt.datetime(2024, 1, 2, 21, tzinfo=dt.UTC)
    assert fs.event_time(dt.date(2024, 7, 1)) == dt.datetime(2024, 7, 1, 20, tzinfo=dt.UTC)
    days = pl.date_range(dt.date(2023, 1, 1), dt.date(2025, 12, 31), eager=True)  # DST switches
    stamps = pl.DataFrame({"date": days}).select(fs.event_time_expr())["date"].to_list()
    assert stamps == [fs.event_time(d) for d in days.to_list()]


# -- 1. historical retrieval == polars join_asof ---------------------------------------------------
def test_historical_equals_backward_asof_join_within_ttl(tmp_path, frame):
    settings, store = loaded_store(tmp_path, frame)
    rows = entity_rows_for(frame, settings.ttl)
    got = fs.historical_features(store, rows)
    want = expected_asof(frame, rows, settings.ttl)
    assert got.height == rows.height
    assert_frame_equal(got, want, check_exact=True)

    # point in time: the session a row came from had closed, at most one TTL earlier
    served = (
        got.filter(pl.col("DAYNUM").is_not_null())
        .select(
            "event_timestamp", (pl.col("DAYNUM").cast(pl.Int32) - EPOCH).cast(pl.Date).alias("day")
        )
        .with_columns(fs.event_time_expr("day").alias("close"))
    )
    assert (served["close"] <= served["event_timestamp"]).all()
    assert (served["event_timestamp"] - served["close"] <= settings.ttl).all()

    # the cases that must come back empty did occur
    firsts = frame.group_by("ticker").agg(pl.col("date").min().alias("first"))
    before_listing = rows.join(firsts, on="ticker").filter(
        pl.col("event_timestamp") < fs.event_time_expr("first")
    )
    assert before_listing.height > 50
    empty = got.join(firsts, on="ticker").filter(
        pl.col("event_timestamp") < fs.event_time_expr("first")
    )
    assert empty[fs.VERSION].null_count() == empty.height
    assert got.filter(pl.col("ticker") == "UNKNOWN")[fs.VERSION].null_count() > 0
    past_ttl = want.filter(pl.col(fs.VERSION).is_null()).height
    assert past_ttl > before_listing.height  # halts, delistings and the TTL edge add more


# -- 2. online == latest offline row; stale flagged --------------------------------------------
def latest_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("date").group_by("ticker", maintain_order=True).last()


def check_online(store, frame: pl.DataFrame) -> None:
    latest = latest_rows(frame)
    tickers = latest["ticker"].sort().to_list()
    now = fs.event_time(frame["date"].max()) + dt.timedelta(hours=2)
    got = fs.online_features(store, [*tickers, "UNKNOWN"], dt.timedelta(days=4), now=now)
    assert got.height == len(tickers) + 1
    assert got["ticker"].to_list() == [*tickers, "UNKNOWN"]

    want = latest.sort("ticker").select(
        "ticker",
        fs.event_time_expr().alias("event_timestamp"),
        fs.VERSION,
        *fill_nan(frame),
    )
    assert_frame_equal(got.head(len(tickers)).select(want.columns), want, check_exact=True)

    stale = set(latest.filter(fs.event_time_expr() < now - dt.timedelta(days=4))["ticker"])
    assert stale  # the delisted ones
    by_status = dict(zip(got["ticker"], got["status"], strict=True))
    assert {i for i, s in by_status.items() if s == "stale"} == stale
    assert by_status["UNKNOWN"] == "missing"
    assert got.filter(pl.col("status") != "fresh")["fresh"].not_().all()
    assert got.filter(pl.col("status") == "fresh")["age"].max() <= dt.timedelta(days=4)


def test_online_after_materialize_is_latest_offline_row(tmp_path, frame):
    settings, store = loaded_store(tmp_path, frame)
    windows = fs.materialize(store, settings, frame["date"].min(), chunk_days=40)
    assert windows[0][0] == frame["date"].min() and windows[-1][1] == frame["date"].max()
    check_online(store, frame)
    nothing = fs.online_features(store, ["NOPE1", "NOPE2"], dt.timedelta(days=4))
    assert nothing["status"].to_list() == ["missing", "missing"]
    assert nothing.schema[fs.VERSION] == pl.Int64
    assert nothing.schema["event_timestamp"] == fs.TIMESTAMP
    values = nothing.drop("ticker", "fresh", "status")
    assert values.null_count().row(0) == (2,) * values.width


def test_online_reads_go_on_while_a_load_holds_the_write_lock(tmp_path, frame):
    """The API reads while the chain loads a session: WAL, not "database is locked"."""
    import contextlib
    import sqlite3

    settings, store = loaded_store(tmp_path, frame)
    fs.materialize(store, settings, frame["date"].min(), chunk_days=40)
    path = Path(fs.repo_config(settings)["online_store"]["path"])
    with contextlib.closing(sqlite3.connect(path, timeout=0.1)) as writer:
        assert writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        writer.execute("BEGIN EXCLUSIVE")  # what a commit of a load holds
        online = fs.online_features(store, [frame["ticker"][0]], dt.timedelta(days=36500))
        writer.rollback()
    assert online["status"].item() != "missing"


# -- 3. re-running a range is idempotent --------------------------------------------------------
def snapshot(settings: fs.FeatureStoreSettings) -> pl.DataFrame:
    return pl.read_parquet(settings.snapshot_dir / "*.parquet").drop("created_timestamp")


def test_rerun_of_a_range_replaces_it_without_duplicates(tmp_path, frame):
    settings, store = loaded_store(tmp_path, frame)
    days = sessions()
    fs.materialize(store, settings, days[0])
    before = snapshot(settings)

    # a corrected middle range: new values and version, one stock-day fewer
    lo, hi = days[100], days[140]
    inside = pl.col("date").is_between(lo, hi)
    fixed = (
        frame.filter(inside)
        .with_columns(pl.col("KMID5") + 1000.0, pl.col(fs.VERSION) + 100)
        .filter(pl.int_range(pl.len()) != 0)
    )
    for _ in range(2):  # the second run must change nothing
        fs.write_offline_snapshot(settings, fixed, lo, hi)
        store = fs.build_store(settings, fs.features_of(frame))  # re-apply: a no-op
        fs.materialize(store, settings, lo)
        after = snapshot(settings)
        assert after.select(pl.struct("ticker", "date").is_duplicated().any()).item() is False
        assert after.height == before.height - 1
        outside = ~pl.col("date").is_between(lo, hi)
        assert_frame_equal(
            after.filter(outside).sort("ticker", "date"),
            before.filter(outside).sort("ticker", "date"),
        )
        assert_frame_equal(
            after.filter(inside).sort("ticker", "date").drop("event_timestamp"),
            fixed.sort("ticker", "date").select(after.drop("event_timestamp").columns),
        )
        expected = pl.concat([frame.filter(~inside), fixed]).sort("ticker", "date")
        check_online(store, expected)  # later sessions stay online: no step back in time

    # a corrected tail: online takes the replaced values and version
    lo = days[-10]
    tail = expected.filter(pl.col("date") >= lo).with_columns(
        pl.col("RSI_14") * -1, pl.col(fs.VERSION) + 1000
    )
    fs.write_offline_snapshot(settings, tail, lo, days[-1])
    fs.materialize(store, settings, lo)
    expected = pl.concat([expected.filter(pl.col("date") < lo), tail])
    check_online(store, expected)
    rows = entity_rows_for(expected, settings.ttl, seed=7)
    assert_frame_equal(
        fs.historical_features(store, rows),
        expected_asof(expected, rows, settings.ttl),
        check_exact=True,
    )


def test_snapshot_rejects_bad_ranges_types_keys_and_column_sets(tmp_path, frame):
    settings = settings_for(tmp_path)
    with pytest.raises(ValueError, match="outside"):
        fs.write_offline_snapshot(settings, frame, dt.date(2023, 2, 1), dt.date(2023, 2, 28))
    with pytest.raises(TypeError, match=fs.VERSION):
        fs.write_offline_snapshot(
            settings,
            frame.with_columns(pl.col(fs.VERSION).cast(pl.Int32)),
            frame["date"].min(),
            frame["date"].max(),
        )
    with pytest.raises(ValueError, match="duplicate"):
        fs.write_offline_snapshot(
            settings,
            pl.concat([frame.head(3), frame.head(1)]),
            frame["date"].min(),
            frame["date"].max(),
        )
    first = frame.filter(pl.col("date") < dt.date(2023, 3, 1))
    fs.write_offline_snapshot(settings, first, first["date"].min(), first["date"].max())
    with pytest.raises(ValueError, match="another column set"):  # DuckDB reads one table
        fs.write_offline_snapshot(
            settings,
            frame.filter(pl.col("date") >= dt.date(2023, 3, 1)).drop("KMID5"),
            dt.date(2023, 3, 1),
            frame["date"].max(),
        )


# -- 4. the same code on a real Redis -----------------------------------------------------------
def test_online_on_redis(tmp_path, frame, redis_server):
    settings, store = loaded_store(tmp_path, frame, "redis", redis_server)
    assert "redis" in (settings.repo_dir / "feature_store.yaml").read_text()
    fs.materialize(store, settings, frame["date"].min(), chunk_days=40)
    check_online(store, frame)
    # corrections for an already-loaded date replace it (last write wins, as on SQLite)
    last = frame["date"].max()
    fixed = frame.filter(pl.col("date") == last).with_columns(pl.col(fs.VERSION) + 1)
    fs.write_offline_snapshot(settings, fixed, last, last)
    fs.materialize(store, settings, last)
    check_online(store, pl.concat([frame.filter(pl.col("date") < last), fixed]))
