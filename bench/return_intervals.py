"""Expected-return intervals on real data: coverage and width, normalised against unconditional.

    nice .venv/bin/python bench/return_intervals.py [--sets sp500_2009] [--folds N] [--every K]
        [--sample N] [--out results.json]

For each data set: the bars adjusted and the features built as `model_evaluation.py` does
(`model_eval_sets`), the shipped walk-forward (monthly refits with train, early-stopping and
gate slices: `model_eval_run.train_ours`), then per fold `models.return_intervals` calibrated on
the fold's gate slice (labels known before the month) and applied to its test month: the
score mapped to an h-session expected return with the stock's trailing volatility, intervals
at 80/90/95% from volatility-normalised residuals, and the unconditional interval (absolute
residuals, one width) on the same rows. Printed: coverage and mean width (return units,
fractions over h sessions) overall, per trailing-volatility decile and per month. Thin
sessions are excluded as in the model evaluation (the test rows of `prepare`). ``--every K``
evaluates 1 in K monthly folds (each the shipped refit for its month), as the model evaluation
does; every table header names K and the months covered. The summary counts the volatility
deciles and months within 2 points of nominal (the target).
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
    adjusted_bars,
    chosen_sets,
    context_of,
    load_sources,
    plan_for,
    prepare,
)

from stock_assets.models.return_intervals import (  # noqa: E402
    CALIBRATION_SESSIONS,
    LEVELS,
    SHIPPED_MODE,
    SHIPPED_SCALE,
    TooFewCalibrationRows,
    calibrate,
    check_no_overlap,
    coverage_by,
    latest_known,
    predict,
    rolling_return_intervals,
    trailing_volatility,
)
from stock_assets.models.walk_forward import predict as predict_scores  # noqa: E402
from stock_assets.models.walk_forward import training_rows  # noqa: E402


def fold_intervals(
    data,
    ours,
    volatility: pl.DataFrame,
    horizon: int,
    mode: str,
    scale: str,
    skipped: list | None = None,
) -> tuple[pl.DataFrame, list]:
    """Every fold's test rows with their intervals, and each fold's mapping (a, b).

    ``mode`` "gate": one calibration per fold on its gate slice (what a monthly refit knows).
    "rolling": recalibrated every test day on the latest ``CALIBRATION_SESSIONS`` sessions of
    rows the fold's booster scored out of sample (gate and earlier test days) whose label is
    known before that day: the calibration follows drifting returns.

    A fold whose calibration MAPIE refuses (`TooFewCalibrationRows`: 1-5 names, 20 sessions) is left
    out and its number appended to ``skipped``; the decision uses only the calibration's own
    row count, never an outcome. Raises that error when every fold is refused.
    """
    closes = data.adjusted.select(*KEY, last_close="close")
    parts, mappings = [], []
    for trained in ours.trained:
        fold = trained.fold
        gate = training_rows(data.labelled, fold, "gate")
        scores = predict_scores(trained.booster, gate, trained.best_iteration)
        test = data.test_rows.filter(pl.col("fold") == fold.number)
        if test.is_empty():
            continue
        predicted = (
            test.select(*KEY, "ticker", "label_known_on", "forward_return")
            .join(ours.predictions.select(*KEY, score="prediction"), on=KEY)
            .join(volatility, on=KEY, how="left")
            .join(closes, on=KEY, how="left")
        )
        calibration = gate.select(*KEY, "label_known_on", "forward_return").join(
            scores.select(*KEY, score="prediction"), on=KEY
        )
        pool = pl.concat(
            [
                calibration.join(volatility, on=KEY, how="left"),
                predicted.select(calibration.columns + ["volatility"]),
            ]
        )
        try:
            if mode == "rolling":  # what gold/predictions ships: the same core function
                calibrated = list(  # a generator: refusals surface while it runs
                    rolling_return_intervals(
                        pool, predicted, horizon, unconditional=True, scale=scale
                    )
                )
            else:
                known = latest_known(pool, predicted["date"].min())
                check_no_overlap(known, predicted)
                model = calibrate(known, horizon, scale=scale)
                calibrated = [(model, predict(model, predicted, unconditional=True))]
        except TooFewCalibrationRows as error:
            refused = error
            if skipped is not None:
                skipped.append(fold.number)
            continue
        for model, out in calibrated:
            parts.append(out)
            first = out["date"].min()
            mappings.append(
                {
                    "fold": fold.number,
                    "calibration": f"{model.calibration_start}..{model.calibration_end}",
                    "labels_known_until": str(model.labels_known_until),
                    "predicted": f"{first}..{out['date'].max()}",
                    "calibration_rows": model.calibration_rows,
                    "a": round(model.intercept, 4),
                    "b": round(model.slope, 4),
                }
            )
    if not parts:
        raise refused
    return pl.concat(parts), mappings


def with_groups(intervals: pl.DataFrame) -> pl.DataFrame:
    """Adds ``month`` and ``volatility_decile`` (1 = calmest tenth of the pooled test rows)."""
    # ceil(rank * 10 / n) in integers: in floats it put the top row of 30,486 in an 11th
    rank = pl.col("volatility").rank("ordinal").cast(pl.Int64)
    count = pl.col("volatility").count().cast(pl.Int64)
    decile = (rank * 10 + count - 1) // count
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
        tbl_rows=2000, tbl_cols=30, tbl_width_chars=200, float_precision=4,
        tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
    ):  # fmt: skip
        print(table)


VARIANTS = [
    ("gate", "volatility"),
    ("gate", "fitted"),
    ("rolling", "volatility"),
    ("rolling", "fitted"),
]
SHIPPED = (SHIPPED_MODE, SHIPPED_SCALE)  # the default variant: what gold/predictions stores
assert SHIPPED in VARIANTS


TARGET_POINTS = 0.02  # coverage within 2 points of nominal, in every decile and month


def within_target(coverage: pl.Series, level: float) -> str:
    """ "k/n": how many groups' coverage is within `TARGET_POINTS` of ``level``."""
    inside = ((coverage - level).abs() <= TARGET_POINTS + 1e-12).sum()
    return f"{inside}/{coverage.len()}"


def summary(variant: str, overall, deciles, months) -> pl.DataFrame:
    """Per level: pooled coverage, the worst and best decile and month, how many deciles and
    months are within 2 points of nominal, and mean widths."""
    rows = []
    for level in LEVELS:
        s = f"{round(level * 100)}"
        rows.append(
            {
                "variant": variant,
                "level": s,
                "coverage": overall[f"coverage_{s}"].item(),
                "decile_min": deciles[f"coverage_{s}"].min(),
                "decile_max": deciles[f"coverage_{s}"].max(),
                "month_min": months[f"coverage_{s}"].min(),
                "month_max": months[f"coverage_{s}"].max(),
                "deciles_in_2pt": within_target(deciles[f"coverage_{s}"], level),
                "months_in_2pt": within_target(months[f"coverage_{s}"], level),
                "width": overall[f"width_{s}"].item(),
                "unconditional_coverage": overall[f"unconditional_coverage_{s}"].item(),
                "uncond_decile_min": deciles[f"unconditional_coverage_{s}"].min(),
                "uncond_decile_max": deciles[f"unconditional_coverage_{s}"].max(),
                "uncond_month_min": months[f"unconditional_coverage_{s}"].min(),
                "uncond_month_max": months[f"unconditional_coverage_{s}"].max(),
                "uncond_months_in_2pt": within_target(months[f"unconditional_coverage_{s}"], level),
                "unconditional_width": overall[f"unconditional_width_{s}"].item(),
            }
        )
    return pl.DataFrame(rows)


def evaluate(name: str, args: argparse.Namespace, sources) -> dict:
    started = time.perf_counter()
    plan = plan_for(name, "shipped")
    if args.sample and plan.thin == "exclude":  # a sample is below the floor by construction
        plan = dataclasses.replace(plan, thin="flag")
    adjusted = adjusted_bars(name, args.sample)
    context = context_of(adjusted, plan, sources)
    data = prepare(adjusted, context, plan, args.folds, Clock(), args.every)
    ours = train_ours(data, plan.training.lightgbm(), Clock())
    horizon = plan.split.horizon
    volatility = trailing_volatility(adjusted, horizon)
    results, summaries = {}, []
    for mode, scale in VARIANTS:
        variant = f"{mode}/{scale}"
        skipped: list[int] = []
        try:
            intervals, mappings = fold_intervals(
                data, ours, volatility, horizon, mode, scale, skipped
            )
        except TooFewCalibrationRows as error:
            reason = (f"not measurable: no {CALIBRATION_SESSIONS}-session calibration of "
                      f"{name} has enough rows for MAPIE at {max(LEVELS):.0%} with this "
                      f"scale ({' '.join(str(error).split())})")  # fmt: skip
            print(f"\n== {name}, {variant}: {data.coverage}; {reason}")
            results[variant] = {"not_measured": reason}
            continue
        grouped = with_groups(intervals)
        overall = coverage_by(grouped)
        deciles = coverage_by(grouped, ["volatility_decile"]).join(
            grouped.group_by("volatility_decile").agg(sigma=pl.col("volatility").mean()),
            on="volatility_decile",
        )
        months = coverage_by(grouped, ["month"])
        summaries.append(summary(variant, overall, deciles, months))
        shipped = " (shipped: gold/predictions stores it)" if (mode, scale) == SHIPPED else ""
        print(f"\n== {name}, {variant}{shipped}: {data.coverage}; horizon {horizon} session(s), "
              f"{len(ours.trained)} folds, "
              f"{len(mappings)} calibrations, {grouped.height} test rows with a volatility, "
              f"{grouped['date'].n_unique()} sessions (thin sessions excluded); returns are "
              f"fractions over {horizon} session(s)")  # fmt: skip
        if skipped:
            print(f"{len(skipped)} of {len(ours.trained)} folds left out: MAPIE refuses their "
                  f"{CALIBRATION_SESSIONS}-session calibration (too few rows for "
                  f"{max(LEVELS):.0%}): folds {skipped}")  # fmt: skip
        if mode == "gate":
            show(
                "mapping expected_return = sigma * (a + b * score), per fold",
                pl.DataFrame(mappings),
            )
        where = f"{name}, {variant}, {data.coverage}"
        show(f"overall ({where}): coverage (share) and mean width (return units)",
             long_form(overall, []))  # fmt: skip
        show(
            f"per trailing-volatility decile ({where}; 1 = calmest; sigma: mean trailing "
            "volatility)",
            long_form(deciles, ["volatility_decile", "sigma"]),
        )
        show(f"per month ({where})", long_form(months, ["month"]))
        results[variant] = {
            "mappings": mappings,
            "overall": overall.to_dicts(),
            "deciles": deciles.to_dicts(),
            "months": months.to_dicts(),
            "skipped_folds": skipped,
        }
    if summaries:
        show(
            f"{name}: summary, {data.coverage} (coverage shares; widths in return units)",
            pl.concat(summaries),
        )
    seconds = time.perf_counter() - started
    print(f"{name}: {seconds:.0f}s")
    return {
        "set": name, "levels": list(LEVELS), "every": data.every, "coverage": data.coverage,
        "monthly_folds": data.monthly_folds, "seconds": seconds,
        "summary": pl.concat(summaries).to_dicts() if summaries else [], "variants": results,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="sp500_2009", help="comma-separated data sets")
    parser.add_argument("--folds", type=int, default=0, help="only the first N folds (0: all)")
    parser.add_argument(
        "--every", type=int, default=1, help="evaluate 1 in K monthly folds, the newest kept"
    )
    parser.add_argument("--sample", type=int, default=0, help="about N instruments (0: all)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    names = chosen_sets(parser, args.sets)
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"load average at start: {load_average()}")
    started = time.perf_counter()
    sources = load_sources()
    results = [evaluate(name, args, sources) for name in names]
    print(f"load average at end: {load_average()}; whole run {time.perf_counter() - started:.0f}s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
