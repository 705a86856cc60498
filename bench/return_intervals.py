"""Expected-return intervals on real data: coverage and width, normalised against unconditional.

    nice .venv/bin/python bench/return_intervals.py [--sets sp500_2009] [--folds N] [--sample N]
        [--out results.json]

For each data set: the bars adjusted and the features built as `model_evaluation.py` does
(`model_eval_sets`), the shipped walk-forward (monthly refits with train, early-stopping and
gate slices: `model_eval_run.train_ours`), then per fold `models.return_intervals` calibrated on
the fold's gate slice (labels known before the month) and applied to its test month: the
score mapped to an h-session expected return with the stock's trailing volatility, intervals
at 80/90/95% from volatility-normalised residuals, and the unconditional interval (absolute
residuals, one width) on the same rows. Printed: coverage and mean width (return units,
fractions over h sessions) overall, per trailing-volatility decile and per month. Thin
sessions are excluded as in the model evaluation (the test rows of `prepare`).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # LightGBM's OpenMP threads sleep when idle

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import polars as pl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_eval_clock import Clock, load_average  # noqa: E402
from model_eval_run import train_ours  # noqa: E402
from model_eval_sets import (  # noqa: E402
    KEY,
    PLANS,
    adjusted_bars,
    context_of,
    load_sources,
    plan_for,
    prepare,
)

from stock_assets.models.return_intervals import (  # noqa: E402
    LEVELS,
    calibrate,
    check_no_overlap,
    coverage_by,
    predict,
    trailing_volatility,
)
from stock_assets.models.walk_forward import predict as predict_scores  # noqa: E402
from stock_assets.models.walk_forward import training_rows  # noqa: E402


def fold_intervals(data, ours, volatility: pl.DataFrame, horizon: int) -> tuple[pl.DataFrame, list]:
    """Every fold's test rows with their intervals, and each fold's mapping (a, b)."""
    closes = data.adjusted.select(*KEY, last_close="close")
    parts, mappings = [], []
    for trained in ours.trained:
        fold = trained.fold
        gate = training_rows(data.labelled, fold, "gate")
        scores = predict_scores(trained.booster, gate, trained.best_iteration)
        calibration = gate.select(*KEY, "label_known_on", "forward_return").join(
            scores.select(*KEY, score="prediction"), on=KEY
        )
        calibration = calibration.join(volatility, on=KEY, how="left")
        test = data.test_rows.filter(pl.col("fold") == fold.number)
        if test.is_empty():
            continue
        predicted = (
            test.select(*KEY, "ticker", "forward_return")
            .join(ours.predictions.select(*KEY, score="prediction"), on=KEY)
            .join(volatility, on=KEY, how="left")
            .join(closes, on=KEY, how="left")
        )
        check_no_overlap(calibration, predicted)
        model = calibrate(calibration, horizon)
        parts.append(predict(model, predicted, unconditional=True))
        mappings.append(
            {
                "fold": fold.number,
                "calibration": f"{model.calibration_start}..{model.calibration_end}",
                "labels_known_until": str(model.labels_known_until),
                "test": f"{fold.test_start}..{fold.test_end}",
                "calibration_rows": model.calibration_rows,
                "a": round(model.intercept, 4),
                "b": round(model.slope, 4),
            }
        )
    return pl.concat(parts), mappings


def with_groups(intervals: pl.DataFrame) -> pl.DataFrame:
    """Adds ``month`` and ``volatility_decile`` (1 = calmest tenth of the pooled test rows)."""
    decile = (pl.col("volatility").rank("ordinal") * 10 / pl.col("volatility").count()).ceil()
    return intervals.filter(pl.col("expected_return").is_finite()).with_columns(
        month=pl.col("date").dt.strftime("%Y-%m"),
        volatility_decile=decile.cast(pl.Int32),
    )


def long_form(table: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """One row per group and level: coverage and width, normalised and unconditional."""
    parts = []
    for level in LEVELS:
        s = f"{round(level * 100)}"
        parts.append(
            table.select(
                *keys,
                "rows",
                level=pl.lit(s),
                coverage=f"coverage_{s}",
                unconditional_coverage=f"unconditional_coverage_{s}",
                width=f"width_{s}",
                unconditional_width=f"unconditional_width_{s}",
            )
        )
    return pl.concat(parts).sort([*keys, "level"])


def show(title: str, table: pl.DataFrame) -> None:
    print(f"\n{title}")
    with pl.Config(
        tbl_rows=200, tbl_cols=30, tbl_width_chars=200, float_precision=4,
        tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
    ):  # fmt: skip
        print(table)


def evaluate(name: str, args: argparse.Namespace, sources) -> dict:
    started = time.perf_counter()
    plan = plan_for(name, "shipped")
    if args.sample and plan.thin == "exclude":  # a sample is below the floor by construction
        plan = dataclasses.replace(plan, thin="flag")
    adjusted = adjusted_bars(name, args.sample)
    data = prepare(adjusted, context_of(adjusted, plan, sources), plan, args.folds, Clock())
    ours = train_ours(data, plan.training.lightgbm(), Clock())
    horizon = plan.split.horizon
    intervals, mappings = fold_intervals(
        data, ours, trailing_volatility(adjusted, horizon), horizon
    )
    grouped = with_groups(intervals)
    overall = coverage_by(grouped)
    deciles = coverage_by(grouped, ["volatility_decile"]).join(
        grouped.group_by("volatility_decile").agg(sigma=pl.col("volatility").mean()),
        on="volatility_decile",
    )
    months = coverage_by(grouped, ["month"])
    print(f"\n== {name}: horizon {horizon} session(s), {len(mappings)} folds, "
          f"{grouped.height} test rows with a volatility, {grouped['date'].n_unique()} sessions "
          f"(thin sessions excluded); returns are fractions over {horizon} session(s)")  # fmt: skip
    show("mapping expected_return = sigma * (a + b * score), per fold", pl.DataFrame(mappings))
    show("overall: coverage (share) and mean width (return units)", long_form(overall, []))
    show(
        "per trailing-volatility decile (1 = calmest; sigma: mean trailing volatility)",
        long_form(deciles, ["volatility_decile", "sigma"]),
    )
    show("per month", long_form(months, ["month"]))
    print(f"{name}: {time.perf_counter() - started:.0f}s")
    return {
        "set": name,
        "mappings": mappings,
        "overall": overall.to_dicts(),
        "deciles": deciles.to_dicts(),
        "months": months.to_dicts(),
        "levels": list(LEVELS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="sp500_2009", help="comma-separated data sets")
    parser.add_argument("--folds", type=int, default=0, help="only the first N folds (0: all)")
    parser.add_argument("--sample", type=int, default=0, help="about N instruments (0: all)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = set(names) - set(PLANS)
    if unknown:
        parser.error(f"unknown sets {sorted(unknown)}; choose from {', '.join(PLANS)}")
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"load average at start: {load_average()}")
    sources = load_sources()
    results = [evaluate(name, args, sources) for name in names]
    print(f"load average at end: {load_average()}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
