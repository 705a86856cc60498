"""``gold/predictions``: each session scored by the model of its time, with a conformal interval.

A session is scored by the champion in force on its date (the latest version whose
``champion_from`` is on or before it) and, in shadow, by the latest version serving by then
(``serves_from``: a month's first session, or the session after a drift refit's decision) when
it differs. A backfill of the past therefore never uses a model decided after the day it
predicts. The interval is the split-conformal half-width MAPIE computed on the model's
gate slice, stored on the registered version; its units are the label's (see
`tables.GOLD_PREDICTIONS`).
"""

import dagster as dg
import pandera.polars as pa
import polars as pl

from stock_assets import tables
from stock_assets.checks import CheckInput, CheckSuite, Rule, schema_rule, unique_rule
from stock_assets.gold.predicted_returns import (
    add_predicted_returns,
    intervals_hold_their_expected_values,
)
from stock_assets.models.challenger import CHALLENGER_KEY, MODELS_GROUP
from stock_assets.models.champion import CHAMPION_KEY
from stock_assets.models.registry import in_force
from stock_assets.models.walk_forward import predict
from stock_assets.partitions import run_dates, trading_day_partitions
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.mlflow import MlflowResource
from stock_assets.table_assets import table_asset

ROLES = {"champion": "champion_from", "challenger": "serves_from"}


def interval_contains_prediction(data: CheckInput) -> tuple[bool, dict]:
    outside = data.frame.filter(
        ~pl.col("prediction").is_between(pl.col("lower"), pl.col("upper"))
    ).height
    return outside == 0, {"rows_outside_their_interval": outside}


PREDICTIONS_CHECKS = CheckSuite(
    "predictions_checks",
    tables.GOLD_PREDICTIONS,
    [
        schema_rule(
            "predictions_keys",
            pa.DataFrameSchema(
                {
                    "ticker": pa.Column(pl.String, nullable=False),
                    "date": pa.Column(pl.Date, nullable=False),
                    "role": pa.Column(pl.String, pa.Check.isin(list(ROLES)), nullable=False),
                    "prediction": pa.Column(pl.Float64, nullable=False),
                    "model_version": pa.Column(pl.String, nullable=False),
                },
                name="predictions",
            ),
            "every prediction names its ticker, session, role and model version",
        ),
        unique_rule("predictions_unique", ["instrument", "date", "role"]),
        Rule(
            "predictions_inside_interval",
            "the point prediction lies inside its interval",
            interval_contains_prediction,
        ),
        Rule(
            "expected_values_inside_nested_intervals",
            "expected return and price lie inside their 80/90/95% intervals, 80% inside 90% "
            "inside 95%, each calibrated on returns known before its day",
            intervals_hold_their_expected_values,
        ),
    ],
    trading_day_partitions(),
)


def score(
    features: pl.DataFrame,
    registry: MlflowResource,
    role: str,
    feature_version: int,
    boosters: dict | None = None,
) -> pl.DataFrame:
    """``features`` (gold/daily_features read at ``feature_version``) scored session by
    session by the ``role`` model in force on each date: the latest version whose start
    (`champion_from`, or `serves_from` in shadow) is on or before it, so no day is scored by a
    model decided after it. Each prediction keeps the adjusted-bars version its feature row was
    computed from, not the one current when it is scored. ``boosters`` (version number ->
    booster) keeps the boosters loaded, for the return intervals to reuse."""
    parts, listed = [], registry.versions()
    boosters = {} if boosters is None else boosters
    chosen = {}  # version number -> (version, the dates it scores)
    for day in features["date"].unique().to_list():
        version = in_force(listed, day, ROLES[role])
        if version is None:
            continue
        if role == "challenger":
            champion = in_force(listed, day, ROLES["champion"])
            if champion is not None and champion.version == version.version:
                continue  # no shadow when the challenger is the champion
        chosen.setdefault(str(version.version), (version, []))[1].append(day)
    for version, days in chosen.values():
        booster = boosters.get(str(version.version)) or registry.load_booster(version.version)
        boosters[str(version.version)] = booster
        rows = features.filter(pl.col("date").is_in(days))
        half = float(version.tags["conformal_half_width"])
        scored = predict(booster, rows).join(
            rows.select("instrument", "date", "in_universe", "adjusted_bars_version"),
            on=["instrument", "date"],
        )
        parts.append(
            scored.with_columns(
                role=pl.lit(role),
                lower=pl.col("prediction") - half,
                upper=pl.col("prediction") + half,
                interval_level=pl.lit(float(version.tags["interval_level"])),
                horizon=pl.lit(int(version.tags["horizon"]), pl.Int32),
                model_name=pl.lit(registry.model_name),
                model_version=pl.lit(str(version.version)),
                mlflow_run_id=pl.lit(version.run_id),
                feature_table_version=pl.lit(feature_version, pl.Int64),
            )
        )
    return pl.concat(parts, how="diagonal") if parts else pl.DataFrame()


@table_asset(
    tables.GOLD_PREDICTIONS,
    group=MODELS_GROUP,
    deps=[
        tables.GOLD_DAILY_FEATURES,
        tables.ADJUSTED_DAILY_BARS,  # closes, trailing volatility and realised returns
        *(
            dg.AssetDep(key, partition_mapping=dg.AllPartitionMapping())
            for key in (CHALLENGER_KEY, CHAMPION_KEY)
        ),
    ],
    partitions_def=trading_day_partitions(),
    output_required=False,
)
def predictions(
    context: dg.AssetExecutionContext, lake: LakeResource, mlflow_registry: MlflowResource
):
    """Score the selected sessions with the champion (and the challenger in shadow)."""
    start, end = run_dates(context)
    feature_version = lake.version(tables.GOLD_DAILY_FEATURES)
    features = lake.read_dates(tables.GOLD_DAILY_FEATURES, start, end, feature_version)
    boosters: dict = {}  # loaded once, for scoring and for the return intervals
    scored = [score(features, mlflow_registry, r, feature_version, boosters) for r in ROLES]
    scored = [s for s in scored if s.height]
    frame = pl.concat(scored, how="diagonal") if scored else pl.DataFrame({"role": []})
    if frame.filter(pl.col("role") == "champion").is_empty():
        context.log.warning(
            f"no champion was in force for {start}..{end}: nothing to predict yet "
            "(materialize models/challenger and models/champion for an earlier month)"
        )
        return
    frame = frame.with_columns(pl.col("date").dt.strftime("%Y-%m").alias("month"))
    frame, returns = add_predicted_returns(
        frame, features, lake, mlflow_registry, feature_version, start, end, boosters
    )
    frame = frame.select(list(tables.GOLD_PREDICTIONS.schema))
    checked = PREDICTIONS_CHECKS.gate(CheckInput(frame, lake, start, end))
    version = lake.overwrite_dates(tables.GOLD_PREDICTIONS, frame, start, end)
    champion_rows = frame.filter(pl.col("role") == "champion")
    yield dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "champion_rows": champion_rows.height,
            "challenger_rows": frame.height - champion_rows.height,
            "model_versions": ", ".join(sorted(frame["model_version"].unique())),
            "date_range": f"{start}..{end}",
            "feature_table_version": feature_version,
            "adjusted_bars_versions": sorted(frame["adjusted_bars_version"].unique().to_list()),
            "delta_version": version,
            **returns,
            **checked,
        }
    )
