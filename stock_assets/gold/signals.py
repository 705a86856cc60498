"""``gold/signals``: the champion's predictions turned into positions, with the rule that did it.

Each session ranks the champion's predictions over that day's universe (index members with a
prediction) and goes long the top k and short the bottom k, equal weight, +1/k and -1/k of
capital; the rest get side "none" and weight 0. With fewer than 2k names, k shrinks to half of
them. This is the platform's one ranking rule: `gold/backtest` trades these stored rows, and the
evaluation's books call the same
function (`stock_assets.models.ranking.position_weights`).

A session whose cross-section is thin is not ranked at all: fewer names than ``min_names`` or
than ``min_universe_share`` of that day's index members (silver/universe) give no signal rows,
so no positions and no backtest day; the asset's metadata lists them, and readers flag them
(`stock_assets.outputs.Outputs.thin_sessions`). That floor is capped at half (`SET_SHARE_CAP`)
of the data set's tickers (those the lake had predicted by that session): a 20-name set needs 10
names a session, while the S&P 500's floor (about 250 names: its sets hold more tickers than the
index has members) is what it was.
"""

import math
import os

import dagster as dg
import polars as pl
from pydantic import Field

from stock_assets import tables
from stock_assets.models.challenger import MODELS_GROUP
from stock_assets.models.ranking import position_weights
from stock_assets.partitions import run_dates, trading_day_partitions
from stock_assets.resources.lake import LakeResource
from stock_assets.table_assets import table_asset, table_key


def _from_env(name: str, default: str, kind: type):
    return Field(default_factory=lambda: kind(os.environ.get(name, default)))


class SignalConfig(dg.Config):
    """Run config, the floors defaulting to ``STOCK_SIGNALS_MIN_NAMES`` (50) and
    ``STOCK_SIGNALS_MIN_UNIVERSE_SHARE`` (0.5) so runs a sensor launches follow a deployment."""

    top_k: int = 20
    # a session ranks at least this many names, and at least this share of the day's members
    min_names: int = _from_env("STOCK_SIGNALS_MIN_NAMES", "50", int)
    min_universe_share: float = _from_env("STOCK_SIGNALS_MIN_UNIVERSE_SHARE", "0.5", float)


# the most any floor asks of a data set: half of the tickers it has predicted by that session,
# whatever the configured shares (0 included: a share of 0 turns the members rule off, not the cap)
SET_SHARE_CAP = 0.5


def set_cap(share: float, set_size: int) -> int:
    """``share`` of a data set's ``set_size`` tickers, rounded up: the most a floor may ask."""
    return math.ceil(share * set_size)


def scaled_floor(absolute: int, share: float, set_size: int) -> int:
    """``absolute`` capped at `set_cap`: a floor set for hundreds of names must not make every
    session of a 20-name set thin."""
    return min(absolute, set_cap(share, set_size))


def champion_members(predictions: pl.DataFrame) -> pl.DataFrame:
    """The rows the signals rank: the champion's predictions of that day's index members."""
    return predictions.filter(
        (pl.col("role") == "champion")
        & pl.col("in_universe").fill_null(False)
        & pl.col("prediction").is_not_null()
    )


def tickers_seen(first_predicted: pl.Series, dates: pl.Series) -> pl.DataFrame:
    """``date, set_size``: per session in ``dates``, how many of the data set's tickers had a
    prediction on or before it (``first_predicted``: each ticker's first predicted session).
    Known at that session's close, so a backfill and the live day size the floor alike."""
    days = dates.unique().sort()
    seen = first_predicted.sort().search_sorted(days, side="right")
    return pl.DataFrame({"date": days, "set_size": seen.cast(pl.Int64)})


def session_cross_sections(
    predictions: pl.DataFrame,
    universe: pl.DataFrame,
    min_names: int,
    min_universe_share: float,
    set_size: int | pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per predicted session: ``names`` (members with a champion prediction), ``members`` (the
    day's index members in silver/universe), ``required`` (max of ``min_names`` and
    ``min_universe_share`` of the members, rounded up; with ``set_size``, the data set's tickers
    (a count, or `tickers_seen` per session), at most `SET_SHARE_CAP` of them) and
    ``thin`` (names < required)."""
    names = champion_members(predictions).group_by("date").agg(names=pl.len())
    members = universe.group_by("date").agg(members=pl.col("ticker").n_unique())
    share = (pl.col("members").cast(pl.Float64) * min_universe_share).ceil().cast(pl.Int64)
    frame = (
        names.join(members, on="date", how="left")
        .with_columns(pl.col("members").fill_null(0).cast(pl.UInt32))
        .with_columns(required=pl.max_horizontal(pl.lit(min_names, pl.Int64), share))
    )
    if set_size is not None:
        if isinstance(set_size, pl.DataFrame):
            frame = frame.join(set_size, on="date", how="left")
        else:
            frame = frame.with_columns(set_size=pl.lit(set_size, pl.Int64))
        cap = (pl.col("set_size").cast(pl.Float64) * SET_SHARE_CAP).ceil().cast(pl.Int64)
        frame = frame.with_columns(required=pl.min_horizontal("required", cap)).drop("set_size")
    return frame.with_columns(thin=pl.col("names").cast(pl.Int64) < pl.col("required")).sort("date")


def rank_signals(
    predictions: pl.DataFrame, top_k: int, sessions: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Champion rows of index members -> one signal row each (rank 1 = highest prediction),
    for the sessions of ``sessions`` (`session_cross_sections`) that are not thin; every
    session when ``sessions`` is None."""
    members = champion_members(predictions)
    if sessions is not None:
        members = members.join(sessions.filter(~pl.col("thin")).select("date"), on="date")
    rule = pl.format(
        "long top {} / short bottom {} of {} index members by champion prediction, equal weight",
        pl.col("k"),
        pl.col("k"),
        pl.col("names"),
    )
    return (
        position_weights(members, top_k)
        .with_columns(rule=rule)
        .select(list(tables.GOLD_SIGNALS.schema))
    )


@table_asset(
    tables.GOLD_SIGNALS,
    group=MODELS_GROUP,
    deps=[  # membership is monthly: the session's month is read, every month may matter
        tables.GOLD_PREDICTIONS,
        dg.AssetDep(table_key(tables.UNIVERSE), partition_mapping=dg.AllPartitionMapping()),
    ],
    partitions_def=trading_day_partitions(),
)
def signals(
    context: dg.AssetExecutionContext, config: SignalConfig, lake: LakeResource
) -> dg.MaterializeResult:
    """Rank the selected sessions' champion predictions into long/short positions, skipping
    sessions whose cross-section is too thin to rank."""
    start, end = run_dates(context)
    predictions = lake.read_dates(tables.GOLD_PREDICTIONS, start, end)
    universe = lake.read_dates(tables.UNIVERSE, start, end)
    first_predicted = (  # nothing after the run's last session sizes its floor
        lake.scan(tables.GOLD_PREDICTIONS)
        .filter(pl.col("date") <= end)
        .group_by("ticker")
        .agg(pl.col("date").min())
        .collect()["date"]
    )
    set_sizes = tickers_seen(first_predicted, predictions["date"])
    sessions = session_cross_sections(
        predictions, universe, config.min_names, config.min_universe_share, set_sizes
    )
    frame = rank_signals(predictions, config.top_k, sessions)
    version = lake.overwrite_dates(tables.GOLD_SIGNALS, frame, start, end)
    thin = sessions.filter(pl.col("thin"))
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "sessions": frame["date"].n_unique(),
            "long": int((frame["side"] == "long").sum()),
            "short": int((frame["side"] == "short").sum()),
            "rule": frame["rule"][0] if frame.height else "no champion predictions",
            "min_cross_section": (
                f"at least {config.min_names} names and {config.min_universe_share:.0%} of the "
                f"day's index members, at most {SET_SHARE_CAP:.0%} of the data "
                f"set's tickers predicted by that session ({set_sizes['set_size'].min()}.."
                f"{set_sizes['set_size'].max()})"
            ),
            "thin_sessions": thin.height,
            "thin_session_names": dg.MetadataValue.json(
                {str(d): n for d, n in thin.select("date", "names").iter_rows()}
            ),
            "delta_version": version,
        }
    )
