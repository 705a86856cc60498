"""Request and response models: the OpenAPI contract (hot paths send pre-serialised bytes of
exactly these shapes; the tests validate responses against them)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

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


class StoredPrediction(BaseModel):
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


class HistoryItem(BaseModel):
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


class OnDemandRequest(BaseModel):
    tickers: list[Ticker] = Field(min_length=1, description="tickers to score now")
    source: Literal["cache", "feast"] = Field(
        "cache",
        description="cache: the online rows the service holds (refreshed when the feature table "
        "moves); feast: a cold read of the Feast online store for this request",
    )
    explain: bool = Field(False, description="add each item's feature contributions")
    top: int = Field(10, ge=1, le=50, description="contributions per explanation")


class OnDemandItem(BaseModel):
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
    ready: bool
    reasons: list[str]
    data_date: dt.date | None
    loaded_at: dt.datetime | None
    snapshot_age_seconds: float | None
    table_versions: dict[str, int | None]
    champion: ModelRef | None
    challenger: ModelRef | None
    online_cache: dict | None
    last_error: str | None


Models.model_rebuild()
