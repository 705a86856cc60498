"""gold/daily_features on the real S&P 500 year: incremental = full, two paths equal, no leak."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stock_assets import tables
from stock_assets.gold.assemble import Context, assemble
from stock_assets.gold.daily_features import daily_features
from stock_assets.gold.feature_set import FLOAT_FEATURES, SCHEMA
from stock_assets.models.reproduce import first_difference, recompute_features
from stock_assets.partitions import range_tags
from stock_assets.pit import ANNOUNCE_DAYS, adjust_bars
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import EarningsSource, MembershipSource
from stock_assets.silver.earnings_calendar import earnings_calendar
from stock_assets.silver.index_membership import index_membership
from stock_assets.silver.universe import universe
from stock_assets_tests.conftest import FIRST, LAST
from stock_assets_tests.point_in_time import make_context, packaged_context_sources

TOLERANCE = 1e-9  # the indicators' stated tolerance for a lookback computation (FEATURES.md)


@pytest.fixture(scope="module")
def context_sources():
    return packaged_context_sources()


def test_one_session_materialized_alone_equals_the_full_history_run(lake_with_features):
    lake = lake_with_features
    stored = lake.read(tables.GOLD_DAILY_FEATURES)
    assert stored.columns == [*SCHEMA, *tables.FEATURE_PROVENANCE] and stored.height == 122_574
    assert stored["computed_from"].unique().to_list() == [FIRST]  # one run wrote the year
    assert stored["adjusted_bars_version"].unique().to_list() == [
        lake.version(tables.ADJUSTED_DAILY_BARS)
    ]
    full = stored.select(list(SCHEMA))
    days = [dt.date(2010, 8, 20), dt.date(2010, 6, 9)]  # the last session; GIS's split day
    for day in days:
        before = full.filter(pl.col("date") == day).sort("instrument")
        result = dg.materialize([daily_features], resources={"lake": lake}, partition_key=str(day))
        assert result.success
        metadata = result.asset_materializations_for_node("gold__daily_features")[0].metadata
        assert metadata["rows"].value == before.height
        after = lake.read_dates(tables.GOLD_DAILY_FEATURES, day, day).sort("instrument")
        assert after["computed_from"].unique().to_list() == [day]
        assert after["obv_anchor_version"].is_not_null().all()  # OBV continued from it
        assert_frame_equal(after.select(list(SCHEMA)), before, rel_tol=TOLERANCE, abs_tol=0)
        # the lookback read is bounded: far less than the whole year
        assert metadata["bars_read"].value < 0.8 * full.height or day == LAST
    obv = full.filter(pl.col("date") == LAST).select("instrument", "obv")
    assert obv["obv"].null_count() == 0  # the running total continued, never restarted


def test_streaming_sessions_and_the_nightly_range_give_identical_values(
    tmp_path, adjusted, lake_with_features
):
    """Session by session (as bars arrive) and one batch range: the same rows, bit for bit."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    window = adjusted.filter(pl.col("date") <= dt.date(2010, 8, 20))
    lake.overwrite_dates(tables.ADJUSTED_DAILY_BARS, window, FIRST, LAST)
    first_run = range_tags(FIRST.isoformat(), "2010-08-13")
    assert dg.materialize([daily_features], resources={"lake": lake}, tags=first_run).success
    for day in ["2010-08-16", "2010-08-17", "2010-08-18", "2010-08-19", "2010-08-20"]:
        assert dg.materialize([daily_features], resources={"lake": lake}, partition_key=day).success
    streamed = lake.read_dates(tables.GOLD_DAILY_FEATURES, dt.date(2010, 8, 16), LAST)
    batch_tags = range_tags("2010-08-16", LAST.isoformat())
    assert dg.materialize([daily_features], resources={"lake": lake}, tags=batch_tags).success
    batch = lake.read_dates(tables.GOLD_DAILY_FEATURES, dt.date(2010, 8, 16), LAST)
    key = ["date", "instrument"]
    features = list(SCHEMA)
    assert_frame_equal(
        streamed.select(features).sort(key), batch.select(features).sort(key), check_exact=True
    )


def test_no_feature_for_a_day_up_to_t_changes_when_everything_after_t_changes(
    adjusted, sp500, events, context_sources
):
    """Perturb prices, volumes, corporate actions, macro releases, earnings dates and membership
    after day t; recompute a range that reaches past t; rows up to t are identical."""
    t, start, end = dt.date(2010, 5, 14), dt.date(2010, 5, 3), dt.date(2010, 6, 30)
    base = assemble(adjusted, start, end, make_context(context_sources, start, end, adjusted))

    later = pl.col("date") > t
    bars = sp500.with_columns(
        *(
            pl.when(later).then(pl.col(c) * 1.37).otherwise(pl.col(c))
            for c in ("open", "high", "low", "close")
        ),  # fmt: skip
        volume=pl.when(later).then(pl.col("volume") * 3).otherwise(pl.col("volume")),
    )
    extra_split = pl.DataFrame(
        [{"instrument": "AAPL", "ticker": "AAPL", "action": "split",
          "effective_date": dt.date(2010, 5, 17), "ratio": 4.0, "new_ticker": None,
          "detected_ratio": None, "volume_ratio": None, "source": "test", "status": "confirmed",
          "known_from": dt.date(2010, 5, 17), "note": "made up, after t"}],
        schema=events.schema,
    )  # fmt: skip
    perturbed_adjusted = adjust_bars(bars, pl.concat([events, extra_split]))
    macro, earnings, intervals, sentiment = context_sources
    perturbed_sources = (
        macro.with_columns(
            value=pl.when(pl.col("known_from") > t)
            .then(pl.col("value") * -5 + 1)
            .otherwise(pl.col("value"))
        ),  # fmt: skip
        earnings.with_columns(  # a release date is known ANNOUNCE_DAYS ahead (pit.py)
            earnings_date=pl.when(pl.col("earnings_date") - pl.duration(days=ANNOUNCE_DAYS) > t)
            .then(pl.col("earnings_date") + pl.duration(days=3))
            .otherwise(pl.col("earnings_date"))
        ),
        intervals.with_columns(  # memberships starting after t start earlier, and vice versa
            member_from=pl.when(pl.col("member_from") > t)
            .then(pl.lit(t + dt.timedelta(days=1)))
            .otherwise(pl.col("member_from"))
        ),
        sentiment.with_columns(
            net_tone=pl.when(pl.col("known_from") > t)
            .then(-pl.col("net_tone"))
            .otherwise(pl.col("net_tone"))
        ),  # fmt: skip
    )
    changed = assemble(
        perturbed_adjusted,
        start,
        end,
        make_context(perturbed_sources, start, end, perturbed_adjusted),
    )
    upto_t = pl.col("date") <= t
    assert_frame_equal(base.filter(upto_t), changed.filter(upto_t), check_exact=True)
    # and the perturbation is real: rows after t did change
    assert not base.filter(~upto_t).equals(changed.filter(~upto_t))


def test_close_only_history_gets_the_close_defined_subset_and_nulls_elsewhere():
    from stock_assets.bronze.replay import select_bars
    from stock_assets.gold.alpha158 import CLOSE_ONLY_COLUMNS as ALPHA_CLOSE
    from stock_assets.gold.indicators import CLOSE_ONLY_COLUMNS as TALIB_CLOSE
    from stock_assets.silver.corporate_actions import build_corporate_actions, load_curated

    bars = select_bars("sp500_1990_adjclose", dt.date(2019, 1, 1), dt.date(2022, 12, 28))
    adjusted = adjust_bars(bars, build_corporate_actions(bars, load_curated()))
    start, end = dt.date(2022, 12, 1), dt.date(2022, 12, 28)
    features = assemble(adjusted, start, end, Context())
    assert features["close_only"].all()
    close_defined = {*ALPHA_CLOSE, *TALIB_CLOSE}
    for name in FLOAT_FEATURES:
        column = features[name]
        if name in close_defined:
            assert column.null_count() < column.len(), name
        elif not name.startswith(("cs_", "macro_", "market_", "days_")):
            assert column.null_count() == column.len(), name


def test_the_nightly_batch_path_recomputes_the_trailing_sessions():
    from stock_assets.definitions import defs
    from stock_assets.schedules import NIGHTLY_FEATURE_SESSIONS, daily_features_nightly

    assert defs.get_schedule_def("daily_features_nightly").default_status == (
        dg.DefaultScheduleStatus.RUNNING
    )
    tick = dt.datetime(2010, 7, 5, 22, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4)))  # holiday
    request = daily_features_nightly(dg.build_schedule_context(scheduled_execution_time=tick))
    start = request.tags["dagster/asset_partition_range_start"]
    end = request.tags["dagster/asset_partition_range_end"]
    assert end == "2010-07-02"  # the last session on or before the tick
    node = defs.resolve_asset_graph().get(dg.AssetKey(tables.GOLD_DAILY_FEATURES.key_path))
    sessions = node.partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
    assert len(sessions) == NIGHTLY_FEATURE_SESSIONS


@pytest.mark.parametrize("t", [dt.date(2010, 2, 10), dt.date(2010, 5, 14)])
def test_features_up_to_t_are_bit_identical_when_every_row_after_t_is_removed(
    adjusted, context_sources, t
):
    """Removing rows (not only changing values) changes how polars splits its work; a day's
    features must not move in the last bit (alpha158._over: no literal division)."""
    full = assemble(adjusted, FIRST, LAST, make_context(context_sources, FIRST, LAST, adjusted))
    known = adjusted.filter(pl.col("date") <= t)
    macro, earnings, intervals, sentiment = context_sources
    cut_sources = (
        macro.filter(pl.col("known_from") <= t),
        earnings.filter(pl.col("earnings_date") <= t + dt.timedelta(days=ANNOUNCE_DAYS)),
        intervals.filter(pl.col("member_from") <= t),
        sentiment.filter(pl.col("known_from") <= t),
    )
    cut = assemble(known, FIRST, t, make_context(cut_sources, FIRST, t, known))
    assert known.height < adjusted.height and cut.height < full.height
    key = ["date", "instrument"]
    before = full.filter(pl.col("date") <= t).sort(key)
    assert_frame_equal(before, cut.sort(key), check_exact=True)


def test_a_stored_row_is_recomputed_bit_for_bit_from_its_recorded_versions(tmp_path, adjusted):
    """With the real earnings calendar and membership stored as vintages: each row names the
    versions it read, and `recompute_features` gives the same bits after the inputs moved on."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    lake.overwrite_dates(tables.ADJUSTED_DAILY_BARS, adjusted, FIRST, LAST)
    sources = {"lake": lake, "earnings_source": EarningsSource()}
    assert dg.materialize([earnings_calendar], resources=sources).success
    members = {"lake": lake, "membership_source": MembershipSource()}
    assert dg.materialize([index_membership], resources=members).success
    months = range_tags("2010-05-01", "2010-06-01")
    assert dg.materialize([universe], resources={"lake": lake}, tags=months).success
    june = range_tags("2010-06-01", "2010-06-30")
    assert dg.materialize([daily_features], resources={"lake": lake}, tags=june).success
    stored = lake.read(tables.GOLD_DAILY_FEATURES)
    for column, table in tables.FEATURE_INPUTS.items():
        assert stored[column].unique().to_list() == [lake.version(table)], column
    assert stored["days_to_earnings"].is_not_null().sum() > 0

    # a later run starting mid-month (OBV continues from the stored value), then the inputs
    # move on: new versions of the universe and the earnings calendar
    later = range_tags("2010-06-14", "2010-06-30")
    assert dg.materialize([daily_features], resources={"lake": lake}, tags=later).success
    assert dg.materialize([universe], resources={"lake": lake}, tags=months).success
    assert dg.materialize([earnings_calendar], resources=sources).success
    day = dt.date(2010, 6, 15)
    row = (
        lake.read_dates(tables.GOLD_DAILY_FEATURES, day, day)
        .filter(pl.col("ticker") == "AAPL")
        .row(0, named=True)
    )
    assert row["computed_from"] == dt.date(2010, 6, 14) and row["obv_anchor_version"] is not None
    assert row["universe_version"] < lake.version(tables.UNIVERSE)  # read at the older one
    again = recompute_features(lake, row).filter(pl.col("instrument") == row["instrument"])
    again = again.filter(pl.col("date") == day).row(0, named=True)
    assert first_difference(row, again, list(SCHEMA)) is None
