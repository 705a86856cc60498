"""Market-wide features ablation of `model_evaluation.py` (``--ablation``).

A feature identical for every member on a day (a macro series, the market's news tone) can only
split dates in a model of a per-day cross-sectional label. Three feature sets are trained on
the same folds: every model feature; none of the market-wide ones; and the market-wide ones
only as interactions with stock-level features (``market x cs_z_*``: a value that differs
across stocks on a day, scaled by the market state). Market-wide columns are found in the data
(one value per day among the members, on the rows before the first test slice), not listed.

The choice is made on the gate slices (rows no model was fitted or stopped on, before each
test slice) with the platform's promotion rule: a variant replaces "all features" only if its
paired Newey-West t on the same gate days reaches `gate.MIN_T` (`gate.promotes`); the test
figures are reported beside it and never choose.

Imported by plain name from bench/ (the entry script puts bench/ on ``sys.path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
from model_eval_scoring import Score, scored
from model_eval_sets import SIGNAL_FLOOR, SetData, train_folds

from stock_assets.gold.feature_set import MODEL_FEATURES
from stock_assets.models import gate
from stock_assets.models.evaluation import ICSummary, Performance, daily_ic, summarize_ic
from stock_assets.models.labels import labelled_universe
from stock_assets.models.walk_forward import (
    LightGBMConfig,
    TrainedFold,
    predict,
    training_rows,
)

ROW_KEY = ["instrument", "ticker", "date"]
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
    gate_rows: pl.DataFrame  # the pooled gate rows with label and prediction
    against_all: gate.PairedComparison | None = None
    verdict: str = ""


def gate_predictions(
    trained: list[TrainedFold], labelled: pl.DataFrame, data: SetData
) -> pl.DataFrame:
    """Each fold's model on its own gate slice (a day shared with the previous fold's slice
    kept once, from the earlier fold), pooled; thin days left out where the plan excludes
    them from the test figures."""
    parts, last = [], None
    for t in trained:
        rows = training_rows(labelled, t.fold, "gate")
        if last is not None:
            rows = rows.filter(pl.col("date") > last)
        last = t.fold.gate_end
        predicted = predict(t.booster, rows, t.best_iteration).select(*ROW_KEY, "prediction")
        parts.append(rows.select(*ROW_KEY, "label").join(predicted, on=ROW_KEY))
    rows = pl.concat(parts)
    if data.plan.thin == "exclude":
        rows = rows.filter(pl.len().over("date") >= SIGNAL_FLOOR.min_names)
    return rows


def run_variant(
    data: SetData, name: str, features: pl.DataFrame, names: list[str], config: LightGBMConfig
) -> Variant:
    plan = data.plan
    labelled = labelled_universe(features, data.labels, plan.normalisation)
    members = features.filter(pl.col("in_universe").fill_null(False))
    trained, predictions = train_folds(labelled, members, data.folds, config, names)
    test, books = scored(data, predictions)
    rows = gate_predictions(trained, labelled, data)
    summary = summarize_ic(daily_ic(rows)["rank_ic"], horizon=plan.split.horizon)
    return Variant(name, names, summary, test, books, rows)


def ablation(data: SetData, config: LightGBMConfig) -> tuple[list[Variant], str, list[str]]:
    """(the three variants, the one chosen on the gate slices by the promotion rule, the
    market-wide columns)."""
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
    baseline = variants[0]
    for v in variants[1:]:
        pair = v.gate_rows.join(
            baseline.gate_rows.select(*ROW_KEY, champion_prediction="prediction"), on=ROW_KEY
        )
        v.against_all = gate.paired_rank_ic(pair, data.plan.split.horizon)
        promoted, v.verdict = gate.promotes(v.against_all)
        v.verdict = ("replaces all features: " if promoted else "stays behind: ") + v.verdict
    winners = [v for v in variants[1:] if v.verdict.startswith("replaces")]
    chosen = max(winners, key=lambda v: v.against_all.t_stat).name if winners else baseline.name
    return variants, chosen, market
