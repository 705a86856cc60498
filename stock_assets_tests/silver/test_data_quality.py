"""Data-quality report: the measured quirks of the bundled sets, per data set, in the UI."""

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.bronze.replay import select_bars
from stock_assets.resources.lake import LakeResource
from stock_assets.silver.corporate_actions import (
    build_corporate_actions,
    corporate_actions,
    load_curated,
)
from stock_assets.silver.data_quality import data_quality, quality_report
from stock_assets_tests.conftest import write_silver


def test_report_counts_the_real_quirks_of_each_data_set(tmp_path, sp500):
    lake = LakeResource(root=str(tmp_path / "lake"))
    close_only = select_bars(
        "sp500_1990_adjclose", dt.date(2020, 1, 2), dt.date(2020, 3, 31), ["KO", "XOM"]
    )
    write_silver(lake, sp500)
    write_silver(lake, close_only)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [corporate_actions, data_quality], resources={"lake": lake}, instance=instance
    )
    assert result.success

    report = {row["dataset"]: row for row in lake.read(tables.DATA_QUALITY).to_dicts()}
    assert set(report) == {"sp500_2009", "sp500_1990_adjclose"}
    sp = report["sp500_2009"]
    assert sp["bars"] == 122_574 and sp["instruments"] == 523  # ETFCD folded into ETFC
    assert sp["missing_trading_days"] == 7  # 252 NYSE sessions, 245 dates in the file
    assert sp["missing_trading_days_sample"].startswith("2009-09-08, 2009-10-29")
    assert sp["missing_stock_days"] == 270 and sp["instruments_with_missing_days"] == 114
    assert sp["adjustments_applied"] == 6 and sp["ticker_changes"] == 2
    assert sp["events_needing_review"] == 0 and not sp["close_only"]
    assert sp["stock_days_set_aside"] == 0  # every jump in the year is decided on its day
    assert sp["low_dollar_volume_symbols"] == 263  # volumes ~100x too small (docs/DATA.md)
    co = report["sp500_1990_adjclose"]
    assert co["close_only"] and co["zero_volume_days"] == co["bars"] == close_only.height
    assert co["missing_trading_days"] == 0 and co["adjustments_applied"] == 0

    metadata = result.asset_materializations_for_node("silver__data_quality")[0].metadata
    assert metadata["datasets"].value == 2
    summary = metadata["summary"].value
    assert "| sp500_2009" in summary and "missing_stock_days" in summary
    assert "reverse_split" in metadata["adjustments_applied"].value
    by_instrument = metadata["missing_stock_days_by_instrument"].value
    assert by_instrument.count("\n") > 10 and "ETFCD" not in by_instrument
    assert pl.Series(sp500["ticker"]).n_unique() == 524


def test_report_counts_the_stock_days_set_aside_while_a_jump_awaits_review(sp500):
    """Without the curated review, WY (2010-07-20 on), ARG (2010-02-05 on) and MFE
    (2010-08-19 on) await review: their rows to the end of the set are counted."""
    events = build_corporate_actions(sp500, load_curated().clear())
    (report,) = quality_report(sp500, events)[0].to_dicts()
    assert report["events_needing_review"] == 3
    assert report["stock_days_set_aside"] == 23 + 136 + 2
