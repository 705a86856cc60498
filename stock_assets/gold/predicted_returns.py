"""Expected return and price, with intervals per stock and day, for scored sessions.

gold/predictions scores sessions with rank-gauss scores; here each scored row gets what a person
can size a trade with (`models.return_intervals`): the expected h-session return (a fraction),
its 80/90/95% conformal intervals (residuals normalised by the fitted scale of the stock's
trailing volatility), the traded close of the day and the implied prices.

Recalibrated every predicted day t (the scheme the bench measures as ``rolling / fitted``): per
model version, the calibration rows are its refit's gate slice (stored on the version by
`models.return_calibration`) and the rows it scored out of sample from its first serving
session on, with realised h-session returns built here, in memory, from the adjusted closes;
only rows whose return was known before t (``label_known_on`` < t), the latest 20 sessions of
them. So a day's figures read nothing dated after it (bars after t only give labels known on or
after t, which are excluded), and a backfill gets the same figures as the live day did.
Rows without 20 returns of history (or a set-aside bar in that window) keep nulls.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from mlflow.entities.model_registry import ModelVersion

from stock_assets import tables
from stock_assets.checks import CheckInput
from stock_assets.lake import LakeIO
from stock_assets.models import return_calibration
from stock_assets.models import return_intervals as ri
from stock_assets.models.labels import forward_returns
from stock_assets.models.registry import SERVES_FROM, RegistryIO, starts
from stock_assets.models.walk_forward import predict

KEY = ["instrument", "date"]
NEW_COLUMNS = list(tables.PREDICTED_RETURN_COLUMNS)


def lookback_days(horizon: int) -> int:
    """Calendar days before a run's first session whose rows may calibrate it: the latest
    ``CALIBRATION_SESSIONS`` sessions with known labels lie within CALIBRATION_SESSIONS + h
    sessions of it (about 7/5 calendar days a session; doubled for holidays and holes)."""
    return int((ri.CALIBRATION_SESSIONS + horizon) * 7 / 5 * 2) + 7


def version_pool(
    registry: RegistryIO,
    version: ModelVersion,
    features: pl.DataFrame,
    outcomes: pl.DataFrame,
    end: dt.date,
    boosters: dict,
) -> pl.DataFrame | None:
    """Rows ``version`` scored out of sample with their realised return: its stored gate rows,
    then the index members it scores from its serving start to before ``end``. ``outcomes``:
    ``instrument, date, label_known_on, forward_return, volatility``. None without stored rows.
    ``boosters``: version number -> booster, loaded here when scoring did not."""
    gate = return_calibration.load_rows(registry, version.run_id)
    if gate is None:
        return None
    number = str(version.version)
    booster = boosters.get(number) or registry.load_booster(number)
    boosters[number] = booster
    served = features.filter(
        pl.col("in_universe").fill_null(False)
        & (pl.col("date") >= starts(version, SERVES_FROM))
        & (pl.col("date") < end)
    )
    scored = (
        predict(booster, served)
        .select(*KEY, score="prediction")
        .join(outcomes, on=KEY, how="inner")
        .filter(pl.col("date") > gate["date"].max())
    )
    return pl.concat([gate, scored.select(gate.columns)], how="vertical_relaxed")


def add_predicted_returns(
    frame: pl.DataFrame,
    features: pl.DataFrame,
    lake: LakeIO,
    registry: RegistryIO,
    feature_version: int,
    start: dt.date,
    end: dt.date,
    boosters: dict | None = None,
) -> tuple[pl.DataFrame, dict]:
    """``frame`` (scored rows of ``start..end``, from ``features``) with `NEW_COLUMNS`, and
    metadata naming the scheme, its calibrations and the rows left without a volatility.
    ``boosters`` (version number -> booster, as scoring loaded them) saves loading again."""
    boosters = {} if boosters is None else boosters
    horizons = sorted(frame["horizon"].unique().to_list())
    first = start - dt.timedelta(days=lookback_days(max(horizons)))
    earlier = lake.read_dates(
        tables.GOLD_DAILY_FEATURES, first, start - dt.timedelta(days=1), feature_version
    )
    all_features = pl.concat([earlier, features], how="diagonal_relaxed")
    history = dt.timedelta(days=3 * ri.VOLATILITY_SESSIONS)  # volatility's own window
    bars_version = lake.version(tables.ADJUSTED_DAILY_BARS)
    bars = lake.read_dates(tables.ADJUSTED_DAILY_BARS, first - history, end, bars_version)
    closes = bars.select(*KEY, last_close="close")
    parts, calibrations, skipped, refused = [], [], [], []
    client = registry.client()
    for (role, number, horizon), rows in frame.group_by("role", "model_version", "horizon"):
        outcomes = (
            forward_returns(bars, horizon)
            .select(*KEY, "label_known_on", "forward_return")
            .join(ri.trailing_volatility(bars, horizon), on=KEY, how="left")
        )
        version = client.get_model_version(registry.model_name, number)
        pool = version_pool(registry, version, all_features, outcomes, end, boosters)
        if pool is None:
            skipped.append(f"{role} v{number}")
            continue
        predicted = (
            rows.select(*KEY, "role", score="prediction")
            .join(outcomes.select(*KEY, "volatility"), on=KEY, how="left")
            .join(closes, on=KEY, how="left")
        )
        for model, out in ri.rolling_return_intervals(pool, predicted, horizon, refused=refused):
            parts.append(out.with_columns(return_calibrated_until=pl.lit(model.labels_known_until)))
            calibrations.append((model.intercept, model.slope, model.calibration_rows))
    if parts:
        intervals = pl.concat(parts, how="diagonal_relaxed").select(*KEY, "role", *NEW_COLUMNS)
        frame = frame.join(intervals, on=[*KEY, "role"], how="left")
    frame = frame.with_columns(
        pl.lit(None, dtype).alias(name)
        for name, dtype in tables.PREDICTED_RETURN_COLUMNS.items()
        if name not in frame.columns
    )
    missing = frame.filter(pl.col("expected_return").is_null())
    metadata = {
        "return_interval_scheme": f"{ri.SHIPPED_MODE} / {ri.SHIPPED_SCALE}: recalibrated each "
        f"session on the latest {ri.CALIBRATION_SESSIONS} sessions of known returns",
        "return_units": "expected_return and return_lower/upper_*: fractions over h sessions "
        "(0.01 = +1%); expected_price and price_*: currency of last_close (traded close)",
        "return_calibrations": len(calibrations),
        "rows_without_expected_return (no 20-return volatility)": missing.height,
        "adjusted_bars_version_read": bars_version,
    }
    if calibrations:
        slopes = [b for _, b, _ in calibrations]
        metadata["return_mapping_b_range (sigma units per unit of score)"] = (
            f"{min(slopes):.3f}..{max(slopes):.3f}"
        )
        metadata["return_calibration_rows_min"] = min(n for *_, n in calibrations)
    if skipped:
        metadata["versions_without_return_calibration"] = ", ".join(sorted(skipped))
    if refused:  # a 20-session calibration of one or a few names: too few rows for MAPIE
        metadata["sessions_without_return_calibration (too few calibration rows)"] = len(refused)
    return frame, metadata


def intervals_hold_their_expected_values(data: CheckInput) -> tuple[bool, dict]:
    """Each interval contains its expected value, and 80% sits inside 90% inside 95%, in
    return and in price units (rows with an expected return)."""
    rows = data.frame.filter(pl.col("expected_return").is_not_null())
    bad = pl.lit(False)
    for kind, point in (("return", "expected_return"), ("price", "expected_price")):
        for level in tables.INTERVAL_LEVELS:
            lower, upper = pl.col(f"{kind}_lower_{level}"), pl.col(f"{kind}_upper_{level}")
            bad = bad | ~pl.col(point).is_between(lower, upper)
        levels = tables.INTERVAL_LEVELS
        for inner, outer in zip(levels[:-1], levels[1:], strict=True):
            bad = bad | (pl.col(f"{kind}_lower_{outer}") > pl.col(f"{kind}_lower_{inner}"))
            bad = bad | (pl.col(f"{kind}_upper_{outer}") < pl.col(f"{kind}_upper_{inner}"))
    late = rows.filter(pl.col("return_calibrated_until") >= pl.col("date")).height
    broken = rows.filter(bad.fill_null(True)).height
    return broken == 0 and late == 0, {
        "rows_checked": rows.height,
        "rows_outside_or_not_nested": broken,
        "rows_calibrated_on_labels_not_known_before_their_day": late,
    }
