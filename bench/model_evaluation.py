"""Model evaluation on real data: our walk-forward LightGBM, the best single factor, and Qlib.

    .venv/bin/python bench/model_evaluation.py [--sets sp500_2009,msft_1986] [--folds N]
        [--sanity-folds 2] [--no-qlib] [--sample N] [--out results.json]

For each data set (real bars, split-adjusted by silver's `adjust_bars` with the reviewed corporate
actions), in one run:

1. features: `gold.assemble.assemble` with a real point-in-time Context (packaged macro series,
   earnings calendar, market news tone, and the universe: the packaged S&P 500 membership for
   the two S&P sets, every name for the few-name sets, see PLANS);
2. ours: `models.walk_forward` (expanding or rolling folds, gap = horizon on both sides of the
   validation slice), scored out of sample: IC and rank IC with ICIR and t-statistics, a top-k
   and a long-short book with 5 bp buy / 15 bp sell costs against equal-weight buy-and-hold,
   split-conformal coverage (calibrated on each fold's validation slice, measured on its test
   slice), training and inference wall times;
3. sanity: the label as the prediction, the label as a feature (trained), labels shuffled
   (trained), the label shuffled as the prediction;
4. the best single Alpha158 factor, chosen with its sign on each fold's training rows only;
5. Qlib's own workflow on the same bars (pyqlib: binary provider written with
   `gold.qlib_binary`, the `Alpha158` handler, `LGBModel` with Qlib's benchmark parameters),
   same folds, predicting the same test slices, scored by the same code.

Few-name sets (msft_1986: one name; tsd_ohlcv: one to five) have no cross-section worth ranking:
they are trained on the raw forward return and scored per name over time (a time-series rank IC
per name and test slice, then mean and t over those blocks). Results go to stdout; `--out`
writes them as JSON too. docs/EVALUATION.md reports a run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # LightGBM's OpenMP threads sleep when idle

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stock_assets.bronze.replay import select_bars  # noqa: E402
from stock_assets.gold.alpha158 import ALPHA158_COLUMNS  # noqa: E402
from stock_assets.gold.assemble import Context, assemble  # noqa: E402
from stock_assets.gold.feature_set import MODEL_FEATURES  # noqa: E402
from stock_assets.gold.qlib_binary import init_qlib_client, write_qlib_provider  # noqa: E402
from stock_assets.models.conformal import calibrate, coverage, predict_intervals  # noqa: E402
from stock_assets.models.evaluation import (  # noqa: E402
    CostModel,
    Performance,
    daily_ic,
    label_as_prediction,
    performance,
    portfolio_report,
    portfolio_returns,
    shuffled_prediction,
    simulate,
    summarize_ic,
)
from stock_assets.models.labels import Normalisation, forward_returns, labelled_universe  # noqa: E402
from stock_assets.models.walk_forward import (  # noqa: E402
    Fold,
    LightGBMConfig,
    SplitConfig,
    predict,
    training_rows,
    walk_forward,
    walk_forward_folds,
)
from stock_assets.pit import adjust_bars, members_on  # noqa: E402
from stock_assets.resources.sources import (  # noqa: E402
    EarningsSource,
    MacroSource,
    MembershipSource,
    NewsSource,
    today_utc,
)
from stock_assets.silver.corporate_actions import build_corporate_actions, load_curated  # noqa: E402
from stock_assets.silver.earnings_calendar import parse_events  # noqa: E402
from stock_assets.silver.index_membership import parse_intervals  # noqa: E402
from stock_assets.silver.macro_indicators import not_observed, parse_observations  # noqa: E402
from stock_assets.silver.market_sentiment import daily_sentiment  # noqa: E402
from stock_assets.silver.news_sentiment import parse_articles, score_articles  # noqa: E402

KEY = ["instrument", "date"]
CONFIDENCE = 0.9  # conformal intervals
SANITY_ROUNDS = 50  # boosting rounds of the trained sanity runs
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


# -- what runs on each data set ---------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """How one data set is evaluated.

    ``universe``: "membership" = the packaged S&P 500 membership point in time; "all" = every
    name with a bar is a member. ``cross_sectional``: daily cross-sectional IC and a top-k book
    (needs a real cross-section); otherwise time-series IC per name and a long-or-cash book.
    """

    split: SplitConfig
    universe: str
    cross_sectional: bool
    normalisation: Normalisation
    k: int = 0  # top-k (and bottom-k) of the cross-sectional books
    note: str = ""

    @property
    def long_lags(self) -> int:
        """Newey-West lags of the conservative t: 20 days of daily ICs, 252 rows of a name."""
        return 20 if self.cross_sectional else 252


YEAR_SPLIT = SplitConfig(horizon=5, min_train_sessions=100, validation_sessions=20, refit_every=20)
# 33-year sets: refit yearly on the last five years (3 at least), validate on the next half year
LONG_SPLIT = SplitConfig(
    horizon=5,
    min_train_sessions=756,
    validation_sessions=126,
    refit_every=252,
    window="rolling",
    rolling_sessions=1260,
)
PLANS: dict[str, Plan] = {
    "sp500_2009": Plan(YEAR_SPLIT, "membership", True, "rank_gauss", k=50),
    "sp500_1990_adjclose": Plan(
        LONG_SPLIT,
        "membership",
        True,
        "rank_gauss",
        k=5,
        note="20 names picked in 2022 (survivors): membership only trims the early years",
    ),
    "msft_1986": Plan(
        LONG_SPLIT, "all", False, "none", note="one name: no cross-section, time-series IC only"
    ),
    "tsd_ohlcv": Plan(
        LONG_SPLIT, "all", False, "none", note="1-5 names a day: time-series IC per name"
    ),
}


# -- small helpers ----------------------------------------------------------------------------
class Clock:
    """Named wall-clock sections (seconds), accumulated."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def total(self, *names: str) -> float:
        return sum(self.seconds.get(n, 0.0) for n in names)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


def newey_west_variance(x: np.ndarray, lags: int) -> float:
    """Variance of the mean of ``x`` with Newey-West (Bartlett) weights up to ``lags``."""
    n = x.size
    e = x - x.mean()
    variance = e @ e / n
    for lag in range(1, min(lags, n - 1) + 1):
        variance += 2 * (1 - lag / (lags + 1)) * (e[lag:] @ e[:-lag]) / n
    return float(variance / n)


def newey_west_t(values: pl.Series, lags: int) -> float:
    """t-statistic of the mean with a Newey-West standard error. Labels of consecutive days
    overlap (h-session returns), so daily ICs are autocorrelated up to h-1 days apart and
    mean/std*sqrt(n) overstates the evidence; lags = h-1 corrects for that."""
    x = values.drop_nulls().drop_nans().to_numpy()
    if x.size < 3:
        return math.nan
    variance = newey_west_variance(x, lags)
    return float(x.mean() / math.sqrt(variance)) if variance > 0 else math.nan


@dataclass
class Score:
    """IC figures of one prediction series over the test rows that have a label.

    Cross-sectional sets: the daily IC / rank IC over that day's universe (`evaluation.daily_ic`),
    mean over days, ICIR, t = ICIR * sqrt(days) and Newey-West t's. Few-name sets: per name,
    the correlation over time of its test rows (ranks for the rank IC), pooled over names
    weighted by rows; t as if rows were independent, and Newey-West t's of the same figure.
    ``rank_ic_nw_t``: h-1 lags, for the overlap of consecutive labels; ``rank_ic_nw_long_t``:
    `Plan.long_lags`, for persistent predictors meeting slow regimes in returns (the shorter
    correction proved too optimistic on the time series: a model trained on shuffled labels
    scored t NW4 -3.1 on MSFT).
    """

    rank_ic: float
    rank_ic_t: float
    rank_ic_nw_t: float
    rank_ic_nw_long_t: float
    icir: float
    ic: float
    ic_t: float
    n: int  # days (cross-sectional) or rows (time series)
    unit: str
    per_name: dict[str, dict[str, float]] = field(default_factory=dict)


def time_series_ic(
    frame: pl.DataFrame, lags: tuple[int, int], ranks: bool
) -> tuple[float, list[float], dict]:
    """(correlation, its Newey-West variances for each of ``lags``, per name) of prediction and
    label over time, per name: the mean of the products of both standardised (ranked first
    when ``ranks``), which is the Pearson (Spearman) correlation; pooled over names weighted
    by their rows."""
    pair = frame.filter(pl.col("prediction").is_not_null() & pl.col("label").is_not_null())
    per_name, total, weighted, variance = {}, 0, 0.0, np.zeros(len(lags))
    for (name,), one in pair.sort(KEY).group_by("instrument", maintain_order=True):
        x, y = (one[c].to_numpy().astype(np.float64) for c in ("prediction", "label"))
        if ranks:
            x, y = (pl.Series(v).rank("average").to_numpy() for v in (x, y))
        if x.size < 20 or x.std() == 0 or y.std() == 0:
            continue
        u = (x - x.mean()) / x.std() * (y - y.mean()) / y.std()
        v = np.array([newey_west_variance(u, lag) for lag in lags])
        t = u.mean() / np.sqrt(v)
        per_name[name] = {"ic": float(u.mean()), "nw_t": float(t[0]), "nw_long_t": float(t[1]),
                          "rows": int(u.size)}  # fmt: skip
        total += u.size
        weighted += u.mean() * u.size
        variance += v * u.size**2
    if not total:
        return math.nan, [math.nan, math.nan], per_name
    return weighted / total, list(variance / total**2), per_name


def score(frame: pl.DataFrame, plan: Plan) -> Score:
    """``frame``: instrument, date, prediction, label (the labelled test rows)."""
    lags = (plan.split.horizon - 1, plan.long_lags)
    if plan.cross_sectional:
        daily = daily_ic(frame)
        rank, ic = summarize_ic(daily["rank_ic"]), summarize_ic(daily["ic"])
        return Score(
            rank.mean, rank.t_stat, newey_west_t(daily["rank_ic"], lags[0]),
            newey_west_t(daily["rank_ic"], lags[1]), rank.icir, ic.mean, ic.t_stat, rank.days,
            "days",
        )  # fmt: skip
    rank, rank_var, per_name = time_series_ic(frame, lags, ranks=True)
    ic, ic_var, _ = time_series_ic(frame, lags, ranks=False)
    rows = sum(v["rows"] for v in per_name.values())
    return Score(
        rank, rank * math.sqrt(rows), rank / math.sqrt(rank_var[0]),
        rank / math.sqrt(rank_var[1]), math.nan, ic, ic / math.sqrt(ic_var[0]), rows, "rows",
        per_name,
    )  # fmt: skip


def shuffled_within(
    frame: pl.DataFrame, column: str, by: str, seed: int, output: str | None = None
) -> pl.DataFrame:
    """``column`` permuted at random inside each ``by`` group, independently per group.

    Not `pl.col(column).shuffle(seed).over(by)` (what `evaluation.shuffled_prediction` does):
    with a fixed seed that applies one and the same permutation to every group of the same
    size, so on a small, stable cross-section each name is scored against the same other
    name's return every day, which is not noise (rank IC -0.05, t -18 on the 20-name set).
    """
    key = pl.Series("__key", np.random.default_rng(seed).random(frame.height))
    return (
        frame.with_columns(key)
        .with_columns(pl.col(column).sort_by("__key").over(by).alias(output or column))
        .drop("__key")
    )


# -- data -------------------------------------------------------------------------------------
@dataclass
class Sources:
    """Silver context tables from the packaged sources, loaded once for every set."""

    macro: pl.DataFrame
    earnings: pl.DataFrame
    intervals: pl.DataFrame
    sentiment: pl.DataFrame
    seconds: float


def load_sources() -> Sources:
    started = time.perf_counter()
    today = today_utc()
    raw = MacroSource().observations()
    macro, _ = parse_observations(raw.filter(~not_observed(raw)), today)
    earnings, _ = parse_events(EarningsSource().events(), today)
    intervals, _ = parse_intervals(MembershipSource().intervals(), today)
    articles, _ = parse_articles(NewsSource().articles(None), today)
    sentiment = daily_sentiment(score_articles(articles))
    return Sources(macro, earnings, intervals, sentiment, time.perf_counter() - started)


def adjusted_bars(name: str, sample: int) -> pl.DataFrame:
    bars = select_bars(name)
    adjusted = adjust_bars(bars, build_corporate_actions(bars, load_curated()))
    if sample:
        names = sorted(adjusted["instrument"].unique().to_list())
        keep = names[:: max(1, len(names) // sample)]
        adjusted = adjusted.filter(pl.col("instrument").is_in(keep))
    return adjusted


def context_of(adjusted: pl.DataFrame, plan: Plan, sources: Sources) -> Context:
    days = sorted(adjusted["date"].unique().to_list())
    if plan.universe == "membership":
        universe = members_on(sources.intervals, days)
    else:  # every name with a bar that day
        universe = adjusted.select("date", "ticker").unique()
    return Context(
        macro=sources.macro,
        sentiment=sources.sentiment,
        earnings=sources.earnings,
        universe=universe,
        first_bars=adjusted.group_by("instrument").agg(pl.col("date").min().alias("first_date")),
    )


def with_fold(frame: pl.DataFrame, folds: list[Fold]) -> pl.DataFrame:
    """Rows dated inside a fold's test slice, tagged with the fold number."""
    parts = [
        fold.rows(frame, "test").with_columns(fold=pl.lit(fold.number, pl.Int32)) for fold in folds
    ]
    return pl.concat(parts)


def truncated(features: pl.DataFrame, folds: list[Fold], count: int) -> pl.DataFrame:
    """Features up to the end of the first ``count`` folds' test slices (same folds again)."""
    return features.filter(pl.col("date") <= folds[count - 1].test_end)


# -- books ------------------------------------------------------------------------------------
def timing_book(frame: pl.DataFrame) -> dict[str, Performance]:
    """Few-name sets: each day equal weights on the names predicted to rise (else cash), and an
    always-long equal-weight book as the benchmark, both through `evaluation.simulate`."""
    wide_pred = frame.pivot(on="instrument", index="date", values="prediction", sort_columns=True)
    wide_pred = wide_pred.sort("date")
    names = [c for c in wide_pred.columns if c != "date"]
    realised = (
        frame.pivot(on="instrument", index="date", values="forward_return", sort_columns=True)
        .sort("date")
        .select(names)
        .to_numpy()
        .astype(np.float64)
    )
    scores = wide_pred.select(names).to_numpy().astype(np.float64)
    present = ~np.isnan(scores)
    count = np.maximum(present.sum(axis=1, keepdims=True), 1)
    long = np.where(present & (scores > 0), 1.0, 0.0) / count
    always = present / count
    result = {}
    for book, weights in (("long", long), ("benchmark", always)):
        run = simulate(weights, realised, CostModel())
        result[book] = performance(run["net"], run["turnover"])
    return result


def book_report(frame: pl.DataFrame, plan: Plan) -> dict[str, Performance]:
    """``frame``: universe rows of the test slices with prediction and 1-session return."""
    if plan.cross_sectional:
        return portfolio_report(portfolio_returns(frame, plan.k))
    return timing_book(frame)


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
    """Per date, each factor's rank IC with the label; one date's value uses only its rows."""
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


# -- Qlib -------------------------------------------------------------------------------------
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


# -- one data set -----------------------------------------------------------------------------
def evaluate_set(name: str, args: argparse.Namespace, sources: Sources) -> dict:
    plan = PLANS[name]
    split, horizon = plan.split, plan.split.horizon
    adjusted = adjusted_bars(name, args.sample)
    context = context_of(adjusted, plan, sources)
    first, last = adjusted["date"].min(), adjusted["date"].max()
    print(
        f"\n== {name}: {adjusted.height:,} bars, {adjusted['instrument'].n_unique()} instruments, "
        f"{adjusted['date'].n_unique():,} sessions {first}..{last}; universe: {plan.universe}"
        + (f" ({plan.note})" if plan.note else "")
    )
    config = LightGBMConfig()
    ours = Clock()

    # -- ours: features, labels, walk-forward, evaluation ------------------------------------
    with ours("features"):
        features = assemble(adjusted, first, last, context)
    sessions = sorted(features["date"].unique().to_list())
    folds = walk_forward_folds(sessions, split)
    if args.folds:
        folds = folds[: args.folds]
        features = truncated(features, folds, len(folds))
    with ours("labels"):
        labels = forward_returns(adjusted, horizon)
        next_day = forward_returns(adjusted, 1)
        labelled = labelled_universe(features, labels, plan.normalisation)
    with ours("walk-forward (train + predict)"):
        trained, predictions = walk_forward(
            features, labels, split, config, MODEL_FEATURES, plan.normalisation
        )
    assert [t.fold for t in trained] == folds, "walk_forward made other folds"
    members = features.filter(pl.col("in_universe").fill_null(False))
    inference = time.perf_counter()
    again = pl.concat(
        predict(t.booster, t.fold.rows(members, "test"), t.best_iteration) for t in trained
    )
    inference = time.perf_counter() - inference
    assert again.sort(KEY)["prediction"].equals(predictions.sort(KEY)["prediction"])
    test_rows = with_fold(labelled, folds)  # members of the test slices with a known label
    book_rows = with_fold(members.select(KEY), folds).join(
        next_day.select(*KEY, "forward_return"), on=KEY, how="left"
    )

    def scored(pred: pl.DataFrame) -> tuple[Score, dict[str, Performance]]:
        on_labels = test_rows.select(*KEY, "fold", "label").join(
            pred.select(*KEY, "prediction"), on=KEY, how="left"
        )
        on_book = book_rows.select(*KEY, "forward_return").join(
            pred.select(*KEY, "prediction"), on=KEY, how="left"
        )
        return score(on_labels, plan), book_report(on_book, plan)

    with ours("evaluation (IC, books)"):
        our_score, our_books = scored(predictions)
    with ours("conformal"):
        inside = width = rows = 0.0
        fold_coverage = []
        for t in trained:
            model = calibrate(
                t.booster, training_rows(labelled, t.fold, "validation"), CONFIDENCE,
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
    conformal = {
        "level": CONFIDENCE,
        "coverage": inside / rows if rows else math.nan,
        "mean_width": width / rows if rows else math.nan,
        "rows": int(rows),
        "fold_min": min(fold_coverage, default=math.nan),
        "fold_max": max(fold_coverage, default=math.nan),
    }
    our_total = ours.total(*ours.seconds)
    training = ours.seconds["walk-forward (train + predict)"] - inference

    # -- best single factor, chosen on training rows ------------------------------------------
    factor_clock = time.perf_counter()
    factors = [c for c in ALPHA158_COLUMNS if features[c].null_count() < features.height]
    daily = factor_daily_rank_ic(labelled, factors) if plan.cross_sectional else None
    chosen, factor_parts = [], []
    for fold in folds:
        factor, sign, figure = choose_factor(labelled, fold, factors, daily)
        chosen.append({"fold": fold.number, "factor": factor, "sign": sign, "train": figure})
        factor_parts.append(
            fold.rows(members, "test").select(*KEY, prediction=pl.col(factor) * sign)
        )
    factor_score, factor_books = scored(pl.concat(factor_parts))
    factor_seconds = time.perf_counter() - factor_clock

    # -- sanity runs ---------------------------------------------------------------------------
    sanity_clock = time.perf_counter()
    sanity = {}
    sanity["label as prediction"] = score(label_as_prediction(test_rows), plan)
    by = "date" if plan.cross_sectional else "instrument"  # across names / across time
    if plan.cross_sectional:  # the core's helper: one permutation for all same-sized days
        sanity["label shuffled per date (core helper)"] = score(
            shuffled_prediction(test_rows, seed=3), plan
        )
    sanity[f"label shuffled per {by} as prediction"] = score(
        shuffled_within(test_rows, "label", by, seed=3, output="prediction"), plan
    )
    # trained sanity runs: on the first folds of the cross-sectional sets, on every fold of the
    # small few-name sets; at most SANITY_ROUNDS boosting rounds (the leak would otherwise keep
    # improving for all 300, and a few dozen already rank it near 1)
    few = min(args.sanity_folds, len(folds)) if plan.cross_sectional else len(folds)
    quick = dataclasses.replace(config, num_boost_round=SANITY_ROUNDS)
    if few:
        small = truncated(features, folds, few)
        small_tests = test_rows.filter(pl.col("fold") < few)
        leak = small.join(labels.select(*KEY, leak_label="forward_return"), on=KEY, how="left")
        _, leaked = walk_forward(
            leak, labels, split, quick, (*MODEL_FEATURES, "leak_label"), plan.normalisation
        )
        shuffled = shuffled_within(labels, "forward_return", by, seed=5)
        _, noise = walk_forward(small, shuffled, split, quick, MODEL_FEATURES, plan.normalisation)
        for label, pred in (
            (f"label as a feature, trained ({few} folds)", leaked),
            (f"trained on shuffled labels ({few} folds)", noise),
        ):
            rows_ = small_tests.select(*KEY, "fold", "label").join(
                pred.select(*KEY, "prediction"), on=KEY, how="left"
            )
            sanity[label] = score(rows_, plan)
    sanity_seconds = time.perf_counter() - sanity_clock

    # -- Qlib ----------------------------------------------------------------------------------
    qlib = None
    if not args.no_qlib:
        with tempfile.TemporaryDirectory() as tmp:
            qlib = run_qlib(adjusted, features, folds, plan, Path(tmp))
        qlib_score, qlib_books = scored(qlib.predictions)
        qlib_rows = qlib.predictions.join(test_rows.select(KEY), on=KEY).height

    # -- report ----------------------------------------------------------------------------------
    test_days = test_rows["date"].n_unique()
    print(
        f"folds: {len(folds)} ({split.window}, train >= {split.min_train_sessions} sessions"
        + (f", last {split.rolling_sessions}" if split.window == "rolling" else "")
        + f", validation {split.validation_sessions}, gaps {split.gap_sessions}, refit every "
        f"{split.refit_every}); horizon {horizon} sessions; test {folds[0].test_start}.."
        f"{folds[-1].test_end}: {test_days} days, {test_rows.height:,} labelled rows"
    )
    models = [("ours (LightGBM, walk-forward)", our_score, our_books)]
    models.append(("best single Alpha158 factor", factor_score, factor_books))
    if qlib:
        models.append(("Qlib Alpha158 + LGBModel", qlib_score, qlib_books))
    print_scores(models, plan)
    print_books(models, plan)
    print(f"factor chosen per fold (on training rows): {runs(chosen)}")
    per_fold = fold_table(trained, predictions, test_rows, plan, qlib)
    print(
        f"per fold: {'test slice':23s} {'rows':>6s} {'best it.':>8s} {'valid rIC':>9s} "
        f"{'test rIC':>8s}" + (f" {'Qlib it.':>8s} {'Qlib rIC':>8s}" if qlib else "")
    )
    for row in per_fold:
        print(
            f"  {row['fold']:>6d} {row['test_start']}..{row['test_end']} {row['rows']:>6,d} "
            f"{row['best_iteration']:>8d} {_fmt(row['validation_rank_ic']):>9s} "
            f"{_fmt(row['test_rank_ic']):>8s}"
            + (
                f" {row['qlib_best_iteration']:>8d} {_fmt(row['qlib_test_rank_ic']):>8s}"
                if qlib
                else ""
            )
        )
    print(
        f"conformal {CONFIDENCE:.0%} intervals (calibrated on each validation slice, measured "
        f"on its test slice): coverage {conformal['coverage']:.3f} over {conformal['rows']:,} "
        f"rows, folds {conformal['fold_min']:.3f}..{conformal['fold_max']:.3f}, mean width "
        f"{conformal['mean_width']:.3f} (label units)"
    )
    print("sanity:")
    for label, s in sanity.items():
        print(
            f"  {label:44s} rank IC {_fmt(s.rank_ic, '+.3f')} (t {_fmt(s.rank_ic_t, '+.2f')}, "
            f"t NW{plan.split.horizon - 1} {_fmt(s.rank_ic_nw_t, '+.2f')}, "
            f"t NW{plan.long_lags} {_fmt(s.rank_ic_nw_long_t, '+.2f')}, {s.n:,} {s.unit})"
        )
    print(
        f"times (wall s): ours {our_total:.1f} = "
        + " + ".join(f"{k} {v:.1f}" for k, v in ours.seconds.items())
        + f"; of which training {training:.1f}, inference {inference:.1f} (re-run); "
        f"factor baseline {factor_seconds:.1f}; sanity runs {sanity_seconds:.1f}"
    )
    if qlib:
        q_total = qlib.clock.total(*qlib.clock.seconds)
        print(
            f"             Qlib {q_total:.1f} = "
            + " + ".join(f"{k} {v:.1f}" for k, v in qlib.clock.seconds.items())
            + f"; predicted {qlib_rows:,} of the labelled test rows; best iterations "
            f"{qlib.best_iterations}"
        )
        print(f"             ours / Qlib = {our_total / q_total:.3f}")
    return {
        "set": name,
        "bars": adjusted.height,
        "instruments": adjusted["instrument"].n_unique(),
        "universe": plan.universe,
        "cross_sectional": plan.cross_sectional,
        "split": dataclasses.asdict(split),
        "folds": [f.as_dict() for f in folds],
        "test_days": test_days,
        "test_rows": test_rows.height,
        "scores": {m: dataclasses.asdict(s) for m, s, _ in models},
        "books": {m: {b: dataclasses.asdict(p) for b, p in bk.items()} for m, _, bk in models},
        "factors_chosen": chosen,
        "per_fold": per_fold,
        "conformal": conformal,
        "sanity": {k: dataclasses.asdict(v) for k, v in sanity.items()},
        "times": {
            "ours": ours.seconds,
            "ours_total": our_total,
            "ours_training": training,
            "ours_inference": inference,
            "factor_baseline": factor_seconds,
            "sanity": sanity_seconds,
            "qlib": qlib.clock.seconds if qlib else None,
            "qlib_total": qlib.clock.total(*qlib.clock.seconds) if qlib else None,
            "best_iterations_ours": [t.best_iteration for t in trained],
            "best_iterations_qlib": qlib.best_iterations if qlib else None,
        },
    }


def fold_table(
    trained: list, predictions: pl.DataFrame, test_rows: pl.DataFrame, plan: Plan, qlib
) -> list[dict]:
    """Per fold: best iteration, validation rank IC (against the training target), and the
    test rank IC of ours and Qlib's on that fold's labelled test rows."""
    rows = []
    for number, t in enumerate(trained):
        tests = test_rows.filter(pl.col("fold") == t.fold.number).select(*KEY, "fold", "label")
        row = {
            "fold": t.fold.number,
            "test_start": t.fold.test_start,
            "test_end": t.fold.test_end,
            "rows": tests.height,
            "best_iteration": t.best_iteration,
            "validation_rank_ic": t.validation["rank_ic"].mean,
            "test_rank_ic": score(
                tests.join(predictions.select(*KEY, "prediction"), on=KEY, how="left"), plan
            ).rank_ic,
        }
        if qlib:
            row["qlib_best_iteration"] = qlib.best_iterations[number]
            row["qlib_test_rank_ic"] = score(
                tests.join(qlib.predictions, on=KEY, how="left"), plan
            ).rank_ic
        rows.append(row)
    return rows


def _fmt(value: float, spec: str = "+.4f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def print_scores(models: list, plan: Plan) -> None:
    unit = "days" if plan.cross_sectional else "rows"
    short, long = f"t NW{plan.split.horizon - 1}", f"t NW{plan.long_lags}"
    print(
        f"{'model':32s} {'rank IC':>8s} {'t':>7s} {short:>7s} {long:>8s} {'ICIR':>7s} "
        f"{'IC':>8s} {'t(IC)':>7s} {unit:>7s}"
    )
    for label, s, _ in models:
        print(
            f"{label:32s} {_fmt(s.rank_ic):>8s} {_fmt(s.rank_ic_t, '+.2f'):>7s} "
            f"{_fmt(s.rank_ic_nw_t, '+.2f'):>7s} {_fmt(s.rank_ic_nw_long_t, '+.2f'):>8s} "
            f"{_fmt(s.icir, '+.3f'):>7s} {_fmt(s.ic):>8s} {_fmt(s.ic_t, '+.2f'):>7s} {s.n:>7,d}"
        )
    if not plan.cross_sectional:
        for label, s, _ in models:
            print(f"  {label} per name (rank IC, {short}, {long}, rows): " + "; ".join(
                f"{n} {_fmt(v['ic'], '+.3f')} {_fmt(v['nw_t'], '+.2f')} "
                f"{_fmt(v['nw_long_t'], '+.2f')} {v['rows']:,}"
                for n, v in s.per_name.items()
            ))  # fmt: skip


def print_books(models: list, plan: Plan) -> None:
    if plan.cross_sectional:
        books = [("long", f"top-{plan.k}"), ("long_short", f"top-{plan.k} - bottom-{plan.k}")]
        bench = ("benchmark", "equal-weight buy-and-hold")
    else:
        books = [("long", "long if predicted up")]
        bench = ("benchmark", "always long, equal weight")
    print(
        f"{'book, net of 5/15 bp':32s} {'':22s} {'ann.ret':>8s} {'Sharpe':>7s} {'maxDD':>7s} "
        f"{'turnover':>8s}"
    )
    rows = [(label, title, bk[key]) for label, _, bk in models for key, title in books]
    rows.append((*bench, models[0][2]["benchmark"]))
    for label, title, p in rows:
        print(
            f"{label:32s} {title:22s} {_fmt(p.annual_return, '+.1%'):>8s} "
            f"{_fmt(p.sharpe, '+.2f'):>7s} {_fmt(p.max_drawdown, '.1%'):>7s} "
            f"{_fmt(p.mean_turnover, '.2f'):>8s}"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(PLANS), help="comma-separated data sets")
    parser.add_argument("--folds", type=int, default=0, help="only the first N folds (0: all)")
    parser.add_argument("--sanity-folds", type=int, default=2, help="folds of trained sanity runs")
    parser.add_argument("--no-qlib", action="store_true", help="skip Qlib's workflow")
    parser.add_argument("--sample", type=int, default=0, help="about N instruments (0: all)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = set(names) - set(PLANS)
    if unknown:
        parser.error(f"unknown sets {sorted(unknown)}; choose from {', '.join(PLANS)}")
    warnings.filterwarnings("ignore", category=UserWarning)
    started = time.perf_counter()
    print(f"load average at start: {load_average()}; polars threads {pl.thread_pool_size()}, "
          f"LightGBM threads {LightGBMConfig().num_threads}")  # fmt: skip
    sources = load_sources()
    print(f"context sources (macro, earnings, membership, news tone) loaded in "
          f"{sources.seconds:.1f}s, outside both totals")  # fmt: skip
    results = [evaluate_set(name, args, sources) for name in names]
    end_load = load_average()
    print(f"\nload average at end: {end_load}; whole run {time.perf_counter() - started:.0f}s")
    if args.out:
        payload = {"sets": results, "load_average_end": end_load, "argv": sys.argv[1:]}
        args.out.write_text(json.dumps(payload, indent=1, default=str))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
