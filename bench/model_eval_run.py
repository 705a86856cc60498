"""One data set through `model_evaluation.py`: our walk-forward model with its conformal
intervals, the baselines and Qlib, scored by the same code, printed, returned as a dict.

Imported by plain name from bench/ (the entry script puts bench/ on ``sys.path``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import model_eval_report as report
import polars as pl
from model_eval_ablation import ablation
from model_eval_baselines import factor_baseline, sanity_runs
from model_eval_clock import Clock
from model_eval_qlib import QlibRun, run_qlib
from model_eval_scoring import score, scored
from model_eval_sets import (
    KEY,
    Plan,
    SetData,
    Sources,
    adjusted_bars,
    context_of,
    plan_for,
    prepare,
    train_folds,
)

from stock_assets.models.conformal import calibrate, coverage, predict_intervals
from stock_assets.models.walk_forward import (
    LightGBMConfig,
    TrainedFold,
    predict,
    training_rows,
)


@dataclass
class Ours:
    trained: list[TrainedFold]
    predictions: pl.DataFrame  # out of sample, the folds' test slices
    inference: float  # wall seconds of predicting the test slices again


def train_ours(data: SetData, config: LightGBMConfig, clock: Clock) -> Ours:
    """The set's (evaluated) folds trained as `walk_forward` trains them (timed on ``clock``),
    and its test predictions made again from the boosters, timed apart as the inference time
    (and checked equal)."""
    with clock("walk-forward (train + predict)"):
        trained, predictions = train_folds(data.labelled, data.members, data.folds, config)
    inference = time.perf_counter()
    again = pl.concat(
        predict(t.booster, t.fold.rows(data.members, "test"), t.best_iteration) for t in trained
    )
    inference = time.perf_counter() - inference
    assert again.sort(KEY)["prediction"].equals(predictions.sort(KEY)["prediction"])
    return Ours(trained, predictions, inference)


def conformal_coverage(
    trained: list[TrainedFold], labelled: pl.DataFrame, confidence: float
) -> dict:
    """Split-conformal intervals calibrated on each fold's gate slice, their coverage
    measured on its test slice, pooled over folds by rows."""
    inside = width = rows = 0.0
    fold_coverage = []
    for t in trained:
        held_out = "gate" if t.fold.gate_start else "validation"  # never the stopping rows
        model = calibrate(
            t.booster, training_rows(labelled, t.fold, held_out), confidence,
            num_iteration=t.best_iteration,
        )  # fmt: skip
        test = t.fold.rows(labelled, "test")
        if test.is_empty():
            continue
        summary, _ = coverage(predict_intervals(model, test), test)
        fold_coverage.append(summary.coverage)
        inside += summary.coverage * summary.rows
        width += summary.mean_width * summary.rows
        rows += summary.rows
    return {
        "level": confidence,
        "coverage": inside / rows if rows else math.nan,
        "mean_width": width / rows if rows else math.nan,
        "rows": int(rows),
        "fold_min": min(fold_coverage, default=math.nan),
        "fold_max": max(fold_coverage, default=math.nan),
    }


def fold_table(ours: Ours, test_rows: pl.DataFrame, plan: Plan, qlib: QlibRun | None) -> list:
    """Per fold: best iteration, validation rank IC (against the training target), and the
    test rank IC of ours and Qlib's on that fold's labelled test rows."""
    rows = []
    for number, t in enumerate(ours.trained):
        tests = test_rows.filter(pl.col("fold") == t.fold.number).select(*KEY, "fold", "label")
        on_ours = tests.join(ours.predictions.select(*KEY, "prediction"), on=KEY, how="left")
        row = {
            "fold": t.fold.number,
            "test_start": t.fold.test_start,
            "test_end": t.fold.test_end,
            "rows": tests.height,
            "best_iteration": t.best_iteration,
            "validation_rank_ic": t.validation["rank_ic"].mean,
            "test_rank_ic": score(on_ours, plan).rank_ic,
        }
        if qlib:
            row["qlib_best_iteration"] = qlib.best_iterations[number]
            row["qlib_test_rank_ic"] = score(
                tests.join(qlib.predictions, on=KEY, how="left"), plan
            ).rank_ic
        rows.append(row)
    return rows


def evaluate_set(name: str, args: argparse.Namespace, sources: Sources) -> dict:
    plan = plan_for(name, args.variant)
    if args.sample and plan.thin == "exclude":  # a sample is below the floor by construction
        plan = dataclasses.replace(plan, thin="flag")
    adjusted = adjusted_bars(name, args.sample)
    context = context_of(adjusted, plan, sources)
    report.print_header(name, adjusted, plan)
    config = plan.training.lightgbm()  # the asset's LightGBM settings
    clock = Clock()  # ours: features, labels, walk-forward, evaluation

    data = prepare(adjusted, context, plan, args.folds, clock, args.every)
    ours = train_ours(data, config, clock)
    with clock("evaluation (IC, books)"):
        our_score, our_books = scored(data, ours.predictions)
    with clock("conformal"):
        conformal = conformal_coverage(ours.trained, data.labelled, plan.training.confidence_level)
    our_total = clock.total(*clock.seconds)

    started = time.perf_counter()
    factor_score, factor_books, chosen = factor_baseline(data)
    factor_seconds = time.perf_counter() - started

    started = time.perf_counter()
    sanity = sanity_runs(data, config, args.sanity_folds, args.series_sanity_folds)
    sanity_seconds = time.perf_counter() - started

    qlib, qlib_rows = None, None
    models = [("ours (LightGBM, walk-forward)", our_score, our_books)]
    models.append(("best single Alpha158 factor", factor_score, factor_books))
    if not args.no_qlib:
        with tempfile.TemporaryDirectory() as tmp:
            qlib = run_qlib(adjusted, data.features, data.folds, plan, Path(tmp))
        models.append(("Qlib Alpha158 + LGBModel", *scored(data, qlib.predictions)))
        qlib_rows = qlib.predictions.join(data.test_rows.select(KEY), on=KEY).height
    per_fold = fold_table(ours, data.test_rows, plan, qlib)
    times = {
        "ours": clock.seconds,
        "ours_total": our_total,
        "ours_training": clock.seconds["walk-forward (train + predict)"] - ours.inference,
        "ours_inference": ours.inference,
        "factor_baseline": factor_seconds,
        "sanity": sanity_seconds,
        "qlib": qlib.clock.seconds if qlib else None,
        "qlib_total": qlib.clock.total(*qlib.clock.seconds) if qlib else None,
        "best_iterations_ours": [t.best_iteration for t in ours.trained],
        "best_iterations_qlib": qlib.best_iterations if qlib else None,
    }

    covered = data.coverage
    report.print_folds(data)
    report.print_scores(models, plan, covered)
    report.print_books(models, plan, covered)
    print(f"factor chosen per fold (on training rows): {report.runs(chosen)}")
    report.print_fold_table(per_fold, qlib is not None, covered)
    report.print_conformal(conformal, covered)
    report.print_sanity(sanity, covered)
    report.print_times(times, qlib_rows, covered)
    ablated = None
    if args.ablation and plan.cross_sectional:
        started = time.perf_counter()
        variants, chosen, market = ablation(data, config)
        report.print_ablation(variants, chosen, market, plan, covered)
        print(f"ablation took {time.perf_counter() - started:.1f}s (outside every total)")
        ablated = {
            "market_wide": market,
            "chosen_on_gate": chosen,
            "variants": [
                {"name": v.name, "columns": len(v.features), "gate": dataclasses.asdict(v.gate),
                 "verdict": v.verdict,
                 "test": dataclasses.asdict(v.test),
                 "books": {b: dataclasses.asdict(p) for b, p in v.books.items()}}
                for v in variants
            ],
        }  # fmt: skip
    return {
        "set": name,
        "bars": adjusted.height,
        "instruments": adjusted["instrument"].n_unique(),
        "universe": plan.universe,
        "cross_sectional": plan.cross_sectional,
        "variant": args.variant,
        "split": dataclasses.asdict(plan.split),
        "lightgbm": dataclasses.asdict(config),
        "thin_sessions": data.thin_days,
        "thin_rule": plan.thin,
        "folds": [f.as_dict() for f in data.folds],
        "every": data.every,
        "monthly_folds": data.monthly_folds,
        "coverage": covered,
        "test_days": data.test_rows["date"].n_unique(),
        "test_rows": data.test_rows.height,
        "scores": {m: dataclasses.asdict(s) for m, s, _ in models},
        "books": {m: {b: dataclasses.asdict(p) for b, p in bk.items()} for m, _, bk in models},
        "factors_chosen": chosen,
        "per_fold": per_fold,
        "conformal": conformal,
        "sanity": {k: dataclasses.asdict(v) for k, v in sanity.items()},
        "times": times,
        "ablation": ablated,
    }
