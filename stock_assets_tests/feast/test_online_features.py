"""The Feast assets on the real S&P 500 year: online freshness, versions, historical == as-of."""

import datetime as dt
import shutil

import dagster as dg
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stock_assets import tables
from stock_assets.feast import feature_store as fs
from stock_assets.feast.daily_features_online import (
    FEAST_ASSETS,
    ONLINE_FRESH,
    daily_features_offline,
    daily_features_online,
    online_freshness,
)
from stock_assets.gold.daily_features import daily_features
from stock_assets.gold.feature_set import ONLINE_FEATURES
from stock_assets.lake import conform
from stock_assets.local_stack import online_store_status, sessions_without_context
from stock_assets.partitions import range_tags
from stock_assets.resources.feast import FeastResource
from stock_assets.resources.lake import LakeResource
from stock_assets_tests.conftest import FIRST, LAST

SERVED_AS = [
    pl.col(n).fill_nan(None) if t == pl.Float64 else pl.col(n) for n, t in ONLINE_FEATURES.items()
]


def check_evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == ONLINE_FRESH
    ]
    return evaluation


@pytest.fixture(scope="module")
def served(lake_with_features, tmp_path_factory):
    """The whole store built as from the UI (no partition range: every session), then LAST's
    features rewritten (a new Delta version) and copied to the snapshot alone (the online store
    one version behind), then LAST loaded online as the chain's range run does. On a copy of
    the session's lake: the rewrite must not change what the feature tests read."""
    copy = tmp_path_factory.mktemp("feast_lake") / "lake"
    shutil.copytree(lake_with_features.root, copy)
    lake = LakeResource(root=str(copy))
    feast = FeastResource(repo_dir=str(tmp_path_factory.mktemp("feast")))
    resources = {"lake": lake, "feast": feast}
    whole = dg.materialize(FEAST_ASSETS, resources=resources)
    assert whole.success and check_evaluation(whole).passed
    built = whole.asset_materializations_for_node("feast__daily_features_offline")[0].metadata
    assert built["date_range"].value == f"{FIRST}..{LAST}"

    assert dg.materialize([daily_features], resources={"lake": lake}, partition_key=str(LAST))
    last_only = range_tags(str(LAST), str(LAST))
    assert dg.materialize([daily_features_offline], resources=resources, tags=last_only).success
    settings = feast.settings()
    behind = online_freshness(fs.open_store(settings), settings)
    last = dg.materialize([daily_features_online], resources=resources, tags=last_only)
    assert last.success
    version = lake.version(tables.GOLD_DAILY_FEATURES)
    return lake, settings, fs.open_store(settings), behind, check_evaluation(last), version


def test_online_store_is_checked_fresh_against_the_newest_session(served):
    lake, settings, store, behind, after, version = served
    tickers = lake.read_dates(tables.GOLD_DAILY_FEATURES, LAST, LAST)["ticker"]
    assert behind.passed is False  # LAST's new version is in the snapshot, not yet online
    assert behind.metadata["tickers_behind"].value == tickers.len() == 499
    assert after.passed is True
    assert after.metadata["tickers_behind"].value == 0
    assert after.metadata["newest_session"].value == str(LAST)

    # a ticker that stopped trading (WYE, acquired 2009-10) reads as stale, one never loaded as
    # missing (Feast itself would hand back the old row: it does not apply the TTL online)
    now = fs.event_time(LAST) + dt.timedelta(hours=1)
    online = fs.online_features(store, ["WYE", "AAPL", "NOSUCH"], dt.timedelta(days=4), now=now)
    assert online["status"].to_list() == ["stale", "fresh", "missing"]
    assert online.row(0, named=True)["rsi_14"] is not None  # the old values are still there


def test_online_rows_equal_the_delta_rows_at_the_version_they_carry(served):
    lake, _, store, _, _, version = served
    newest = lake.read_dates(tables.GOLD_DAILY_FEATURES, LAST, LAST).sort("ticker")
    online = fs.online_features(store, newest["ticker"].to_list(), dt.timedelta(days=1), now=None)
    assert online[fs.VERSION].unique().to_list() == [version]
    # time travel to the served version reproduces every served value exactly
    at_version = lake.read_dates(tables.GOLD_DAILY_FEATURES, LAST, LAST, version=version)
    want = at_version.sort("ticker").select("ticker", *SERVED_AS)
    assert_frame_equal(online.select(want.columns), want, check_exact=True)
    assert online["status"].unique().to_list() == ["stale"]  # by the wall clock: 2010 is old


def test_historical_retrieval_equals_a_polars_asof_join_on_real_features(served):
    lake, settings, store, _, _, _ = served
    snapshot = pl.read_parquet(settings.snapshot_dir / "*.parquet")
    gold = lake.read(tables.GOLD_DAILY_FEATURES)
    assert snapshot.height == gold.height
    rng = np.random.default_rng(5)
    tickers = [*gold["ticker"].unique().sort().to_list(), "NOSUCH"]
    start = fs.event_time(FIRST) - dt.timedelta(days=7)
    span_us = int((fs.event_time(LAST) - start).total_seconds() * 1e6) + 10 * 86_400_000_000
    rows = [
        (str(rng.choice(tickers)), start + dt.timedelta(microseconds=int(rng.integers(span_us))))
        for _ in range(3000)
    ]
    us = dt.timedelta(microseconds=1)
    for ticker, day in gold.sample(200, seed=3).select("ticker", "date").iter_rows():
        close = fs.event_time(day)
        rows += [(ticker, close), (ticker, close - us), (ticker, close + settings.ttl + us)]
    entity_rows = pl.DataFrame(
        rows, schema={fs.ENTITY: pl.String, fs.EVENT_TS: fs.TIMESTAMP}, orient="row"
    )
    got = fs.historical_features(store, entity_rows)

    features = snapshot.sort(fs.EVENT_TS)
    want = (
        entity_rows.with_row_index("row")
        .sort(fs.EVENT_TS)
        .join_asof(
            features.rename({fs.EVENT_TS: "feature_ts"}),
            left_on=fs.EVENT_TS,
            right_on="feature_ts",
            by=fs.ENTITY,
            strategy="backward",
            tolerance=settings.ttl,
            check_sortedness=False,
        )
        .sort("row")
        .select(fs.ENTITY, fs.EVENT_TS, fs.VERSION, *SERVED_AS)
    )
    assert_frame_equal(got, want, check_exact=True)
    served_rows = got.filter(pl.col(fs.VERSION).is_not_null()).height
    assert 0.5 * got.height < served_rows < got.height  # both outcomes occur


def test_make_runs_progress_line_reads_the_online_store_and_survives_an_empty_table(
    served, tmp_path, monkeypatch
):
    _, settings, _, _, _, _ = served
    nothing_yet = LakeResource(root=str(tmp_path / "no-lake"))
    assert sessions_without_context(nothing_yet) is None
    assert online_store_status(nothing_yet) == (0, 0, None, "no features yet")
    empty = LakeResource(root=str(tmp_path / "lake"))
    gold = tables.GOLD_DAILY_FEATURES
    nothing = pl.DataFrame(schema=dict(gold.schema))
    empty.ensure_table(gold, conform(gold, nothing).schema)
    assert online_store_status(empty) == (0, 0, None, "no features yet")
    lake, *_ = served
    monkeypatch.setenv("STOCK_FEAST_REPO", str(settings.repo_dir))
    assert online_store_status(lake)[:3] == (499, 499, LAST)
    monkeypatch.setenv("STOCK_FEAST_REPO", str(tmp_path / "never-applied"))
    current, total, _, problem = online_store_status(lake)
    assert (current, total) == (0, 499) and problem
