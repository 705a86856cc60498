"""What `model_evaluation.py` prints for each data set.

Imported by plain name from bench/ (the entry script puts bench/ on ``sys.path``).
"""

from __future__ import annotations

import math

import polars as pl
from model_eval_scoring import Score
from model_eval_sets import Plan, SetData


def fmt(value: float, spec: str = "+.4f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def print_header(name: str, adjusted: pl.DataFrame, plan: Plan) -> None:
    first, last = adjusted["date"].min(), adjusted["date"].max()
    print(
        f"\n== {name}: {adjusted.height:,} bars, {adjusted['instrument'].n_unique()} instruments, "
        f"{adjusted['date'].n_unique():,} sessions {first}..{last}; universe: {plan.universe}"
        + (f" ({plan.note})" if plan.note else "")
    )


def print_folds(data: SetData) -> None:
    split, folds, test_rows = data.plan.split, data.folds, data.test_rows
    print(f"months covered: {data.coverage}")
    print(
        f"folds: {len(folds)} ({split.window}, train >= {split.min_train_sessions} sessions"
        + (f", last {split.rolling_sessions}" if split.window == "rolling" else "")
        + f", early stopping {split.validation_sessions}, gate/calibration "
        f"{split.gate_sessions}, gaps {split.gap_sessions}, refit {split.refit_every}); "
        f"horizon {split.horizon} session(s); test {folds[0].test_start}..{folds[-1].test_end}: "
        f"{test_rows['date'].n_unique()} days scored, {test_rows.height:,} labelled rows"
    )
    print(thin_line(data))


def thin_line(data: SetData) -> str:
    """What the figures did with sessions below the platform's signal floor."""
    plan, sessions = data.plan, data.sessions
    if plan.thin == "none":
        return "thin sessions: not applicable (time series per name, nothing ranked)"
    names = sessions["names"]
    where = (
        f"{data.thin_days} of {sessions.height} test sessions below the signal floor (at least "
        f"{sessions['required'].min()} names; {names.min()}-{names.max()} names a session)"
    )
    if plan.thin == "exclude":
        return f"thin sessions: {where}, excluded from every figure"
    return (
        f"thin sessions: FLAGGED, {where}: the platform would publish no signal on them; "
        "the figures below are research only"
    )


def print_scores(models: list, plan: Plan, coverage: str) -> None:
    """The IC table: rank IC with its Newey-West t's, ICIR, IC with its Newey-West t."""
    first = models[0][1]
    print(f"scores, {coverage}:")
    unit = "days" if plan.cross_sectional else "rows"
    short, long = f"t NW{first.nw_lags}", f"t NW{first.long_lags}"
    print(f"(t NWn: Newey-West t with n lags; {first.nw_lags} = hac_lags(horizon "
          f"{plan.split.horizon}, {first.n:,} {first.unit}))")  # fmt: skip
    print(
        f"{'model':32s} {'rank IC':>8s} {short:>7s} {long:>8s} {'ICIR':>7s} "
        f"{'IC':>8s} {short + '(IC)':>11s} {unit:>7s}"
    )
    for label, s, _ in models:
        print(
            f"{label:32s} {fmt(s.rank_ic):>8s} {fmt(s.rank_ic_nw_t, '+.2f'):>7s} "
            f"{fmt(s.rank_ic_nw_long_t, '+.2f'):>8s} {fmt(s.icir, '+.3f'):>7s} {fmt(s.ic):>8s} "
            f"{fmt(s.ic_nw_t, '+.2f'):>11s} {s.n:>7,d}"
        )
    if not plan.cross_sectional:
        for label, s, _ in models:
            print(f"  {label} per name (rank IC, {short}, {long}, rows): " + "; ".join(
                f"{n} {fmt(v['ic'], '+.3f')} {fmt(v['nw_t'], '+.2f')} "
                f"{fmt(v['nw_long_t'], '+.2f')} {v['rows']:,}"
                for n, v in s.per_name.items()
            ))  # fmt: skip


def print_books(models: list, plan: Plan, coverage: str) -> None:
    if plan.cross_sectional:
        books = [("long", f"top-{plan.k}"), ("long_short", f"top-{plan.k} - bottom-{plan.k}")]
        bench = ("benchmark", "equal-weight buy-and-hold")
    else:
        books = [("long", "long if predicted up")]
        bench = ("benchmark", "always long, equal weight")
    print(f"books, {coverage}:")
    print(
        f"{'book, net of 5/15 bp':32s} {'':22s} {'ann.ret':>8s} {'Sharpe':>7s} {'maxDD':>7s} "
        f"{'turnover':>8s}"
    )
    rows = [(label, title, bk[key]) for label, _, bk in models for key, title in books]
    rows.append((*bench, models[0][2]["benchmark"]))
    for label, title, p in rows:
        print(
            f"{label:32s} {title:22s} {fmt(p.annual_return, '+.1%'):>8s} "
            f"{fmt(p.sharpe, '+.2f'):>7s} {fmt(p.max_drawdown, '.1%'):>7s} "
            f"{fmt(p.mean_turnover, '.2f'):>8s}"
        )


def runs(chosen: list[dict]) -> str:
    """The factors chosen fold after fold, repeats counted: "-VSTD10 x4, +MIN20"."""
    names = [("-" if c["sign"] < 0 else "+") + c["factor"] for c in chosen]
    out: list[list] = []
    for name in names:
        if out and out[-1][0] == name:
            out[-1][1] += 1
        else:
            out.append([name, 1])
    return ", ".join(n if k == 1 else f"{n} x{k}" for n, k in out)


def print_fold_table(per_fold: list[dict], qlib: bool, coverage: str) -> None:
    print(f"per fold, {coverage}:")
    print(
        f"per fold: {'test slice':23s} {'rows':>6s} {'best it.':>8s} {'valid rIC':>9s} "
        f"{'test rIC':>8s}" + (f" {'Qlib it.':>8s} {'Qlib rIC':>8s}" if qlib else "")
    )
    for row in per_fold:
        print(
            f"  {row['fold']:>6d} {row['test_start']}..{row['test_end']} {row['rows']:>6,d} "
            f"{row['best_iteration']:>8d} {fmt(row['validation_rank_ic']):>9s} "
            f"{fmt(row['test_rank_ic']):>8s}"
            + (
                f" {row['qlib_best_iteration']:>8d} {fmt(row['qlib_test_rank_ic']):>8s}"
                if qlib
                else ""
            )
        )


def print_conformal(conformal: dict, coverage: str) -> None:
    print(
        f"conformal, {coverage}: {conformal['level']:.0%} intervals (calibrated on each "
        f"fold's gate slice, measured on its test slice): coverage "
        f"{conformal['coverage']:.3f} over {conformal['rows']:,} rows, folds "
        f"{conformal['fold_min']:.3f}.."
        f"{conformal['fold_max']:.3f}, mean width {conformal['mean_width']:.3f} (label units)"
    )


def print_sanity(sanity: dict[str, Score], coverage: str) -> None:
    print(f"sanity, {coverage} (t NWn: Newey-West t with n lags):")
    for label, s in sanity.items():
        print(
            f"  {label:44s} rank IC {fmt(s.rank_ic, '+.3f')} (t NW{s.nw_lags} "
            f"{fmt(s.rank_ic_nw_t, '+.2f')}, t NW{s.long_lags} "
            f"{fmt(s.rank_ic_nw_long_t, '+.2f')}, {s.n:,} {s.unit})"
        )


def print_times(times: dict, qlib_rows: int | None, coverage: str) -> None:
    """``times``: the "times" entry of `model_eval_run.evaluate_set`'s result."""
    print(
        f"times (wall s; {coverage}): ours {times['ours_total']:.1f} = "
        + " + ".join(f"{k} {v:.1f}" for k, v in times["ours"].items())
        + f"; of which training {times['ours_training']:.1f}, inference "
        f"{times['ours_inference']:.1f} (re-run); factor baseline {times['factor_baseline']:.1f}; "
        f"sanity runs {times['sanity']:.1f}"
    )
    if times["qlib"] is not None:
        print(
            f"             Qlib {times['qlib_total']:.1f} = "
            + " + ".join(f"{k} {v:.1f}" for k, v in times["qlib"].items())
            + f"; predicted {qlib_rows:,} of the labelled test rows; best iterations "
            f"{times['best_iterations_qlib']}"
        )
        print(f"             ours / Qlib = {times['ours_total'] / times['qlib_total']:.3f}")


def print_ablation(
    variants: list, chosen: str, market: list[str], plan: Plan, coverage: str
) -> None:
    """The market-wide features ablation: chosen on the gate slices, test figures beside."""
    print(f"ablation, {coverage}:")
    print(f"ablation: {len(market)} market-wide columns found in the data: {', '.join(market)}")
    first = variants[0]
    gate_t, test_t = f"t NW{first.gate.nw_lags}", f"t NW{first.test.nw_lags}"
    print(
        f"{'features':34s} {'cols':>4s} {'gate rIC':>8s} {gate_t:>7s} {'days':>5s} | "
        f"{'test rIC':>8s} {test_t:>7s} {'t NW' + str(first.test.long_lags):>7s} "
        f"{'test IC':>8s} {'L-S ann.':>8s} {'L-S Shp':>7s}"
    )
    for v in variants:
        mark = "  <- chosen (gate slices, promotion rule)" if v.name == chosen else ""
        print(
            f"{v.name:34s} {len(v.features):>4d} {fmt(v.gate.mean):>8s} "
            f"{fmt(v.gate.nw_t_stat, '+.2f'):>7s} {v.gate.days:>5d} | {fmt(v.test.rank_ic):>8s} "
            f"{fmt(v.test.rank_ic_nw_t, '+.2f'):>7s} {fmt(v.test.rank_ic_nw_long_t, '+.2f'):>7s} "
            f"{fmt(v.test.ic):>8s} {fmt(v.books['long_short'].annual_return, '+.1%'):>8s} "
            f"{fmt(v.books['long_short'].sharpe, '+.2f'):>7s}{mark}"
        )
    for v in variants[1:]:
        print(f"  {v.name} vs all features on the same gate days: {v.verdict}")
