"""Market-wide features ablation of `model_evaluation.py` (``--ablation``).

A feature identical for every member on a day (a macro series, the market's news tone) can only
split dates in a model of a per-day cross-sectional label. Three feature sets are trained on
the same folds: every model feature; none of the market-wide ones; and the market-wide ones
only as interactions with stock-level features (``market x cs_z_*``: a value that differs
across stocks on a day, scaled by the market state). Market-wide columns are found in the data
(one value per day among the members, on the rows before the first test slice), not listed.

The choice is made on the gate slices (rows no model was fitted or stopped on, before each
test slice); the test figures are reported beside it and never choose.

Imported by plain name from bench/ (the entry script puts bench/ on ``sys.path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
from model_eval_scoring import Score, scored
from model_eval_sets import SIGNAL_FLOOR, SetData

from stock_assets.gold.feature_set import MODEL_FEATURES
from stock_assets.models.evaluation import ICSummary, Performance, daily_ic, summarize_ic
from stock_assets.models.labels import labelled_universe
from stock_assets.models.walk_forward import (
    LightGBMConfig,
    TrainedFold,
    predict,
    training_rows,
    walk_forward,
)

# stock-level partners of the interactions: the day's z-scores of volatility and momentum
INTERACTION_PARTNERS = ("cs_z_STD20", "cs_z_ROC20")


def market_wide_columns(
    members: pl.DataFrame, before, names: Sequence[str] = MODEL_FEATURES
) -> list[str]:
    """The columns of ``names`` with at most one distinct value per day among the members on
    every day (with two or more members) before ``before``, and some value at all."""
    rows = members.filter(pl.col("date") < before)
    rows = rows.filter(pl.len().over("date") >= 2)
    per_day = rows.group_by("date").agg(pl.col(c).drop_nulls().n_unique() for c in names)
    present = rows.select(pl.col(c).is_not_null().any() for c in names).row(0, named=True)
    return [c for c in names if present[c] and per_day[c].max() <= 1]


def interaction_columns(features: pl.DataFrame, market: list[str]) -> dict[str, pl.Expr]:
    """``{market}_x_{partner}`` for every float market-wide column and stock-level partner."""
    floats = [c for c in market if features.schema[c] == pl.Float64]
    return {
        f"{m}_x_{p}": pl.col(m) * pl.col(p)
        for m in floats
        for p in INTERACTION_PARTNERS
        if p not in market
    }


@dataclass
class Variant:
    name: str
    features: list[str]
    gate: ICSummary  # daily rank IC on the gate slices, pooled over folds
    test: Score
    books: dict[str, Performance]


def gate_rank_ic(trained: list[TrainedFold], labelled: pl.DataFrame, data: SetData) -> ICSummary:
    """Rank IC of each fold's model on its own gate slice, the days pooled over folds; thin
    days left out where the plan excludes them from the test figures."""
    daily = []
    for t in trained:
        rows = training_rows(labelled, t.fold, "gate")
        scored_rows = rows.join(
            predict(t.booster, rows, t.best_iteration), on=["instrument", "ticker", "date"]
        )
        daily.append(daily_ic(scored_rows))
    days = pl.concat(daily)
    if data.plan.thin == "exclude":
        days = days.filter(pl.col("rows") >= SIGNAL_FLOOR.min_names)
    return summarize_ic(days["rank_ic"], horizon=data.plan.split.horizon)


def run_variant(
    data: SetData, name: str, features: pl.DataFrame, names: list[str], config: LightGBMConfig
) -> Variant:
    plan = data.plan
    trained, predictions = walk_forward(
        features, data.labels, plan.split, config, names, plan.normalisation
    )
    labelled = labelled_universe(features, data.labels, plan.normalisation)
    test, books = scored(data, predictions)
    return Variant(name, names, gate_rank_ic(trained, labelled, data), test, books)


def ablation(data: SetData, config: LightGBMConfig) -> tuple[list[Variant], str, list[str]]:
    """(the three variants, the one chosen on the gate slices, the market-wide columns)."""
    market = market_wide_columns(data.members, data.folds[0].test_start)
    stock_level = [c for c in MODEL_FEATURES if c not in market]
    products = interaction_columns(data.features, market)
    with_products = data.features.with_columns(**products)
    variants = [
        run_variant(data, "all features", data.features, list(MODEL_FEATURES), config),
        run_variant(data, "no market-wide features", data.features, stock_level, config),
        run_variant(
            data,
            "market-wide only as interactions",
            with_products,
            [*stock_level, *products],
            config,
        ),
    ]
    chosen = max(variants, key=lambda v: v.gate.mean).name
    return variants, chosen, market
