"""The latest asset outputs as readers see them: the API (serving/) and the app (app/) share this.

No Dagster and no recomputation: everything is read from the gold tables and the MLflow
registry. A reader that wants one consistent view (predictions, signals and backtest of the same
moment) calls `Outputs.pinned`, which fixes every table's Delta version once; later writes by the
pipeline are then invisible to it until it pins again.

    from stock_assets.outputs import Outputs
    out = Outputs.from_env().pinned()
    out.latest_predictions(["AAPL"])       # newest full session (or the ticker's own latest)
    out.prediction_features(out.stored_prediction("AAPL", day))   # the row it was scored on
    out.prediction_history("AAPL", start, end)
    out.models()["champion"].version       # the registry's champion alias, with its interval
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import polars as pl

from stock_assets import config, tables
from stock_assets.lake import Lake, LakeIO
from stock_assets.models.evaluation import daily_ic, hac_lags, summarize_ic, t_label
from stock_assets.models.labels import forward_returns, normalise_cross_section

CHAMPION, CHALLENGER = "champion", "challenger"
ROLES = (CHAMPION, CHALLENGER)
# the tables whose versions say how fresh the outputs are (path -> catalog entry)
TRACKED = {
    t.path: t
    for t in (
        tables.GOLD_PREDICTIONS,
        tables.GOLD_SIGNALS,
        tables.GOLD_BACKTEST,
        tables.GOLD_DAILY_FEATURES,
        tables.ADJUSTED_DAILY_BARS,
    )
}
SIGNAL_COLUMNS = ["rank", "side", "weight", "rule"]
# expected return and price with their intervals (units in the catalog), read where stored
RETURN_COLUMNS = list(tables.PREDICTED_RETURN_COLUMNS)
PREDICTION_COLUMNS = ["ticker", "instrument", "date", "role", "prediction", "lower", "upper"]
PREDICTION_COLUMNS += ["interval_level", "horizon", "in_universe", "model_name", "model_version"]
PREDICTION_COLUMNS += ["feature_table_version"]


@dataclass(frozen=True)
class ModelCard:
    """A registered model version as the readers need it: who it is and its interval rule.

    The interval is the stored split-conformal half-width around the prediction, as
    `gold/predictions` stores it (prediction -/+ ``half_width`` at ``interval_level``).
    """

    role: str
    name: str
    version: str
    run_id: str
    half_width: float
    interval_level: float
    horizon: int
    refit_month: str | None = None
    champion_from: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_version(cls, role: str, name: str, version) -> ModelCard:
        """From an MLflow ``ModelVersion`` (its tags carry the interval and the horizon)."""
        tags = dict(version.tags or {})
        return cls(
            role=role,
            name=name,
            version=str(version.version),
            run_id=version.run_id,
            half_width=float(tags.get("conformal_half_width", "nan")),
            interval_level=float(tags.get("interval_level", "nan")),
            horizon=int(tags.get("horizon", "1")),
            refit_month=tags.get("refit_month"),
            champion_from=tags.get("champion_from"),
            tags=tags,
        )

    def interval(self, prediction):
        """``(lower, upper)`` for a float or a numpy array of predictions."""
        return prediction - self.half_width, prediction + self.half_width

    def as_dict(self) -> dict:
        keep = ("role", "name", "version", "run_id", "half_width", "interval_level", "horizon")
        out = {k: getattr(self, k) for k in keep}
        out |= {"refit_month": self.refit_month, "champion_from": self.champion_from}
        return out


@dataclass(frozen=True)
class Freshness:
    """How current the outputs are: the newest predicted session and each table's version."""

    newest_session: dt.date | None
    versions: Mapping[str, int | None]
    checked_at: dt.datetime


class Outputs:
    """Read-only access to the gold outputs and the registry's champion and challenger."""

    def __init__(self, lake: LakeIO, registry=None, pins: Mapping[str, int | None] | None = None):
        self.lake = lake
        self.registry = registry  # a RegistryIO (ModelRegistry); None: no model information
        self.pins = dict(pins) if pins is not None else None

    @classmethod
    def from_env(cls, with_registry: bool = True) -> Outputs:
        """``STOCK_LAKE_ROOT`` and the MLflow settings (`ModelRegistry.from_env`)."""
        registry = None
        if with_registry:
            from stock_assets.models.registry import ModelRegistry  # imports MLflow (seconds)

            registry = ModelRegistry.from_env()
        return cls(Lake(config.lake_root()), registry)

    # -- versions ------------------------------------------------------------------------------
    def versions(self) -> dict[str, int | None]:
        """Delta version per tracked table (None: never written); the pins when pinned."""
        if self.pins is not None:
            return dict(self.pins)
        return {path: self.lake.version(table) for path, table in TRACKED.items()}

    def pinned(self) -> Outputs:
        """The same reader with every tracked table fixed at its current version."""
        return Outputs(self.lake, self.registry, self.versions())

    def freshness(self) -> Freshness:
        return Freshness(self.newest_session(), self.versions(), dt.datetime.now(dt.UTC))

    # -- predictions ---------------------------------------------------------------------------
    def newest_session(self) -> dt.date | None:
        """The newest session with a champion prediction (None before any)."""
        frame = self._scan(tables.GOLD_PREDICTIONS)
        if frame is None:
            return None
        return (
            frame.filter(pl.col("role") == CHAMPION).select(pl.col("date").max()).collect().item()
        )

    def latest_session(self) -> dt.date | None:
        """The newest session with a full cross-section: the newest champion session that
        gold/signals ranked (a thin session has no signals). Falls back to the newest predicted
        session when none was ranked yet (its figures then carry the thin flag)."""
        newest = self.newest_session()
        signals = self._scan(tables.GOLD_SIGNALS)
        if newest is None or signals is None:
            return newest
        ranked = signals.filter(pl.col("date") <= newest).select(pl.col("date").max())
        return ranked.collect().item() or newest

    def latest_predictions(
        self, tickers: Iterable[str] | None = None, role: str = CHAMPION
    ) -> pl.DataFrame:
        """Each ticker's newest ``role`` prediction up to `latest_session` (its own date when it
        did not trade that session), with interval, model, ``thin`` (its session below the
        signals' floor), the stored returns and prices (`RETURN_COLUMNS`, where stored) and
        (for the champion; null otherwise) the signal of that date. `set_aside` says which
        newer sessions of a ticker had no prediction, and why."""
        day = self.latest_session()
        if day is None:
            return _empty([*PREDICTION_COLUMNS, "thin", *SIGNAL_COLUMNS])
        frame = self._scan(tables.GOLD_PREDICTIONS).filter(
            pl.col("role") == role, pl.col("date") <= day, pl.col("month") <= f"{day:%Y-%m}"
        )
        if tickers is not None:
            frame = frame.filter(pl.col("ticker").is_in(list(tickers)))
        newest = frame.group_by("ticker").agg(pl.col("date").max())
        rows = frame.join(newest, on=["ticker", "date"]).select(_stored(frame)).collect()
        thin = self.thin_sessions(rows["date"].min(), day) if rows.height else None
        thin_days = thin["date"] if thin is not None else pl.Series([], dtype=pl.Date)
        rows = rows.with_columns(thin=pl.col("date").is_in(thin_days.implode()))
        signals = self._scan(tables.GOLD_SIGNALS)
        if signals is None or role != CHAMPION or rows.is_empty():  # signals rank the champion
            schema = tables.GOLD_SIGNALS.schema
            nulls = [pl.lit(None, schema[c]).alias(c) for c in SIGNAL_COLUMNS]
            return rows.with_columns(nulls).sort("ticker")
        dates = rows["date"].unique()
        picked = signals.filter(
            pl.col("month").is_in(dates.dt.strftime("%Y-%m").unique().implode()),
            pl.col("date").is_in(dates.implode()),
        ).select("ticker", "date", *SIGNAL_COLUMNS)
        return rows.join(picked.collect(), on=["ticker", "date"], how="left").sort("ticker")

    def prediction_history(
        self,
        ticker: str,
        start: dt.date | None = None,
        end: dt.date | None = None,
        role: str | None = CHAMPION,
    ) -> pl.DataFrame:
        """One ticker's stored predictions from ``start`` to ``end`` (both ends; open when None),
        oldest first; ``role=None`` gives both roles."""
        frame = self._scan(tables.GOLD_PREDICTIONS)
        if frame is None:
            return _empty(PREDICTION_COLUMNS)
        frame = frame.filter(pl.col("ticker") == ticker)
        if start is not None:
            frame = frame.filter(pl.col("date") >= start, pl.col("month") >= f"{start:%Y-%m}")
        if end is not None:
            frame = frame.filter(pl.col("date") <= end, pl.col("month") <= f"{end:%Y-%m}")
        if role is not None:
            frame = frame.filter(pl.col("role") == role)
        return frame.select(_stored(frame)).sort("date", "role").collect()

    def stored_prediction(self, ticker: str, day: dt.date, role: str = CHAMPION) -> dict | None:
        """The stored ``role`` prediction of ``ticker`` for ``day`` (None: nothing stored)."""
        frame = self._scan(tables.GOLD_PREDICTIONS)
        if frame is None:
            return None
        found = frame.filter(
            pl.col("month") == f"{day:%Y-%m}",
            pl.col("date") == day,
            pl.col("ticker") == ticker,
            pl.col("role") == role,
        ).collect()
        return found.row(0, named=True) if found.height else None

    def prediction_features(self, prediction: Mapping) -> pl.DataFrame:
        """The gold/daily_features row a stored prediction was scored on: its instrument and
        date at the ``feature_table_version`` it recorded (Delta time travel), so a later
        recomputation of the features does not change what explains it."""
        day = prediction["date"]
        frame = self.lake.read_dates(
            tables.GOLD_DAILY_FEATURES, day, day, prediction["feature_table_version"]
        )
        return frame.filter(pl.col("instrument") == prediction["instrument"])

    def set_aside(
        self, start: dt.date | None = None, end: dt.date | None = None, tickers=None
    ) -> pl.DataFrame:
        """``ticker, instrument, date, set_aside``: bars of silver/adjusted_daily_bars set aside
        (an undecided price jump: no features, no prediction that day), with the reason."""
        columns = ["ticker", "instrument", "date", "set_aside"]
        bars = self._scan(tables.ADJUSTED_DAILY_BARS)
        if bars is None or "set_aside" not in bars.collect_schema():
            return pl.DataFrame(schema={c: pl.Date if c == "date" else pl.String for c in columns})
        bars = bars.filter(pl.col("set_aside").is_not_null())
        if start is not None:
            bars = bars.filter(pl.col("date") >= start, pl.col("month") >= f"{start:%Y-%m}")
        if end is not None:
            bars = bars.filter(pl.col("date") <= end, pl.col("month") <= f"{end:%Y-%m}")
        if tickers is not None:
            bars = bars.filter(pl.col("ticker").is_in(list(tickers)))
        return bars.select(columns).sort("ticker", "date").collect()

    def tickers(self) -> pl.DataFrame:
        """Every ticker with a stored prediction: ``ticker, instrument, first_date, last_date,
        in_universe`` (membership on its last date)."""
        frame = self._scan(tables.GOLD_PREDICTIONS)
        columns = ["ticker", "instrument", "first_date", "last_date", "in_universe"]
        if frame is None:
            return _empty(columns)
        return (
            frame.filter(pl.col("role") == CHAMPION)
            .group_by("ticker")
            .agg(
                pl.col("instrument").sort_by("date").last(),
                pl.col("date").min().alias("first_date"),
                pl.col("date").max().alias("last_date"),
                pl.col("in_universe").sort_by("date").last(),
            )
            .sort("ticker")
            .collect()
            .select(columns)
        )

    # -- signals and backtest ------------------------------------------------------------------
    def signals(self, day: dt.date | None = None) -> pl.DataFrame:
        """The signals of ``day`` (default: the newest session with signals), best rank first."""
        frame = self._scan(tables.GOLD_SIGNALS)
        if frame is None:
            return _empty(list(tables.GOLD_SIGNALS.schema))
        if day is None:
            day = frame.select(pl.col("date").max()).collect().item()
        return (
            frame.filter(pl.col("month") == f"{day:%Y-%m}", pl.col("date") == day)
            .sort("rank")
            .collect()
        )

    def backtest(self, start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
        """Daily backtest rows (IC, rank IC, books after costs, benchmark), oldest first."""
        frame = self._scan(tables.GOLD_BACKTEST)
        if frame is None:
            return _empty(list(tables.GOLD_BACKTEST.schema))
        if start is not None:
            frame = frame.filter(pl.col("date") >= start)
        if end is not None:
            frame = frame.filter(pl.col("date") <= end)
        return frame.sort("date").collect()

    def thin_sessions(self, start: dt.date | None = None, end: dt.date | None = None):
        """``date, names``: sessions with champion predictions of index members that gold/signals
        did not rank because their cross-section was below its floor (no signals, no backtest
        day). Between a session's predictions commit and its signals commit (the same run) it
        reads as thin too; a pinned reader sees one moment of both tables."""
        columns = {"date": pl.Date, "names": pl.UInt32}
        predictions, signals = self._scan(tables.GOLD_PREDICTIONS), self._scan(tables.GOLD_SIGNALS)
        if predictions is None:
            return pl.DataFrame(schema=columns)
        if start is not None:
            predictions = predictions.filter(pl.col("date") >= start)
        if end is not None:
            predictions = predictions.filter(pl.col("date") <= end)
        names = (
            predictions.filter(pl.col("role") == CHAMPION, pl.col("in_universe").fill_null(False))
            .group_by("date")
            .agg(names=pl.len())
        )
        if signals is not None:
            names = names.join(signals.select("date").unique(), on="date", how="anti")
        return names.sort("date").collect().select(list(columns))

    def session_status(self, day: dt.date | None) -> dict:
        """Whether ``day``'s figures stand on a full cross-section: ``names`` ranked (or
        predicted, when thin) and ``thin``."""
        if day is None:
            return {"date": None, "names": 0, "thin": False}
        thin = self.thin_sessions(day, day)
        if thin.height:
            return {"date": day, "names": int(thin["names"][0]), "thin": True}
        return {"date": day, "names": self.signals(day).height, "thin": False}

    @staticmethod
    def backtest_summary(daily: pl.DataFrame) -> dict:
        """Mean IC and rank IC with their Newey-West t's (at least h lags, `hac_lags`; which
        one in ``t_stat_shown``), and the books' cumulative net returns. Thin sessions have no
        backtest row, so they are never in these figures."""
        summary: dict = {"days": daily.height}
        horizon = int(daily["horizon"].max()) if daily.height else 1
        for column in ("ic", "rank_ic"):
            stats = summarize_ic(daily[column], horizon=horizon) if daily.height else None
            summary[f"{column}_mean"] = _finite(stats.mean) if stats else None
            summary[f"{column}_nw_t_stat"] = _finite(stats.nw_t_stat) if stats else None
        lags = hac_lags(horizon, daily["rank_ic"].drop_nulls().len()) if daily.height else 0
        summary |= {"horizon": horizon, "nw_lags": lags, "t_stat_shown": t_label(lags)}
        for book in ("long_net", "long_short_net", "benchmark"):
            values = daily[book].drop_nulls() if daily.height else pl.Series([], dtype=pl.Float64)
            cumulative = float((values + 1.0).product() - 1.0) if values.len() else None
            summary[f"{book}_cumulative"] = cumulative
        summary["missing_outcomes"] = int(daily["missing_outcomes"].sum()) if daily.height else 0
        return summary

    # -- models --------------------------------------------------------------------------------
    def models(self) -> dict[str, ModelCard | None]:
        """The versions the ``champion`` and ``challenger`` aliases point at now."""
        if self.registry is None:
            return dict.fromkeys(ROLES)
        from mlflow.exceptions import MlflowException

        client, cards = self.registry.client(), {}
        for role in ROLES:
            try:
                found = client.get_model_version_by_alias(self.registry.model_name, role)
            except MlflowException:
                found = None
            cards[role] = found and ModelCard.from_version(role, self.registry.model_name, found)
        return cards

    def realised_quality(self) -> pl.DataFrame:
        """Per stored (role, model_version): the realised daily rank IC of its predictions.

        Index members' predictions against the forward return over the model's horizon, from
        the adjusted bars (as `gold/backtest` does for the champion); only sessions the signals
        ranked (not thin) whose outcome is known count. ``rank_ic_nw_t_stat``: Newey-West t with
        ``nw_lags`` lags (`hac_lags`). Columns: ``role, model_version, days, rank_ic,
        rank_ic_nw_t_stat, nw_lags``.
        """
        columns = ["role", "model_version", "days", "rank_ic", "rank_ic_nw_t_stat", "nw_lags"]
        predictions = self._scan(tables.GOLD_PREDICTIONS)
        bars = self._scan(tables.ADJUSTED_DAILY_BARS)
        if predictions is None or bars is None:
            return _empty(columns)
        signals = self._scan(tables.GOLD_SIGNALS)
        if signals is None:
            return _empty(columns)
        rows = predictions.filter(pl.col("in_universe").fill_null(False)).select(
            "instrument", "date", "role", "model_version", "prediction", "horizon"
        )
        rows = rows.join(signals.select("date").unique(), on="date").collect()
        if rows.is_empty():
            return _empty(columns)
        first = rows["date"].min()
        prices = bars.filter(pl.col("date") >= first, pl.col("month") >= f"{first:%Y-%m}")
        prices = prices.select("instrument", "ticker", "date", "adj_close").collect()
        out = []
        for (role, version, horizon), group in rows.group_by("role", "model_version", "horizon"):
            realised = forward_returns(prices, int(horizon)).select(
                "instrument", "date", "forward_return"
            )
            known = group.join(realised, on=["instrument", "date"]).filter(
                pl.col("forward_return").is_finite()
            )
            labelled = normalise_cross_section(known, "forward_return", "rank_gauss", "label")
            daily = daily_ic(labelled, "prediction", "label")
            stats = summarize_ic(daily["rank_ic"], horizon=int(horizon))
            nw_t = _finite(stats.nw_t_stat)
            out.append((role, version, stats.days, _finite(stats.mean), nw_t, stats.nw_lags))
        schema = {"role": pl.String, "model_version": pl.String, "days": pl.Int64}
        schema |= {"rank_ic": pl.Float64, "rank_ic_nw_t_stat": pl.Float64, "nw_lags": pl.Int64}
        return pl.DataFrame(out, schema=schema, orient="row").sort("role", "model_version")

    # -- internals -----------------------------------------------------------------------------
    def _scan(self, table: tables.Table) -> pl.LazyFrame | None:
        """The table at its pinned (or latest) version; None when it was never written."""
        if self.pins is not None:
            version = self.pins.get(table.path)
            return None if version is None else self.lake.scan(table, version)
        return self.lake.scan(table) if self.lake.exists(table) else None


def _stored(frame: pl.LazyFrame) -> list[str]:
    """PREDICTION_COLUMNS and the RETURN_COLUMNS a stored table has (older ones lack them)."""
    schema = frame.collect_schema()
    return [*PREDICTION_COLUMNS, *(c for c in RETURN_COLUMNS if c in schema)]


def _empty(columns: list[str]) -> pl.DataFrame:
    """An empty frame with the catalog's types where the column is known."""
    known: dict[str, pl.DataType] = {}
    for table in (tables.GOLD_PREDICTIONS, tables.GOLD_SIGNALS, tables.GOLD_BACKTEST):
        known |= dict(table.schema)
    known |= {"first_date": pl.Date, "last_date": pl.Date, "days": pl.Int64}
    known |= {"thin": pl.Boolean}
    known |= {"rank_ic_nw_t_stat": pl.Float64, "nw_lags": pl.Int64}
    return pl.DataFrame(schema={c: known.get(c, pl.String) for c in columns})


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
