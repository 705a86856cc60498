"""The owned Delta IO: partition isolation, complete range reads, no lost concurrent writes,
catalog schemas enforced before anything is written."""

from __future__ import annotations

import datetime as dt
import multiprocessing

import polars as pl
import pytest

from stock_assets import tables
from stock_assets.lake import Lake, LakeIO, SchemaMismatch, month_column
from stock_assets.resources.lake import LakeResource
from stock_assets.tables import Table

TABLE = Table("silver/example_bars", "test table")  # empty schema: not enforced


def bars_for(days: list[dt.date], tickers=("AAA", "BBB"), price: float = 10.0) -> pl.DataFrame:
    rows = [(t, d, price + i) for i, d in enumerate(days) for t in tickers]
    return pl.DataFrame(
        rows, schema={"ticker": pl.String, "date": pl.Date, "close": pl.Float64}, orient="row"
    ).with_columns(month_column())


def weekdays(start: dt.date, count: int) -> list[dt.date]:
    days, day = [], start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


@pytest.fixture(params=["Lake", "LakeResource"])
def lake(tmp_path, request) -> LakeIO:
    """The plain lake (API, app) and the Dagster resource share one implementation."""
    root = str(tmp_path / "lake")
    return Lake(root) if request.param == "Lake" else LakeResource(root=root)


def test_overwriting_one_day_touches_no_other_day(lake):
    days = weekdays(dt.date(2010, 1, 25), 15)  # spans January and February
    for day in days:
        lake.overwrite_dates(TABLE, bars_for([day]), day, day)
    before = lake.read(TABLE).sort("date", "ticker")
    files_before = set(lake.delta(TABLE).file_uris())
    target = days[7]
    lake.overwrite_dates(TABLE, bars_for([target], price=99.0).to_arrow(), target, target)
    after = lake.read(TABLE).sort("date", "ticker")
    files_after = set(lake.delta(TABLE).file_uris())

    assert after.filter(pl.col("date") != target).equals(before.filter(pl.col("date") != target))
    assert after.filter(pl.col("date") == target)["close"].to_list() == [99.0, 99.0]
    assert len(files_before - files_after) == 1  # only the target day's file was replaced
    assert len(files_after - files_before) == 1
    assert lake.delta(TABLE).metadata().partition_columns == ["month"]


def test_overwrite_refuses_rows_outside_its_range(lake):
    day = dt.date(2010, 3, 1)
    with pytest.raises(ValueError, match="outside"):
        lake.overwrite_dates(TABLE, bars_for([day, day + dt.timedelta(days=1)]), day, day)
    assert not lake.exists(TABLE)


def test_range_read_returns_every_day_across_months(lake):
    days = weekdays(dt.date(2010, 1, 20), 30)
    lake.overwrite_dates(TABLE, bars_for(days), days[0], days[-1])
    window = lake.read_dates(TABLE, days[3], days[25])
    assert sorted(window["date"].unique().to_list()) == days[3:26]
    assert window.height == 2 * len(days[3:26])


def test_range_overwrite_replaces_exactly_the_range(lake):
    days = weekdays(dt.date(2010, 5, 3), 10)
    lake.overwrite_dates(TABLE, bars_for(days), days[0], days[-1])
    # the middle days now have one ticker only (for example a delisting)
    lake.overwrite_dates(TABLE, bars_for(days[3:6], tickers=("AAA",), price=50), days[3], days[5])
    table = lake.read(TABLE)
    assert table.height == 2 * 7 + 3
    assert table.filter(pl.col("date").is_in(days[3:6]))["ticker"].unique().to_list() == ["AAA"]


def test_the_date_column_comes_from_the_catalog(lake):
    events = Table("silver/example_events", "test table", date_column="effective_date")
    frame = pl.DataFrame(
        {"effective_date": [dt.date(2010, 6, 2), dt.date(2010, 7, 1)], "x": [1, 2]}
    ).with_columns(month_column("effective_date"))
    lake.overwrite_dates(events, frame, dt.date(2010, 6, 1), dt.date(2010, 7, 31))
    june = lake.read_dates(events, dt.date(2010, 6, 1), dt.date(2010, 6, 30))
    assert june["x"].to_list() == [1]
    undated = Table("silver/example_snapshot", "test table", date_column=None, partition_by=())
    lake.replace_table(undated, frame)
    with pytest.raises(ValueError, match="no date column"):
        lake.read_dates(undated, dt.date(2010, 6, 1), dt.date(2010, 6, 30))


def test_catalog_schemas_are_enforced_before_anything_is_written(lake):
    day = dt.date(2010, 6, 1)
    bars = pl.DataFrame(
        {
            "ticker": ["KO"],
            "date": [day],
            "open": [1.0],
            "high": [1.0],
            "low": [1.0],
            "close": [1.0],
            "volume": [1],
            "source": ["t"],
            "kafka_partition": pl.Series([0], dtype=pl.Int32),
            "kafka_offset": [0],
        }
    ).with_columns(month_column(), kafka_topic=pl.lit("t"), bronze_version=pl.lit(0, pl.Int64))
    assert list(bars.schema) == list(tables.DAILY_BARS.schema)
    with pytest.raises(SchemaMismatch, match=r"volume.*Float64.*Int64"):
        lake.overwrite_dates(tables.DAILY_BARS, bars.with_columns(pl.col("volume") * 1.0), day, day)
    with pytest.raises(SchemaMismatch, match="column order"):
        reordered = bars.select("date", *[c for c in bars.columns if c != "date"])
        lake.overwrite_dates(tables.DAILY_BARS, reordered, day, day)
    with pytest.raises(SchemaMismatch, match="source"):
        lake.replace_table(tables.DAILY_BARS, bars.drop("source"))
    assert not lake.exists(tables.DAILY_BARS)
    assert lake.version(tables.DAILY_BARS) is None and lake.delta(tables.DAILY_BARS) is None
    lake.overwrite_dates(tables.DAILY_BARS, bars, day, day)
    assert lake.exists(tables.DAILY_BARS) and lake.read(tables.DAILY_BARS).equals(bars)


def test_a_missing_table_reads_as_empty_with_its_catalog_schema_but_has_no_ranges(lake):
    empty = lake.read(tables.DAILY_BARS)
    assert empty.is_empty() and empty.schema == pl.Schema(tables.DAILY_BARS.schema)
    with pytest.raises(FileNotFoundError, match="does not exist yet"):
        lake.read_dates(tables.DAILY_BARS, dt.date(2010, 6, 1), dt.date(2010, 6, 30))
    assert lake.uri(tables.DAILY_BARS) == f"{lake.root}/silver/daily_bars"


def test_the_catalog_looks_tables_up_by_path_and_keys_follow_paths():
    assert tables.table("silver/daily_bars") is tables.DAILY_BARS
    assert tables.DAILY_BARS.key_path == ["silver", "daily_bars"]
    assert (tables.DAILY_BARS.layer, tables.DAILY_BARS.name) == ("silver", "daily_bars")
    with pytest.raises(KeyError, match="not in the table catalog"):
        tables.table("silver/no_such_table")
    assert all(path == str(t) for path, t in tables.CATALOG.items())


def kafka_rows(offsets: list[int], partition: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "kafka_partition": pl.Series([partition] * len(offsets), dtype=pl.Int32),
            "kafka_offset": pl.Series(offsets, dtype=pl.Int64),
            "month": ["2010-06"] * len(offsets),
        }
    )


def test_kafka_appends_store_each_offset_once(lake):
    events = Table("bronze/example_events", "test table", date_column=None)
    first = lake.append_kafka(events, kafka_rows([0, 1, 2]), "topic", {0: 2})
    assert (first.rows_written, first.rows_already_stored) == (3, 0)
    again = lake.append_kafka(events, kafka_rows([0, 1, 2]), "topic", {0: 2})
    assert again.version is None and again.rows_written == 0 and again.rows_already_stored == 3
    overlap = lake.append_kafka(events, kafka_rows([1, 2, 3, 4]), "topic", {0: 4})
    assert (overlap.rows_written, overlap.rows_already_stored) == (2, 2)
    assert sorted(lake.read(events)["kafka_offset"].to_list()) == [0, 1, 2, 3, 4]
    assert lake.transaction_versions(events, ["topic-0", "topic-1"]) == {
        "topic-0": 4,
        "topic-1": None,
    }


def _write_one_day(root: str, day: dt.date, barrier) -> None:
    lake = Lake(root)
    barrier.wait()
    lake.overwrite_dates(TABLE, bars_for([day]), day, day)


@pytest.mark.parametrize("table_exists", [False, True])
def test_concurrent_partition_writes_lose_nothing(tmp_path, table_exists):
    root = str(tmp_path / "lake")
    days = weekdays(dt.date(2010, 6, 1), 4)  # same month partition: the hardest case
    if table_exists:
        Lake(root).ensure_table(TABLE, bars_for(days[:1]).to_arrow().schema)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(days))
    workers = [ctx.Process(target=_write_one_day, args=(root, day, barrier)) for day in days]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * len(days)
    table = Lake(root).read(TABLE)
    assert sorted(table["date"].unique().to_list()) == days
    assert table.height == 2 * len(days)
