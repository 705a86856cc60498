"""Explanations from LightGBM's own contributions, on real stored predictions and real data.

The stored predictions of the delivered state are explained from the feature rows they were
scored on, with the booster of the version that made each; the market-wide case uses the year's
real bars with the packaged macro series, and finds the market-wide columns in the data.
"""

from __future__ import annotations

import datetime as dt
import shutil

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.gold.assemble import Context, assemble
from stock_assets.gold.feature_set import FLOAT_FEATURES
from stock_assets.lake import Lake
from stock_assets.models.explain import contributions, explain
from stock_assets.models.labels import forward_returns, labelled_universe
from stock_assets.models.walk_forward import feature_matrix
from stock_assets.outputs import Outputs
from stock_assets.pit import members_on
from stock_assets.resources.sources import MacroSource, MembershipSource, today_utc
from stock_assets.silver.index_membership import parse_intervals
from stock_assets.silver.macro_indicators import not_observed, parse_observations

START, END = dt.date(2010, 1, 4), dt.date(2010, 6, 30)
FLOAT_PRECISION = 1e-12  # contributions are summed in another order than LightGBM's own predict


def test_contributions_and_bias_add_up_to_every_stored_prediction_of_a_session(delivered):
    out = Outputs(delivered.lake, delivered.registry)
    stored = delivered.lake.read(tables.GOLD_PREDICTIONS)
    day = stored["date"].max()
    rows = stored.filter(pl.col("date") == day).sort("ticker", "role")
    assert rows["role"].n_unique() == 2  # the champion's and the challenger's shadow
    boosters = {v: delivered.registry.load_booster(v) for v in rows["model_version"].unique()}
    for prediction in rows.iter_rows(named=True):
        features = out.prediction_features(prediction)
        assert features.height == 1
        booster = boosters[prediction["model_version"]]
        [why] = explain(booster, features, top=5)
        assert abs(why.raw_score - prediction["prediction"]) <= FLOAT_PRECISION
        added = why.bias + sum(c.contribution for c in why.top) + why.rest
        assert abs(added - prediction["prediction"]) <= FLOAT_PRECISION
        sizes = [abs(c.contribution) for c in why.top]
        assert sizes == sorted(sizes, reverse=True) and len(sizes) == 5
        assert why.features == len(booster.feature_name())
        top = why.top[0]  # the value shown is the stored feature value
        assert top.value == pytest.approx(features[top.feature].cast(pl.Float64)[0], nan_ok=True)


def test_a_recomputed_feature_row_does_not_change_what_explains_a_stored_prediction(
    delivered, tmp_path
):
    """The row is read at the version the prediction recorded, not at the latest one: after the
    features are rewritten with other values, the explanation still adds up to the stored
    score, and the rewritten row would not."""
    shutil.copytree(delivered.lake.root, tmp_path / "lake")
    lake = Lake(str(tmp_path / "lake"))
    stored = lake.read(tables.GOLD_PREDICTIONS).filter(pl.col("role") == "champion")
    prediction = stored.sort("date", "ticker").row(0, named=True)
    day = prediction["date"]
    booster = delivered.registry.load_booster(prediction["model_version"])
    rows = lake.read_dates(tables.GOLD_DAILY_FEATURES, day, day)
    moved = rows.with_columns(pl.col(c) * -2.0 + 1.0 for c in FLOAT_FEATURES)
    lake.overwrite_dates(tables.GOLD_DAILY_FEATURES, moved, day, day)
    assert lake.version(tables.GOLD_DAILY_FEATURES) > prediction["feature_table_version"]
    features = Outputs(lake).prediction_features(prediction)
    [why] = explain(booster, features)
    assert abs(why.raw_score - prediction["prediction"]) <= FLOAT_PRECISION
    latest = lake.read_dates(tables.GOLD_DAILY_FEATURES, day, day)
    [now] = explain(booster, latest.filter(pl.col("instrument") == prediction["instrument"]))
    assert abs(now.raw_score - prediction["prediction"]) > 1e-9


@pytest.fixture(scope="module")
def with_macro(adjusted) -> pl.DataFrame:
    """Half a year of 120 real names' features with the packaged macro series, labelled."""
    raw = MacroSource().observations()
    macro, _ = parse_observations(raw.filter(~not_observed(raw)), today_utc())
    intervals, _ = parse_intervals(MembershipSource().intervals(), today_utc())
    names = sorted(adjusted.filter(pl.col("date") == START)["ticker"])[:120]
    bars = adjusted.filter(pl.col("ticker").is_in(names), pl.col("date") <= END)
    days = sorted(bars.filter(pl.col("date") >= START)["date"].unique())
    context = Context(macro=macro, universe=members_on(intervals, days))
    features = assemble(bars, START, END, context)
    return labelled_universe(features, forward_returns(bars, 1))


def market_wide(frame: pl.DataFrame) -> list[str]:
    """Model features with one non-null value per date across every ticker."""
    counts = frame.group_by("date").agg(
        *(pl.col(c).n_unique().alias(c) for c in FLOAT_FEATURES),
        *(pl.col(c).null_count().alias(f"{c}__nulls") for c in FLOAT_FEATURES),
    )
    return [c for c in FLOAT_FEATURES if counts[c].max() == 1 and counts[f"{c}__nulls"].max() == 0]


def fit(frame: pl.DataFrame, names: list[str], constraints=None) -> lgb.Booster:
    """A small booster of the raw forward return (not the per-day label: market-wide columns
    can only split dates, so they must carry the market's move for the trees to use them)."""
    params = {"objective": "regression", "num_leaves": 15, "min_data_in_leaf": 20,
              "learning_rate": 0.1, "verbose": -1, "num_threads": 1, "seed": 7}  # fmt: skip
    if constraints is not None:
        params["interaction_constraints"] = constraints
    data = lgb.Dataset(
        feature_matrix(frame, names), frame["forward_return"].to_numpy(), feature_name=names
    )
    return lgb.train(params, data, num_boost_round=40)


def spread_per_day(booster, frame: pl.DataFrame, columns: list[str]) -> dict[str, float]:
    """Per column: the largest (max - min) of its contribution across tickers on one day."""
    contrib = contributions(booster, frame)
    index = {n: i for i, n in enumerate(booster.feature_name())}
    table = frame.select("date").with_columns(pl.Series(c, contrib[:, index[c]]) for c in columns)
    spread = table.group_by("date").agg((pl.col(c).max() - pl.col(c).min()) for c in columns)
    return {c: float(spread[c].max()) for c in columns}


def test_a_market_wide_feature_contributes_the_same_to_every_ticker_on_a_day(with_macro):
    columns = market_wide(with_macro)
    assert {"macro_treasury_10year", "macro_wti_spot"} <= set(columns)
    assert not any(c.startswith(("cs_", "ROC")) for c in columns)  # per-stock columns vary
    stock = ["ROC5", "STD20", "cs_rank_ROC20", "rsi_14", "MA20"]
    names = [*columns, *stock]
    market = list(range(len(columns)))
    kept_apart = fit(with_macro, names, [market, list(range(len(columns), len(names)))])
    used = kept_apart.feature_importance("split")[: len(columns)]
    assert used.sum() > 0, used  # the model does split on market-wide columns
    spreads = spread_per_day(kept_apart, with_macro, columns)
    assert max(spreads.values()) <= FLOAT_PRECISION, spreads
    # Without the constraint a market-wide split shares trees with per-stock splits, and its
    # contribution carries a share of those interactions, which differs by ticker.
    mixed = fit(with_macro, names)
    assert max(spread_per_day(mixed, with_macro, columns).values()) > 1e-6
    values = np.asarray(mixed.predict(feature_matrix(with_macro, names)))
    assert np.allclose(contributions(mixed, with_macro).sum(axis=1), values, atol=1e-12)
