"""What `model_evaluation.py` scores beside the model: the best single Alpha158 factor (chosen
on training rows only) and the sanity runs (the label as prediction or feature, shuffled labels).

Imported by plain name from bench/ (the entry script puts bench/ on ``sys.path``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import polars as pl
from model_eval_scoring import Score, score, scored
from model_eval_sets import KEY, SetData, strided, train_folds

from stock_assets.gold.alpha158 import ALPHA158_COLUMNS
from stock_assets.gold.feature_set import MODEL_FEATURES
from stock_assets.models.evaluation import (
    Performance,
    label_as_prediction,
    shuffled_prediction,
    summarize_ic,
)
from stock_assets.models.labels import labelled_universe
from stock_assets.models.walk_forward import Fold, LightGBMConfig, training_rows

SANITY_ROUNDS = 50  # boosting rounds of the trained sanity runs


# -- the best single factor, chosen on training rows only --------------------------------------
def rank_corr(name: str, label: str = "label") -> pl.Expr:
    """Spearman correlation of ``name`` with ``label`` over the rows where both have a value
    (at least three), as an aggregation."""
    has = pl.col(name).is_not_null() & pl.col(label).is_not_null()
    corr = pl.corr(
        pl.col(name).filter(has).rank("average"), pl.col(label).filter(has).rank("average")
    )
    return pl.when(has.sum() >= 3).then(corr).alias(name)


def factor_daily_rank_ic(labelled: pl.DataFrame, factors: list[str]) -> pl.DataFrame:
    """Per date, each factor's rank IC with the label; one date's value uses only its rows.
    (`evaluation.daily_ic` does one prediction column; this does all factors in one pass.)"""
    return labelled.group_by("date").agg(rank_corr(n) for n in factors).sort("date")


def choose_factor(
    labelled: pl.DataFrame, fold: Fold, factors: list[str], daily: pl.DataFrame | None
) -> tuple[str, float, float]:
    """(factor, sign, training score): the largest |ICIR| of the daily rank IC over the fold's
    training rows (cross-sectional sets), or the largest |mean over names of the time-series
    rank IC| (few-name sets); the sign is that figure's."""
    train = training_rows(labelled, fold, "train")
    if daily is not None:
        days = train.select("date").unique()
        window = daily.join(days, on="date")
        figures = {}
        for name in factors:
            summary = summarize_ic(window[name])
            if summary.days >= 20 and math.isfinite(summary.icir):
                figures[name] = summary.icir
    else:
        per_name = train.group_by("instrument").agg(rank_corr(n) for n in factors)
        figures = {}
        for name in factors:
            values = per_name[name].drop_nulls().drop_nans()
            if values.len():
                figures[name] = float(values.mean())
    best = max(figures, key=lambda n: abs(figures[n]))
    return best, math.copysign(1.0, figures[best]), figures[best]


def factor_baseline(data: SetData) -> tuple[Score, dict[str, Performance], list[dict]]:
    """(score, books, factor chosen per fold) of sign x the chosen factor on each test slice."""
    factors = [c for c in ALPHA158_COLUMNS if data.features[c].null_count() < data.features.height]
    daily = factor_daily_rank_ic(data.labelled, factors) if data.plan.cross_sectional else None
    chosen, parts = [], []
    for fold in data.folds:
        factor, sign, figure = choose_factor(data.labelled, fold, factors, daily)
        chosen.append({"fold": fold.number, "factor": factor, "sign": sign, "train": figure})
        parts.append(fold.rows(data.members, "test").select(*KEY, prediction=pl.col(factor) * sign))
    factor_score, factor_books = scored(data, pl.concat(parts))
    return factor_score, factor_books, chosen


# -- sanity runs ------------------------------------------------------------------------------
def shuffled_within(
    frame: pl.DataFrame, column: str, by: str, seed: int, output: str | None = None
) -> pl.DataFrame:
    """``column`` permuted at random inside each ``by`` group, independently per group.

    `evaluation.shuffled_prediction` does this for the label within dates only; this one also
    shuffles within names over time, and shuffles training labels in place. Not
    `pl.col(column).shuffle(seed).over(by)`: with a fixed seed that applies one and the same
    permutation to every group of the same size, so on a small, stable cross-section each name
    is scored against the same other name's return every day, which is not noise (rank IC
    -0.05, t -18 on the 20-name set).
    """
    key = pl.Series("__key", np.random.default_rng(seed).random(frame.height))
    return (
        frame.with_columns(key)
        .with_columns(pl.col(column).sort_by("__key").over(by).alias(output or column))
        .drop("__key")
    )


def sanity_folds_of(data: SetData, sanity_folds: int, series_cap: int) -> list[Fold]:
    """The evaluated folds the trained sanity runs use: the first ``sanity_folds`` on the
    cross-sectional sets; on the few-name sets every one, or at most ``series_cap`` (> 0)
    spread evenly over them, the newest kept (`strided`)."""
    folds = data.folds
    if data.plan.cross_sectional:
        return folds[: min(sanity_folds, len(folds))]
    if series_cap and len(folds) > series_cap:
        return strided(folds, math.ceil(len(folds) / series_cap))
    return folds


def sanity_runs(
    data: SetData, config: LightGBMConfig, sanity_folds: int, series_cap: int = 0
) -> dict[str, Score]:
    """Scores of the label as the prediction, the label shuffled as the prediction, and (on
    `sanity_folds_of` the evaluated folds) a model trained with the label as a feature and
    one trained on shuffled labels."""
    plan, test_rows = data.plan, data.test_rows
    sanity = {}
    sanity["label as prediction"] = score(label_as_prediction(test_rows), plan)
    by = "date" if plan.cross_sectional else "instrument"  # across names / across time
    if plan.cross_sectional:  # the core's helper
        sanity["label shuffled per date (core helper)"] = score(
            shuffled_prediction(test_rows, seed=3), plan
        )
    sanity[f"label shuffled per {by} as prediction"] = score(
        shuffled_within(test_rows, "label", by, seed=3, output="prediction"), plan
    )
    # at most SANITY_ROUNDS boosting rounds (the leak would otherwise keep improving for all
    # 300, and a few dozen already rank it near 1)
    folds = sanity_folds_of(data, sanity_folds, series_cap)
    quick = dataclasses.replace(config, num_boost_round=SANITY_ROUNDS)
    if folds:
        small = data.features.filter(pl.col("date") <= folds[-1].test_end)
        members = small.filter(pl.col("in_universe").fill_null(False))
        small_tests = test_rows.filter(pl.col("fold").is_in([f.number for f in folds]))
        labels, norm = data.labels, plan.normalisation
        leak = small.join(labels.select(*KEY, leak_label="forward_return"), on=KEY, how="left")
        _, leaked = train_folds(
            labelled_universe(leak, labels, norm),
            leak.filter(pl.col("in_universe").fill_null(False)),
            folds, quick, (*MODEL_FEATURES, "leak_label"),
        )  # fmt: skip
        shuffled = shuffled_within(labels, "forward_return", by, seed=5)
        _, noise = train_folds(labelled_universe(small, shuffled, norm), members, folds, quick)
        what = f"{len(folds)} folds" + (
            f" of {len(data.folds)}" if len(folds) < len(data.folds) else ""
        )
        for label, pred in (
            (f"label as a feature, trained ({what})", leaked),
            (f"trained on shuffled labels ({what})", noise),
        ):
            rows = small_tests.select(*KEY, "fold", "label").join(
                pred.select(*KEY, "prediction"), on=KEY, how="left"
            )
            sanity[label] = score(rows, plan)
    return sanity
