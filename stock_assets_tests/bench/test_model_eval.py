"""The evaluation bench evaluates what ships, shows only Newey-West t's, keeps thin sessions
out of its figures, and finds market-wide features in the data (real S&P 500 bars)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from model_eval_ablation import interaction_columns, market_wide_columns  # noqa: E402
from model_eval_scoring import score  # noqa: E402
from model_eval_sets import (  # noqa: E402
    PLANS,
    SIGNAL_FLOOR,
    VARIANTS,
    context_of,
    load_sources,
    plan_for,
    scored_sessions,
)

from stock_assets.gold.assemble import assemble  # noqa: E402
from stock_assets.gold.feature_set import MACRO_COLUMNS, MODEL_FEATURES  # noqa: E402
from stock_assets.models.challenger import TrainingConfig  # noqa: E402
from stock_assets.models.evaluation import (  # noqa: E402
    daily_ic,
    hac_lags,
    label_as_prediction,
    summarize_ic,
)
from stock_assets.models.training import SHIPPED_SPLIT  # noqa: E402


@pytest.fixture(scope="module")
def year_features(adjusted) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features of 80 real S&P names over the year with the bench's own context, and the
    context's universe restricted to them."""
    names = sorted(adjusted["instrument"].unique().to_list())[::6][:80]
    bars = adjusted.filter(pl.col("instrument").is_in(names))
    context = context_of(bars, PLANS["sp500_2009"], load_sources())
    features = assemble(bars, bars["date"].min(), bars["date"].max(), context)
    sampled = context.universe.join(bars.select("ticker").unique(), on="ticker")
    return features, sampled


def test_every_plan_evaluates_the_shipped_settings():
    shipped = TrainingConfig()
    for name in PLANS:
        plan = plan_for(name, "shipped")
        assert plan.split == shipped.split()
        assert plan.training.lightgbm() == shipped.lightgbm()
        assert plan.split.horizon == SHIPPED_SPLIT.horizon
        assert plan.split.refit_every == SHIPPED_SPLIT.refit_every == "monthly"
        assert plan.split.gate_sessions == SHIPPED_SPLIT.gate_sessions > 0
        assert plan.long_lags >= plan.split.horizon
    rolling = plan_for("sp500_1990_adjclose", "rolling").split
    assert rolling.window == "rolling" and rolling == VARIANTS["rolling"].split()
    assert dataclasses.replace(rolling, window="expanding") == TrainingConfig().split()


def test_scores_carry_newey_west_t_with_at_least_h_lags(year_features):
    features, _ = year_features
    rows = features.filter(pl.col("in_universe").fill_null(False)).select(
        "instrument", "date", label=pl.col("ROC5")
    )
    noisy = label_as_prediction(rows.drop_nulls("label"), noise=0.05, seed=1)
    for name in ("sp500_2009", "msft_1986"):
        plan = PLANS[name]
        result = score(noisy, plan)
        days = noisy["date"].n_unique()
        assert result.nw_lags == hac_lags(plan.split.horizon, days) >= plan.split.horizon
        assert result.rank_ic > 0.2 and result.rank_ic_nw_t > 2
        if plan.cross_sectional:  # the core's summary with the horizon's HAC lags
            core = summarize_ic(daily_ic(noisy)["rank_ic"], horizon=plan.split.horizon)
            assert result.rank_ic_nw_t == pytest.approx(core.nw_t_stat, rel=1e-12)
        assert not hasattr(result, "rank_ic_t")  # no plain t to print


def test_thin_sessions_are_excluded_or_flagged(year_features):
    features, universe = year_features
    members = features.filter(pl.col("in_universe").fill_null(False)).select("instrument", "date")
    days = sorted(members["date"].unique().to_list())
    full, cut = days[-2], days[-1]
    keep = members.filter(pl.col("date") == cut)["instrument"].head(SIGNAL_FLOOR.min_names - 1)
    rows = members.filter((pl.col("date") == full) | pl.col("instrument").is_in(keep.implode()))
    rows = rows.filter(pl.col("date").is_in([full, cut]))
    # 80 names: the floor's 50 names is met on the full day, not on the cut one
    excluded = scored_sessions(rows, universe, PLANS["sp500_2009"])
    assert excluded.filter(pl.col("date") == cut)["thin"].item()
    assert excluded.filter("scored")["date"].to_list() == [full]
    flagged = scored_sessions(rows, universe, PLANS["sp500_1990_adjclose"])
    assert flagged.filter("scored").height == 2 and flagged["thin"].sum() >= 1
    series = scored_sessions(rows, universe, PLANS["msft_1986"])
    assert series["scored"].all() and not series["thin"].any()


def test_market_wide_columns_are_found_in_the_data_as_known_before_the_test(year_features):
    features, _ = year_features
    members = features.filter(pl.col("in_universe").fill_null(False))
    before = sorted(members["date"].unique().to_list())[150]
    found = market_wide_columns(members, before)
    with_values = [c for c in MACRO_COLUMNS if members[c].is_not_null().any()]
    assert with_values and set(with_values) <= set(found)
    assert not {c for c in found if c.startswith(("cs_", "ROC", "STD", "sma_"))}
    # one stock's value differing on one day before the cut: no longer market-wide
    first = members.filter(pl.col("date") == members["date"].min())["instrument"][0]
    column = with_values[0]
    varied = members.with_columns(
        pl.when((pl.col("instrument") == first) & (pl.col("date") == members["date"].min()))
        .then(pl.col(column) + 1.0)
        .otherwise(pl.col(column))
        .alias(column)
    )
    assert column not in market_wide_columns(varied, before)
    # rows after the cut perturbed or removed: the same columns
    later = varied.filter(pl.col("date") >= before)
    assert market_wide_columns(members.filter(pl.col("date") < before), before) == found
    assert market_wide_columns(pl.concat([members.filter(pl.col("date") < before), later]),
                               before) == found  # fmt: skip
    products = interaction_columns(features, found)
    assert products and all("_x_cs_z_" in name for name in products)
    assert set(products).isdisjoint(MODEL_FEATURES)
