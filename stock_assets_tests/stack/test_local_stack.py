"""`make run`'s choices that need no running stack: the alternative-data history it backfills
(the real code location's assets and partitions) and the settings its runs get."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

from stock_assets.local_backfills import history_selection
from stock_assets.local_stack import LOCAL_RUN_ENV, _altdata


def test_the_history_stops_at_the_replayed_datas_month_and_starts_with_each_asset():
    by_path = {
        "/".join(entry["assetKey"]["path"]): entry.get("partitions")
        for entry in history_selection(_altdata(), dt.date(2010, 8, 20))
    }
    assert by_path["silver/universe"] == {"range": {"start": "1990-01-01", "end": "2010-08-01"}}
    assert by_path["silver/macro_indicators"]["range"] == {
        "start": "1959-01-01",  # as-of reads: every month before the data may matter
        "end": "2010-08-01",
    }
    # news starts in 2016, after the data: all of it, so its tables exist for the features
    assert by_path["silver/news_sentiment"]["range"]["start"] == "2016-01-01"
    assert by_path["silver/news_sentiment"]["range"]["end"] > "2026-01-01"
    assert by_path["silver/index_membership"] is None  # unpartitioned: whole
    assert set(by_path) >= {"silver/earnings_calendar", "silver/market_sentiment"}
    everything = history_selection(_altdata(), None)
    assert all(e.get("partitions") is None or e["partitions"]["range"]["end"] > "2026-01-01"
               for e in everything)  # fmt: skip


RANGES = """
from stock_assets.bronze.datasets import load_dataset
from stock_assets import sensors
dates = sorted(str(d) for d in load_dataset("sp500_2009")["date"].unique())
print(sensors.partition_ranges(dates)[0], sensors.IN_PROCESS_MAX_SESSIONS)
"""


def _ranges(env: dict) -> str:
    """The bar-chain ranges the sensor makes of sp500_2009's real dates, in a fresh interpreter
    (the settings are read when the sensors module loads)."""
    clean = {k: v for k, v in os.environ.items() if k not in LOCAL_RUN_ENV}
    done = subprocess.run(
        [sys.executable, "-c", RANGES], env={**clean, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_local_stack_loads_a_replayed_year_in_one_in_process_run():
    assert LOCAL_RUN_ENV["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] == "1"
    local = _ranges(LOCAL_RUN_ENV)
    assert local == "[('2009-08-21', '2010-08-20')] 100000"
    # a deployment's defaults: two ranges across the set's 6-session gap, in process up to 5
    assert _ranges({}) == ("[('2009-08-21', '2009-10-28'), ('2009-11-05', '2010-08-20')] 5")
