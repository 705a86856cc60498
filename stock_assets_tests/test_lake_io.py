"""The owned Delta IO: partition isolation, complete range reads, no lost concurrent writes."""

from __future__ import annotations

import datetime as dt
import multiprocessing

import polars as pl
import pytest
from deltalake import DeltaTable

from stock_assets.resources.lake import LakeResource, month_column

TABLE = "silver/example_bars"


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


@pytest.fixture
def lake(tmp_path) -> LakeResource:
    return LakeResource(root=str(tmp_path / "lake"))


def test_overwriting_one_day_touches_no_other_day(lake):
    days = weekdays(dt.date(2010, 1, 25), 15)  # spans January and February
    for day in days:
        lake.overwrite_dates(TABLE, bars_for([day]).to_arrow(), day, day, ["month"])
    before = lake.scan(TABLE).collect().sort("date", "ticker")
    files_before = set(DeltaTable(lake.uri(TABLE)).file_uris())
    target = days[7]
    lake.overwrite_dates(
        TABLE, bars_for([target], price=99.0).to_arrow(), target, target, ["month"]
    )
    after = lake.scan(TABLE).collect().sort("date", "ticker")
    files_after = set(DeltaTable(lake.uri(TABLE)).file_uris())

    assert after.filter(pl.col("date") != target).equals(before.filter(pl.col("date") != target))
    assert after.filter(pl.col("date") == target)["close"].to_list() == [99.0, 99.0]
    assert len(files_before - files_after) == 1  # only the target day's file was replaced
    assert len(files_after - files_before) == 1


def test_overwrite_refuses_rows_outside_its_range(lake):
    day = dt.date(2010, 3, 1)
    with pytest.raises(ValueError, match="outside"):
        lake.overwrite_dates(
            TABLE, bars_for([day, day + dt.timedelta(days=1)]).to_arrow(), day, day, ["month"]
        )


def test_range_read_returns_every_day_across_months(lake):
    days = weekdays(dt.date(2010, 1, 20), 30)
    lake.overwrite_dates(TABLE, bars_for(days).to_arrow(), days[0], days[-1], ["month"])
    window = lake.read_dates(TABLE, days[3], days[25])
    assert sorted(window["date"].unique().to_list()) == days[3:26]
    assert window.height == 2 * len(days[3:26])


def test_range_overwrite_replaces_exactly_the_range(lake):
    days = weekdays(dt.date(2010, 5, 3), 10)
    lake.overwrite_dates(TABLE, bars_for(days).to_arrow(), days[0], days[-1], ["month"])
    # the middle days now have one ticker only (for example a delisting)
    lake.overwrite_dates(
        TABLE,
        bars_for(days[3:6], tickers=("AAA",), price=50).to_arrow(),
        days[3],
        days[5],
        ["month"],
    )
    table = lake.scan(TABLE).collect()
    assert table.height == 2 * 7 + 3
    assert table.filter(pl.col("date").is_in(days[3:6]))["ticker"].unique().to_list() == ["AAA"]


def _write_one_day(root: str, day: dt.date, barrier) -> None:
    lake = LakeResource(root=root)
    barrier.wait()
    lake.overwrite_dates(TABLE, bars_for([day]).to_arrow(), day, day, ["month"])


@pytest.mark.parametrize("table_exists", [False, True])
def test_concurrent_partition_writes_lose_nothing(tmp_path, table_exists):
    root = str(tmp_path / "lake")
    days = weekdays(dt.date(2010, 6, 1), 6)  # same month partition: the hardest case
    if table_exists:
        LakeResource(root=root).ensure_table(TABLE, bars_for(days[:1]).to_arrow().schema, ["month"])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(days))
    workers = [ctx.Process(target=_write_one_day, args=(root, day, barrier)) for day in days]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * len(days)
    table = LakeResource(root=root).scan(TABLE).collect()
    assert sorted(table["date"].unique().to_list()) == days
    assert table.height == 2 * len(days)
