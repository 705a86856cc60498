"""Request and response models: the OpenAPI contract (hot paths send pre-serialised bytes of
exactly these shapes; the tests validate responses against them)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

import polars as pl
from pydantic import BaseModel, Field, StringConstraints, create_model

from stock_assets import tables

TICKER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,11}$"
re_ticker = re.compile(TICKER_PATTERN)
Ticker = Annotated[str, StringConstraints(pattern=TICKER_PATTERN)]
Role = Literal["champion", "challenger"]


class Error(BaseModel):
    error: str = Field(description="machine-readable code, e.g. invalid_api_key, unknown_ticker")
    message: str
    detail: list[dict] | None = None


class ModelRef(BaseModel):
    role: Role
    name: str
    version: str = Field(description="registered MLflow model version")


class Signal(BaseModel):
    rank: int = Field(description="1 = highest champion prediction of the session")
    side: Literal["long", "short", "none"]
    weight: float = Field(description="signed share of capital")
    rule: str


# The expected return (a fraction over the horizon) and price (currency of last_close) with
# their 80/90/95% intervals, as gold/predictions stores them: names, types and the catalog's
# descriptions with units. Null without 20 sessions of returns behind the row.
ReturnFields = create_model(
    "ReturnFields",
    **{
        name: (
            (dt.date if kind == pl.Date else float) | None,
            Field(None, description=tables.GOLD_PREDICTIONS.columns[name]),
        )
        for name, kind in tables.PREDICTED_RETURN_COLUMNS.items()
    },
)


class SetAside(BaseModel):
    date: dt.date = Field(description="the newest session after this prediction set aside")
    reason: str = Field(
        description="why silver/adjusted_daily_bars set the bar aside (an undecided price "
        "jump: no features and no prediction that session)"
    )


class StoredPrediction(ReturnFields):
    ticker: str
    instrument: str
    date: dt.date = Field(description="the session the prediction is for (its features' date)")
    prediction: float = Field(description="score in the label's units (rank-gaussian return)")
    lower: float
    upper: float
    interval_level: float
    horizon: int = Field(description="sessions ahead")
    in_universe: bool | None
    model: ModelRef
    feature_table_version: int
    thin: bool | None = Field(
        None, description="its session was below the signals' floor (too few names to rank)"
    )
    set_aside: SetAside | None = Field(
        None, description="a newer session of this ticker was set aside, so none is served"
    )
    signal: Signal | None = None


class SessionStatus(BaseModel):
    date: dt.date | None
    names: int = Field(description="index members ranked that session (predicted, when thin)")
    thin: bool = Field(
        description="too few names to rank: no signals and no backtest day for the session"
    )


class ThinSession(BaseModel):
    date: dt.date
    names: int = Field(description="index members with a champion prediction that session")


class LatestPredictions(BaseModel):
    data_date: dt.date
    role: Role
    predictions_table_version: int
    model_versions: list[str]
    session: SessionStatus | None = None
    thin_sessions_after: list[ThinSession] = Field(
        default_factory=list,
        description="newer sessions below the signals' floor, not served as latest",
    )
    missing: list[str] = Field(description="known tickers with no prediction up to data_date")
    items: list[StoredPrediction]


class HistoryItem(ReturnFields):
    date: dt.date
    role: Role
    prediction: float
    lower: float
    upper: float
    interval_level: float
    horizon: int
    in_universe: bool | None
    model_name: str
    model_version: str
    feature_table_version: int


class History(BaseModel):
    ticker: str
    data_date: dt.date
    predictions_table_version: int
    start: dt.date | None
    end: dt.date | None
    model_versions: list[str]
    items: list[HistoryItem]
    thin_sessions: list[ThinSession] = Field(
        default_factory=list, description="sessions of these items below the signals' floor"
    )
    set_aside_sessions: list[SetAside] = Field(
        default_factory=list, description="sessions of the range this ticker was set aside"
    )


class TickerInfo(BaseModel):
    ticker: str
    instrument: str
    first_date: dt.date
    last_date: dt.date
    in_universe: bool | None


class Tickers(BaseModel):
    data_date: dt.date
    predictions_table_version: int
    champion_version: str | None
    tickers: list[TickerInfo]


class Position(BaseModel):
    ticker: str
    rank: int
    side: Literal["long", "short"]
    weight: float
    prediction: float
    model_version: str


class Signals(BaseModel):
    data_date: dt.date
    predictions_table_version: int
    champion_version: str | None
    rule: str | None
    session: SessionStatus | None = None
    positions: list[Position]


class FeatureContribution(BaseModel):
    feature: str
    value: float | None = Field(description="the input the booster saw (null: missing)")
    contribution: float = Field(description="its share of the raw score, in the score's units")


class Why(BaseModel):
    raw_score: float = Field(description="bias + every contribution (equals the prediction)")
    bias: float = Field(description="the model's expected raw score (LightGBM's last column)")
    top: list[FeatureContribution] = Field(description="largest contributions by size")
    rest: float = Field(description="summed contributions of the features not in top")
    features: int = Field(description="features the model has")


class Explanation(Why):
    ticker: str
    date: dt.date
    role: Role
    model: ModelRef = Field(description="the version that made the stored prediction")
    prediction: float = Field(description="the stored score (rank-gaussian return units)")
    feature_table_version: int = Field(description="gold/daily_features version explained")
    session: SessionStatus


class LatestQuery(BaseModel):
    """The latest route's query: FastAPI validates it on the route, the hot path with the same
    model (`serving.contract.latest_query`)."""

    tickers: str | None = Field(
        None,
        max_length=2000,
        description="comma-separated tickers (at most STOCK_API_MAX_TICKERS); all when omitted",
    )
    role: Role = Field(
        "champion", description="whose stored predictions: the champion's or the challenger's"
    )


class OnDemandRequest(BaseModel):
    tickers: list[Ticker] = Field(min_length=1, description="tickers to score now")
    source: Literal["cache", "feast"] = Field(
        "cache",
        description="cache: the online rows the service holds (refreshed when the feature table "
        "moves); feast: a cold read of the Feast online store for this request",
    )
    explain: bool = Field(False, description="add each item's feature contributions")
    top: int = Field(10, ge=1, le=50, description="contributions per explanation")


class OnDemandItem(ReturnFields):
    """The return and price fields are the stored ones of the same ticker, session and model
    version (the same score): null when gold/predictions has no such row yet."""

    ticker: str
    prediction: float | None
    lower: float | None
    upper: float | None
    interval_level: float | None
    horizon: int | None
    feature_date: dt.date | None = Field(description="session of the online feature row")
    feature_table_version: int | None
    status: Literal["fresh", "stale", "missing"]
    age_seconds: float | None
    explanation: Why | None = Field(None, description="when the request asked to explain")
    set_aside: SetAside | None = Field(
        None, description="a session after the feature row's was set aside for this ticker"
    )


class Assignment(BaseModel):
    challenger_share: float = Field(description="percent of API keys the challenger serves")
    bucket: int = Field(description="this key's fixed bucket in 0..9999 (hash of the key id)")


class OnDemandResponse(BaseModel):
    model: ModelRef
    assignment: Assignment
    source: Literal["cache", "feast"]
    data_date: dt.date | None = Field(description="newest feature session among the items")
    items: list[OnDemandItem]


class BacktestDay(BaseModel):
    date: dt.date
    names: int = Field(description="index members ranked that session")
    horizon: int = Field(description="sessions ahead the IC's outcome looks")
    ic: float | None
    rank_ic: float | None
    long_net: float | None
    long_turnover: float | None
    long_short_net: float | None
    long_short_turnover: float | None
    missing_outcomes: int = Field(description="held positions with no bar next session (cash)")
    benchmark: float | None
    model_versions: str


class Backtest(BaseModel):
    data_date: dt.date
    backtest_table_version: int | None
    model_versions: list[str]
    summary: dict[str, float | int | str | None] = Field(
        description="means, Newey-West t's (t_stat_shown names the lags), cumulative returns"
    )
    days: list[BacktestDay]
    thin_sessions: list[ThinSession] = Field(
        default_factory=list, description="sessions left out: too few names to rank"
    )


class ModelCardOut(BaseModel):
    role: Role
    name: str
    version: str
    run_id: str
    half_width: float
    interval_level: float
    horizon: int
    refit_month: str | None
    champion_from: str | None


class Quality(BaseModel):
    role: Role
    model_version: str
    days: int
    rank_ic: float | None
    rank_ic_nw_t_stat: float | None = Field(description="Newey-West t with nw_lags lags")
    nw_lags: int


class Models(BaseModel):
    data_date: dt.date
    predictions_table_version: int
    champion_version: str | None
    models: dict[str, ModelCardOut | None]
    realised_quality: list[Quality]
    rollout: Rollout


class Rollout(BaseModel):
    challenger_share: float = Field(ge=0, le=100, description="percent of API keys, 0..100")
    source: str = Field("admin", description="who set it last: env, admin or file")
    updated_at: dt.datetime | None = None


class RolloutUpdate(BaseModel):
    challenger_share: float = Field(ge=0, le=100, description="percent of API keys, 0..100")


class AuditOut(BaseModel):
    summary: str
    prediction: dict
    model: dict
    features: dict | None
    adjusted_bars: list[dict]
    silver_bars: list[dict]
    bronze_bars: list[dict]
    kafka: list[dict]


class Live(BaseModel):
    status: Literal["live"]
    pid: int
    started_at: dt.datetime


class Ready(BaseModel):
    """Without a key only ``ready``; the rest answers a valid key (``last_error`` in full for an
    admin key only: exception texts can quote store addresses and credentials)."""

    ready: bool
    reasons: list[str] | None = None
    data_date: dt.date | None = None
    loaded_at: dt.datetime | None = None
    snapshot_age_seconds: float | None = None
    table_versions: dict[str, int | None] | None = None
    champion: ModelRef | None = None
    challenger: ModelRef | None = None
    online_cache: dict | None = None
    last_error: str | None = None


Models.model_rebuild()
