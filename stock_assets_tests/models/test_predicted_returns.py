"""gold/predictions' expected return and price intervals, on a real champion and real bars.

80 S&P 500 names, 2009-08..2010-07: features built by the asset, June 2010 refit and promoted
in a real MLflow store (its gate-slice calibration stored on the version), June predicted.
Checked: the stored gate calibration is the first June day's; prices follow from returns and the
traded close; wider intervals for more volatile names on the same day; no calibration row's
return known on or after the day it calibrates (stored, and the asset path raising when the
selection is bypassed); day t's figures identical when every bar and feature after t is removed.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import dagster as dg
import numpy as np
import polars as pl
import polars.testing
import pytest

from stock_assets import tables
from stock_assets.gold.daily_features import daily_features
from stock_assets.gold.predicted_returns import NEW_COLUMNS, add_predicted_returns
from stock_assets.gold.predictions import PREDICTIONS_CHECKS, predictions
from stock_assets.models import return_calibration
from stock_assets.models import return_intervals as ri
from stock_assets.models.challenger import challenger
from stock_assets.models.champion import champion
from stock_assets.partitions import range_tags
from stock_assets.pit import members_on
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.mlflow import MlflowResource
from stock_assets.resources.sources import MembershipSource, today_utc
from stock_assets.silver.index_membership import parse_intervals
from stock_assets_tests.conftest import FIRST, materialize_checked

LAST = dt.date(2010, 7, 30)
JUNE, JUNE_END = dt.date(2010, 6, 1), dt.date(2010, 6, 30)
CUT = dt.date(2010, 6, 15)  # the day whose figures must not move when later bars go
SMALL = {  # 80 names: a smaller model than the defaults assume
    "min_validation_rank_ic": -1.0,
    "min_paired_t": -100.0,
    "min_train_sessions": 60,
    "validation_sessions": 10,
    "min_data_in_leaf": 20,
}


def lake_at(root, bars: pl.DataFrame, universe: pl.DataFrame) -> LakeResource:
    lake = LakeResource(root=str(root))
    first, last = bars["date"].min(), bars["date"].max()
    lake.overwrite_dates(tables.ADJUSTED_DAILY_BARS, bars, first, last)
    lake.overwrite_dates(tables.UNIVERSE, universe, first, last)
    tags = range_tags(first.isoformat(), last.isoformat())
    assert dg.materialize([daily_features], resources={"lake": lake}, tags=tags).success
    return lake


def predict_june(lake: LakeResource, registry: MlflowResource, end: dt.date = JUNE_END):
    return materialize_checked(
        [predictions, PREDICTIONS_CHECKS.asset_check()],
        {"lake": lake, "mlflow_registry": registry},
        tags=range_tags(JUNE.isoformat(), end.isoformat()),
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory, adjusted):
    root = tmp_path_factory.mktemp("predicted-returns")
    names = sorted(adjusted.filter(pl.col("date") == FIRST)["ticker"])[:80]
    bars = adjusted.filter(pl.col("ticker").is_in(names) & (pl.col("date") <= LAST))
    intervals, _ = parse_intervals(MembershipSource().intervals(), today_utc())
    universe = members_on(intervals, sorted(bars["date"].unique()))
    lake = lake_at(root / "lake", bars, universe)
    registry = MlflowResource(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_location=(root / "artifacts").as_uri(),
    )
    resources = {"lake": lake, "mlflow_registry": registry}
    refit = dg.materialize(
        [challenger, champion],
        resources=resources,
        partition_key=JUNE.isoformat(),
        run_config={"ops": {"models__challenger": {"config": SMALL}}},
    )
    assert refit.success
    result, checks = predict_june(lake, registry)
    stored = lake.read(tables.GOLD_PREDICTIONS).sort("date", "instrument")
    return root, bars, universe, lake, registry, result, checks, stored


def test_the_refit_stores_its_gate_calibration_and_june_first_uses_it(stack):
    _, _, _, lake, registry, _, _, stored = stack
    version = registry.client().get_model_version(registry.model_name, "1")
    summary = json.loads(version.tags[return_calibration.TAG])
    assert (summary["recalibration"], summary["scale"]) == ("rolling", "fitted")
    assert dt.date.fromisoformat(summary["labels_known_until"]) < JUNE
    assert summary["calibration_end"] == version.tags["calibration_dates"].split("..")[1]
    rows = return_calibration.load_rows(registry, version.run_id)
    assert rows.height == summary["calibration_rows"] == int(version.tags["calibration_rows"])
    # the first June day knows no June label: its calibration is exactly the gate slice's
    model = ri.calibrate(rows, 1, scale=ri.SHIPPED_SCALE)
    assert model.summary() == {k: v for k, v in summary.items() if k in model.summary()}
    first = stored.filter(pl.col("date") == stored["date"].min())
    again = ri.predict(model, first.rename({"prediction": "score"}).select(ri.PREDICTED_COLUMNS))
    for name in ["expected_return", "return_lower_90", "return_upper_95", "price_lower_80"]:
        np.testing.assert_allclose(first[name], again[name], rtol=1e-12)


def test_prices_follow_from_returns_and_the_traded_close(stack):
    _, bars, _, _, _, result, checks, stored = stack
    assert checks["expected_values_inside_nested_intervals"].passed
    assert set(NEW_COLUMNS) <= set(stored.columns)
    closes = bars.select("instrument", "date", traded="close")
    joined = stored.join(closes, on=["instrument", "date"])
    assert joined.height == stored.height
    np.testing.assert_array_equal(joined["last_close"], joined["traded"])  # not adjusted
    known = stored.filter(pl.col("expected_return").is_not_null())
    assert known.height > 0.95 * stored.height  # 20 returns of history exist for nearly all
    for name in ["expected_return"] + [c for c in NEW_COLUMNS if c.startswith("return_")][:6]:
        price = name.replace("return", "price")
        np.testing.assert_allclose(known[price], known["last_close"] * (1 + known[name]))
    metadata = result.asset_materializations_for_node("gold__predictions")[0].metadata
    assert "fractions over h sessions" in metadata["return_units"].value
    assert metadata["return_calibrations"].value == stored["date"].n_unique()


def test_more_volatile_names_get_wider_intervals_on_the_same_day(stack):
    stored = stack[-1].filter(pl.col("expected_return").is_not_null())
    for (day,), rows in stored.group_by("date"):
        rows = rows.sort("volatility")
        width = (rows["return_upper_90"] - rows["return_lower_90"]).to_numpy()
        assert np.all(np.diff(width) >= 0), day  # the fitted scale grows with sigma
        calm, wild = np.quantile(rows["volatility"], [0.2, 0.8])
        assert (
            width[rows["volatility"] >= wild].mean()
            > 1.5 * width[rows["volatility"] <= calm].mean()
        )


def test_no_calibration_return_is_known_on_or_after_the_day_it_calibrates(stack, monkeypatch):
    _, _, _, lake, registry, _, _, stored = stack
    days = sorted(stored["date"].unique())
    previous = dict(zip(days[1:], days[:-1], strict=True))
    assert (stored["return_calibrated_until"] < stored["date"]).all()
    # from June 3 the newest return used is the day before's (June 1's is known on June 2);
    # the first two days have only the gate slice (the gap session before June is not used)
    later = stored.filter(pl.col("date") > days[1])
    assert (later["return_calibrated_until"] == later["date"].replace_strict(previous)).all()
    gate = json.loads(
        registry.client().get_model_version(registry.model_name, "1").tags[return_calibration.TAG]
    )["labels_known_until"]
    early = stored.filter(pl.col("date") <= days[1])["return_calibrated_until"].unique()
    assert early.to_list() == [dt.date.fromisoformat(gate)]
    # bypass the selection of known rows: the asset path refuses to predict
    monkeypatch.setattr(ri, "latest_known", lambda pool, day, sessions=20: pool)
    frame = stored.filter(pl.col("date") <= days[3]).drop(NEW_COLUMNS)
    features = lake.read_dates(tables.GOLD_DAILY_FEATURES, JUNE, days[3])
    version = lake.version(tables.GOLD_DAILY_FEATURES)
    with pytest.raises(ValueError, match="overlap the predicted days"):
        add_predicted_returns(frame, features, lake, registry, version, JUNE, days[3])


def test_day_t_is_identical_when_every_bar_after_it_is_removed(stack, tmp_path):
    root, bars, universe, _, registry, _, _, stored = stack
    cut_bars = bars.filter(pl.col("date") <= CUT)
    assert cut_bars.height < bars.height
    lake = lake_at(tmp_path / "lake", cut_bars, universe.filter(pl.col("date") <= CUT))
    predict_june(lake, registry, end=CUT)
    again = lake.read(tables.GOLD_PREDICTIONS)
    assert again["date"].max() == CUT
    columns = ["instrument", "date", "prediction", *NEW_COLUMNS]
    day = [stored.filter(pl.col("date") == CUT).select(columns).sort("instrument")]
    pl.testing.assert_frame_equal(
        again.filter(pl.col("date") == CUT).select(columns).sort("instrument"),
        day[0],
        check_exact=False,
        rel_tol=1e-9,
        abs_tol=1e-12,
    )
    shutil.rmtree(tmp_path / "lake")


def test_the_catalog_schema_names_the_units_of_every_new_column():
    key = dg.AssetKey(tables.GOLD_PREDICTIONS.key_path)
    schema = predictions.metadata_by_key[key]["dagster/column_schema"]
    described = {c.name: c.description for c in schema.columns}
    assert list(described) == list(tables.GOLD_PREDICTIONS.schema)
    for name in NEW_COLUMNS:
        assert described[name], name
    assert "fraction over" in described["return_upper_95"]
    assert "currency of last_close" in described["price_lower_80"]
    assert "rank-gaussian" in described["prediction"]
