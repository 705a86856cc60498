"""Qlib's own workflow in `model_evaluation.py`: the same bars written as a Qlib provider
(`gold.qlib_binary`), Qlib's `Alpha158` handler and `LGBModel` with its benchmark parameters,
trained on our folds and predicting our test slices.

Imported by plain name from bench/ (the entry script puts bench/ on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from model_eval_clock import Clock
from model_eval_sets import KEY, Plan

from stock_assets.gold.qlib_binary import init_qlib_client, write_qlib_provider
from stock_assets.models.walk_forward import Fold

# Qlib's published LightGBM parameters for Alpha158 (its benchmark workflow config), with the
# thread count of this machine instead of 20.
QLIB_LGB_PARAMS = {
    "loss": "mse",
    "colsample_bytree": 0.8879,
    "learning_rate": 0.2,
    "subsample": 0.8789,
    "lambda_l1": 205.6999,
    "lambda_l2": 580.9768,
    "max_depth": 8,
    "num_leaves": 210,
    "num_threads": 2,
}


class _NoRecorder:
    """Stands in for Qlib's experiment recorder (mlflow), which `LGBModel.fit` asks to log every
    boosting round's loss: recording is not modelling, and mlflow 3.17 refuses Qlib's file
    store unless told otherwise."""

    def log_metrics(self, *args, **kwargs) -> None:
        return None


def write_universe(root: Path, features: pl.DataFrame) -> str:
    """instruments/universe.txt: one line per run of consecutive member bars of an instrument
    (Qlib keeps the rows inside an instrument's spans), so Qlib trains on our universe."""
    runs = (
        features.select("instrument", "date", member=pl.col("in_universe").fill_null(False))
        .sort(KEY)
        .with_columns(run=(pl.col("member") != pl.col("member").shift(1)).over("instrument"))
        .with_columns(pl.col("run").fill_null(True).cum_sum().over("instrument"))
        .filter("member")
        .group_by("instrument", "run")
        .agg(first=pl.col("date").min(), last=pl.col("date").max())
        .sort("instrument", "first")
    )
    lines = [f"{i}\t{a}\t{b}\n" for i, _, a, b in runs.iter_rows()]
    (root / "instruments" / "universe.txt").write_text("".join(lines))
    return "universe"


@dataclass
class QlibRun:
    predictions: pl.DataFrame
    clock: Clock
    best_iterations: list[int] = field(default_factory=list)


def run_qlib(
    adjusted: pl.DataFrame, features: pl.DataFrame, folds: list[Fold], plan: Plan, root: Path
) -> QlibRun:
    """Qlib's Alpha158 + LGBModel workflow on the same bars, folds and test slices."""
    clock = Clock()
    with clock("write binary data"):
        span, _ = write_qlib_provider(root, adjusted)
        market = write_universe(root, features)
    with contextlib.redirect_stdout(io.StringIO()):  # its optional-model notices
        from qlib.contrib.data.handler import Alpha158
        from qlib.contrib.model import gbdt
        from qlib.data.dataset import DatasetH
    from qlib.log import set_global_logger_level

    gbdt.R = _NoRecorder()
    init_qlib_client(root)
    set_global_logger_level(logging.WARNING)
    horizon = plan.split.horizon
    # The label is ours: the h-session close-to-close return from t. Cross-sectional sets get
    # Qlib's default label processing (drop missing, z-score per date). One name has no
    # cross-section to z-score over, and on raw returns (std ~0.05) Qlib's L1/L2 penalties
    # (206 / 581) make every prediction one constant. So the few-name sets z-score the label
    # over time instead (Qlib's ZScoreNorm, fitted on the first fold's training window only),
    # as on CSI300's z-scored labels; on 1-6k training rows L1 206 still leaves no split.
    learn = [{"class": "DropnaLabel"}]
    if plan.cross_sectional:
        learn.append({"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}})
    else:
        learn.append({"class": "ZScoreNorm", "kwargs": {"fields_group": "label"}})
    with clock("features (Alpha158 handler)"):
        handler = Alpha158(
            instruments=market,
            start_time=span[0],
            end_time=str(folds[-1].test_end),
            fit_start_time=str(folds[0].train_start),
            fit_end_time=str(folds[0].train_end),
            learn_processors=learn,
            label=([f"Ref($close, -{horizon})/$close - 1"], ["LABEL0"]),
        )
    parts, best = [], []
    for fold in folds:
        segments = {
            part: (str(fold.bounds(part)[0]), str(fold.bounds(part)[1]))
            for part in ("train", "validation", "test")
        }
        segments["valid"] = segments.pop("validation")
        dataset = DatasetH(handler, segments=segments)
        model = gbdt.LGBModel(**QLIB_LGB_PARAMS)
        with clock("training"), contextlib.redirect_stdout(io.StringIO()):
            model.fit(dataset, verbose_eval=0)
        with clock("inference"):
            series = model.predict(dataset, segment="test")
        best.append(int(model.model.best_iteration))
        frame = series.rename("prediction").reset_index()
        parts.append(
            pl.from_pandas(frame).select(
                pl.col("instrument").cast(pl.String),
                pl.col("datetime").cast(pl.Date).alias("date"),
                pl.col("prediction").cast(pl.Float64),
            )
        )
    return QlibRun(pl.concat(parts).sort("date", "instrument"), clock, best)
