"""The data sets of `model_evaluation.py`: how each is evaluated, its bars, context, features,
folds and labels.

Imported by plain name from bench/ (the entry script puts bench/ and the repository root on
``sys.path``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import polars as pl
from model_eval_clock import Clock

from stock_assets.bronze.replay import select_bars
from stock_assets.gold.assemble import Context, assemble
from stock_assets.gold.feature_set import MODEL_FEATURES
from stock_assets.gold.signals import SignalConfig, session_cross_sections
from stock_assets.models.challenger import TrainingConfig
from stock_assets.models.labels import Normalisation, forward_returns, labelled_universe
from stock_assets.models.walk_forward import (
    Fold,
    LightGBMConfig,
    SplitConfig,
    TrainedFold,
    predict,
    train_labelled,
    walk_forward_folds,
)
from stock_assets.pit import adjust_bars, members_on
from stock_assets.resources.sources import (
    EarningsSource,
    MacroSource,
    MembershipSource,
    NewsSource,
    today_utc,
)
from stock_assets.silver.corporate_actions import build_corporate_actions, load_curated
from stock_assets.silver.earnings_calendar import parse_events
from stock_assets.silver.index_membership import parse_intervals
from stock_assets.silver.macro_indicators import not_observed, parse_observations
from stock_assets.silver.market_sentiment import daily_sentiment
from stock_assets.silver.news_sentiment import parse_articles, score_articles

KEY = ["instrument", "date"]


# -- what runs on each data set ---------------------------------------------------------------
# What ships, from its one definition: the challenger asset's defaults (split, LightGBM, interval
# level). Every plan evaluates it; a variant is a named change of those defaults, never the
# headline.
SHIPPED = TrainingConfig()
VARIANTS: dict[str, TrainingConfig] = {
    "shipped": SHIPPED,
    # the asset's rolling window (its `rolling_sessions`): on 33-year sets an expanding window
    # weighs 1990 like last year
    "rolling": TrainingConfig(window="rolling"),
}
SIGNAL_FLOOR = SignalConfig()  # the platform's minimum cross-section to rank a session


@dataclass(frozen=True)
class Plan:
    """How one data set is evaluated.

    ``universe``: "membership" = the packaged S&P 500 membership point in time; "all" = every
    name with a bar is a member. ``cross_sectional``: daily cross-sectional IC and a top-k book
    (needs a real cross-section); otherwise time-series IC per name and a long-or-cash book.
    ``thin``: what the scores do with sessions below the signal floor (`SIGNAL_FLOOR`):
    "exclude" them (as `gold/signals` and `gold/backtest` do), "flag" them (a set whose every
    session is below the floor: the figures are research, the platform would publish nothing),
    or "none" (time series: nothing is ranked).
    """

    universe: str
    cross_sectional: bool
    normalisation: Normalisation
    thin: str
    k: int = 0  # top-k (and bottom-k) of the cross-sectional books
    note: str = ""
    training: TrainingConfig = SHIPPED

    @property
    def split(self) -> SplitConfig:
        return self.training.split()

    @property
    def long_lags(self) -> int:
        """Lags of the conservative Newey-West t: 20 days of daily ICs, 252 rows of a name
        (slow predictors meeting slow regimes in returns; both at least the horizon)."""
        return max(20 if self.cross_sectional else 252, self.split.horizon)


PLANS: dict[str, Plan] = {
    "sp500_2009": Plan("membership", True, "rank_gauss", "exclude", k=50),
    "sp500_1990_adjclose": Plan(
        "membership",
        True,
        "rank_gauss",
        "flag",
        k=5,
        note="20 names picked in 2022 (survivors): membership only trims the early years",
    ),
    "msft_1986": Plan(
        "all", False, "none", "none", note="one name: no cross-section, time-series IC only"
    ),
    "tsd_ohlcv": Plan(
        "all", False, "none", "none", note="1-5 names a day: time-series IC per name"
    ),
}


def plan_for(name: str, variant: str) -> Plan:
    """The set's plan with the training settings of ``variant`` (a key of `VARIANTS`)."""
    return dataclasses.replace(PLANS[name], training=VARIANTS[variant])


def chosen_sets(parser, sets: str) -> list[str]:
    """The comma-separated ``--sets`` value as plan names; an unknown name is a usage error."""
    names = [n.strip() for n in sets.split(",") if n.strip()]
    unknown = set(names) - set(PLANS)
    if unknown:
        parser.error(f"unknown sets {sorted(unknown)}; choose from {', '.join(PLANS)}")
    return names


# -- bars and context -------------------------------------------------------------------------
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


# -- features, folds, labels ------------------------------------------------------------------
@dataclass
class SetData:
    """One data set ready to train and score on."""

    plan: Plan
    adjusted: pl.DataFrame
    features: pl.DataFrame  # up to the end of the last fold kept
    folds: list[Fold]
    labels: pl.DataFrame  # `forward_returns` over the horizon
    labelled: pl.DataFrame  # `labelled_universe`: members with a known label
    members: pl.DataFrame  # feature rows of the day's universe
    test_rows: pl.DataFrame  # labelled members of the test slices, with their fold
    book_rows: pl.DataFrame  # members of the test slices with their 1-session return
    sessions: pl.DataFrame  # per test session: names, members, required, thin (and scored)
    every: int = 1  # evaluated every K-th monthly fold (`strided`)
    monthly_folds: int = 0  # monthly folds before the stride (after ``--folds``)

    @property
    def thin_days(self) -> int:
        return int(self.sessions["thin"].sum())

    @property
    def coverage(self) -> str:
        """Which test months the figures cover, for every table header: a strided run never
        reads as every month."""
        first, last = self.folds[0].test_start, self.folds[-1].test_end
        span = f"{first:%Y-%m}..{last:%Y-%m}"
        if self.every == 1:
            return f"every monthly fold: {len(self.folds)} test months {span}"
        return (
            f"1 in {self.every} monthly folds (K={self.every}): {len(self.folds)} of "
            f"{self.monthly_folds} test months {span} (each the shipped refit for its month; "
            "the months are a sample)"
        )


def scored_sessions(book_rows: pl.DataFrame, universe: pl.DataFrame, plan: Plan) -> pl.DataFrame:
    """`gold.signals.session_cross_sections` of the test slices (every member is predicted, so
    its names are the day's members with a feature row), with ``scored``: the session counts
    in the figures (not thin, or the plan does not exclude thin sessions)."""
    ranked = book_rows.select("date", "instrument").with_columns(
        role=pl.lit("champion"), in_universe=pl.lit(True), prediction=pl.lit(0.0)
    )
    floor = SIGNAL_FLOOR
    sessions = session_cross_sections(ranked, universe, floor.min_names, floor.min_universe_share)
    if not plan.cross_sectional:  # nothing is ranked across names
        sessions = sessions.with_columns(thin=pl.lit(False))
    return sessions.with_columns(scored=~pl.col("thin") | pl.lit(plan.thin != "exclude"))


def with_fold(frame: pl.DataFrame, folds: list[Fold]) -> pl.DataFrame:
    """Rows dated inside a fold's test slice, tagged with the fold number."""
    parts = [
        fold.rows(frame, "test").with_columns(fold=pl.lit(fold.number, pl.Int32)) for fold in folds
    ]
    return pl.concat(parts)


def strided(folds: list[Fold], every: int) -> list[Fold]:
    """Every ``every``-th fold, counted back from the newest (which is always kept). Each
    fold is unchanged (the shipped refit for its month, trained on all before it); only
    which test months are evaluated is a sample."""
    if every < 1:
        raise ValueError(f"every must be at least 1, not {every}")
    return folds[(len(folds) - 1) % every :: every]


def train_folds(
    labelled: pl.DataFrame,
    members: pl.DataFrame,
    folds: list[Fold],
    config: LightGBMConfig,
    names: tuple[str, ...] | list[str] = MODEL_FEATURES,
) -> tuple[list[TrainedFold], pl.DataFrame]:
    """`walk_forward`'s training of exactly ``folds`` (it trains every fold of its sessions,
    and a strided run must skip the others): `train_labelled` per fold on ``labelled``
    (`labelled_universe` rows, labelled once), then the test slice's ``members`` (the day's
    universe feature rows) predicted, ``fold`` added, sorted by date and instrument."""
    trained, parts = [], []
    for fold in folds:
        result = train_labelled(labelled, fold, config, names)
        trained.append(result)
        test = predict(result.booster, fold.rows(members, "test"), result.best_iteration)
        parts.append(test.with_columns(fold=pl.lit(fold.number, pl.Int32)))
    return trained, pl.concat(parts).sort("date", "instrument")


def truncated(features: pl.DataFrame, folds: list[Fold], count: int) -> pl.DataFrame:
    """Features up to the end of the first ``count`` folds' test slices (same folds again)."""
    return features.filter(pl.col("date") <= folds[count - 1].test_end)


def prepare(
    adjusted: pl.DataFrame,
    context: Context,
    plan: Plan,
    fold_count: int,
    clock: Clock,
    every: int = 1,
) -> SetData:
    """Features and labels (timed on ``clock``) and the walk-forward folds: the first
    ``fold_count`` of them (0: all), of those every ``every``-th (`strided`)."""
    with clock("features"):
        features = assemble(adjusted, adjusted["date"].min(), adjusted["date"].max(), context)
    sessions = sorted(features["date"].unique().to_list())
    folds = walk_forward_folds(sessions, plan.split)
    if fold_count:
        folds = folds[:fold_count]
        features = truncated(features, folds, len(folds))
    monthly = len(folds)
    folds = strided(folds, every)
    with clock("labels"):
        labels = forward_returns(adjusted, plan.split.horizon)
        next_day = forward_returns(adjusted, 1)
        labelled = labelled_universe(features, labels, plan.normalisation)
    members = features.filter(pl.col("in_universe").fill_null(False))
    book_rows = with_fold(members.select(KEY), folds).join(
        next_day.select(*KEY, "forward_return"), on=KEY, how="left"
    )
    sessions = scored_sessions(book_rows, context.universe, plan)
    scored = sessions.filter("scored").select("date")
    return SetData(
        plan, adjusted, features, folds, labels, labelled, members,
        with_fold(labelled, folds).join(scored, on="date"), book_rows.join(scored, on="date"),
        sessions, every, monthly,
    )  # fmt: skip
