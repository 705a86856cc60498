"""Refit, gate, promote, predict, signal and backtest on the real S&P 500 year, with MLflow.

One lake with the year's features and their universe, one SQLite MLflow store: June and July
2010 are refit and promoted in turn, and the predictions of both months are scored by the model
of their own month (a backfill never uses a later model).
"""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import empyrical
import numpy as np
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.gold.backtest import backtest
from stock_assets.gold.daily_features import daily_features
from stock_assets.gold.predictions import PREDICTIONS_CHECKS, predictions
from stock_assets.gold.signals import signals
from stock_assets.models.challenger import BEATS_CHAMPION, RANK_IC_FLOOR, challenger
from stock_assets.models.champion import champion
from stock_assets.models.drift import DRIFT_KEY, SHIFTED, drift, psi
from stock_assets.models.first_champion import months_to_refit
from stock_assets.models.gate import MIN_T
from stock_assets.models.labels import sessions_after
from stock_assets.models.shadow_comparison import (
    compare,
    live_verdict,
    shadow_comparison,
    shadow_results,
)
from stock_assets.partitions import range_tags
from stock_assets.pit import adjust_bars, members_on
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.mlflow import CHALLENGER, CHAMPION, MlflowResource
from stock_assets.resources.sources import MembershipSource, today_utc
from stock_assets.sensors import drift_refit_sensor
from stock_assets.silver.index_membership import parse_intervals
from stock_assets_tests.conftest import FIRST, LAST

JUNE, JULY = "2010-06-01", "2010-07-01"
# mechanics here; the gate's rule is tested on its own (models/test_gate.py)
PERMISSIVE = {"min_validation_rank_ic": -1.0, "min_paired_t": -100.0}


def refit(month: str, resources: dict, training: dict | None = None):
    config = {"ops": {"models__challenger": {"config": training or PERMISSIVE}}}
    return dg.materialize(
        [challenger, champion],
        resources=resources,
        partition_key=month,
        run_config=config,
        raise_on_error=False,
    )


def lake_with_models(root, adjusted: pl.DataFrame, intervals: pl.DataFrame):
    """A lake with the year's adjusted bars, universe and features, and an empty MLflow store."""
    lake = LakeResource(root=str(root / "lake"))
    lake.overwrite_dates(tables.ADJUSTED_DAILY_BARS, adjusted, FIRST, LAST)
    days = sorted(adjusted["date"].unique())
    lake.overwrite_dates(tables.UNIVERSE, members_on(intervals, days), FIRST, LAST)
    tags = range_tags(str(FIRST), str(LAST))
    assert dg.materialize([daily_features], resources={"lake": lake}, tags=tags).success
    registry = MlflowResource(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_location=(root / "artifacts").as_uri(),
    )
    return lake, registry, {"lake": lake, "mlflow_registry": registry}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, adjusted):
    root = tmp_path_factory.mktemp("models")
    intervals, _ = parse_intervals(MembershipSource().intervals(), today_utc())
    lake, registry, resources = lake_with_models(root, adjusted, intervals)
    june = refit(JUNE, resources)
    assert june.success
    scored = dg.materialize(
        [predictions, signals, PREDICTIONS_CHECKS.asset_check()],
        resources=resources,
        tags=range_tags("2010-05-03", "2010-07-30"),
    )
    assert scored.success
    return lake, registry, resources, june


def test_a_refit_is_logged_registered_and_promoted_with_its_lineage(stack):
    lake, registry, _, june = stack
    checks = {c.check_name: c for c in june.get_asset_check_evaluations()}
    assert checks[RANK_IC_FLOOR].passed and checks[BEATS_CHAMPION].passed
    assert checks[BEATS_CHAMPION].metadata["champion_version"].value == "none yet"
    version = registry.version_for(CHAMPION)
    assert version == registry.version_for(CHALLENGER) == "1"
    model = registry.client().get_model_version(registry.model_name, version)
    assert model.tags["refit_month"] == "2010-06" and model.tags["champion_from"] == "2010-06-01"
    run = registry.client().get_run(model.run_id)
    assert run.data.tags["dagster_run_id"] == june.run_id
    assert run.data.params["delta_version.gold/daily_features"] == str(
        lake.version(tables.GOLD_DAILY_FEATURES)
    )
    # the fold ends before June with a gap of the horizon: no label known after May
    assert run.data.params["test_start"] == "2010-06-01"
    assert run.data.params["validation_end"] < "2010-05-28"
    assert "validation_rank_ic_mean" in run.data.metrics and "gate_rank_ic_mean" in run.data.metrics
    # the intervals' calibration rows are the gate slice, after the early-stopping one
    stopping_end = dt.date.fromisoformat(model.tags["early_stopping_dates"].split("..")[1])
    calibration = [dt.date.fromisoformat(d) for d in model.tags["calibration_dates"].split("..")]
    assert (
        stopping_end
        < calibration[0]
        <= calibration[1]
        == dt.date.fromisoformat(model.tags["data_cut"])
        < dt.date(2010, 5, 28)
    )
    assert run.data.params["gate_start"] == str(calibration[0])
    assert int(model.tags["calibration_rows"]) > 5000
    features = registry.client().download_artifacts(model.run_id, "features.json")
    assert "rsi_14" in json.loads(Path(features).read_text())["features"]


def test_predictions_carry_their_model_interval_and_table_versions(stack):
    lake, registry, _, _ = stack
    stored = lake.read(tables.GOLD_PREDICTIONS)
    assert stored["date"].min() == dt.date(2010, 6, 1)  # no champion was in force in May
    assert stored["date"].max() == dt.date(2010, 7, 30)
    assert stored["role"].unique().to_list() == ["champion"]  # challenger = champion: no shadow
    assert stored["model_version"].unique().to_list() == ["1"]
    assert (stored["lower"] < stored["prediction"]).all()
    assert (stored["prediction"] < stored["upper"]).all()
    half = float(registry.client().get_model_version(registry.model_name, "1").tags[
        "conformal_half_width"
    ])  # fmt: skip
    assert np.allclose(stored["upper"] - stored["prediction"], half)
    assert stored["feature_table_version"].unique().to_list() == [
        lake.version(tables.GOLD_DAILY_FEATURES)
    ]
    # the stored score is the registered booster's on the same feature row
    row = stored.filter(pl.col("ticker") == "AAPL", pl.col("date") == dt.date(2010, 7, 1))
    features = lake.read_dates(tables.GOLD_DAILY_FEATURES, dt.date(2010, 7, 1), dt.date(2010, 7, 1))
    booster = registry.load_booster("1")
    aapl = features.filter(pl.col("ticker") == "AAPL").select(booster.feature_name())
    expected = booster.predict(aapl.cast(pl.Float64).to_numpy())[0]
    assert row["prediction"].item() == pytest.approx(expected, rel=1e-12)


def test_signals_go_long_and_short_k_members_a_day(stack):
    lake, _, _, _ = stack
    frame = lake.read(tables.GOLD_SIGNALS)
    per_day = frame.group_by("date").agg(
        (pl.col("side") == "long").sum().alias("long"),
        (pl.col("side") == "short").sum().alias("short"),
        pl.col("weight").sum().alias("net"),
        pl.col("weight").abs().sum().alias("gross"),
    )
    assert (per_day["long"] == 20).all() and (per_day["short"] == 20).all()
    assert per_day["net"].abs().max() < 1e-12 and (per_day["gross"] - 2).abs().max() < 1e-12
    top = frame.filter(pl.col("rank") == 1)
    best = (
        lake.read(tables.GOLD_PREDICTIONS)
        .filter(pl.col("in_universe"))
        .group_by("date")
        .agg(pl.col("prediction").max())
    )
    assert top.join(best, on="date")["prediction"].equals(
        top.join(best, on="date")["prediction_right"]
    )
    assert "long top 20 / short bottom 20" in frame["rule"][0]


def test_a_failed_gate_keeps_the_champion_and_months_keep_their_own_model(stack):
    lake, registry, resources, _ = stack
    blocked = refit(JULY, resources, {"min_validation_rank_ic": 1.0})
    checks = {c.check_name: c for c in blocked.get_asset_check_evaluations()}
    assert checks[RANK_IC_FLOOR].passed is False
    assert not blocked.asset_materializations_for_node("models__champion")
    assert registry.version_for(CHAMPION) == "1" and registry.version_for(CHALLENGER) == "2"
    # promoting a failed version by hand is refused too
    by_hand = dg.materialize(
        [champion], resources=resources, partition_key=JULY, raise_on_error=False
    )
    assert not by_hand.success

    # the failed version scores July in shadow next to the champion
    july = range_tags("2010-07-01", "2010-07-30")
    assert dg.materialize([predictions], resources=resources, tags=july).success
    shadow = lake.read(tables.GOLD_PREDICTIONS).filter(pl.col("role") == "challenger")
    assert shadow["model_version"].unique().to_list() == ["2"]
    champion_july = lake.read_dates(tables.GOLD_PREDICTIONS, dt.date(2010, 7, 1), LAST).filter(
        pl.col("role") == "champion"
    )
    assert shadow.height == champion_july.height  # one shadow score per champion score
    compared = dg.materialize([shadow_comparison], resources=resources)
    (pair,) = (
        compared.asset_materializations_for_node("models__shadow_comparison")[0]
        .metadata["comparison"]
        .value
    )
    assert (pair["challenger_version"], pair["champion_version"]) == ("2", "1")
    assert pair["shared_days"] == 21  # every July session: its next session is in the lake
    allowed, why = live_verdict(shadow_results(lake), "2")
    assert allowed is (pair["difference_nw_t_stat"] >= MIN_T), why  # evidence, not "not lower"

    # a decision inside July reads only outcomes known before it
    decision = dt.date(2010, 7, 20)
    as_of = shadow_results(lake, decision)
    july_days = shadow.filter(pl.col("date") < decision)["date"].unique().to_list()
    known = [d for d, on in sessions_after(july_days, 1).items() if on < decision]
    assert as_of["shared_days"].to_list() == [len(known)] == [11]  # 07-01..07-16
    assert as_of["last_day"].to_list() == ["2010-07-16"]
    # with every prediction and bar at or after the decision removed, or perturbed: the same
    stored = lake.read(tables.GOLD_PREDICTIONS)
    bars = lake.read(tables.ADJUSTED_DAILY_BARS)
    before = pl.col("date") < decision
    assert compare(stored.filter(before), bars.filter(before), decision).equals(as_of)
    noisy = bars.with_columns(
        adj_close=pl.when(before).then(pl.col("adj_close")).otherwise(pl.col("adj_close") * 1.5)
    )
    assert compare(stored, noisy, decision).equals(as_of)
    assert not compare(stored, noisy, LAST).equals(compare(stored, bars, LAST))  # can fail

    # the default rule judged July out of sample: on the gate days June's champion never saw
    verdict = {k: v.value for k, v in checks[BEATS_CHAMPION].metadata.items()}
    june_cut = dt.date.fromisoformat(
        registry.client().get_model_version(registry.model_name, "1").tags["data_cut"]
    )
    assert verdict["first_day"] >= str(sessions_after([june_cut], 1)[june_cut])
    assert verdict["days"] >= 15 and verdict["lags"] >= 1
    assert checks[BEATS_CHAMPION].passed is (verdict["t_stat"] >= MIN_T), verdict

    assert refit(JULY, resources).success  # version 3 passes and becomes champion from July
    assert registry.version_for(CHAMPION) == "3"
    tags = range_tags("2010-06-01", "2010-07-30")
    assert dg.materialize([predictions], resources=resources, tags=tags).success
    stored = lake.read(tables.GOLD_PREDICTIONS).filter(pl.col("role") == "champion")
    by_month = stored.group_by(pl.col("date").dt.month()).agg(pl.col("model_version").unique())
    assert dict(by_month.rows()) == {6: ["1"], 7: ["3"]}
    # promoting an earlier month again (a backfill) leaves the live alias on the newest month
    assert dg.materialize([champion], resources=resources, partition_key=JUNE).success
    assert registry.version_for(CHAMPION) == "3"


def test_backtest_scores_known_outcomes_and_its_metrics_are_empyricals(stack):
    lake, _, resources, _ = stack
    result = dg.materialize([backtest], resources=resources)
    assert result.success
    metadata = result.asset_materializations_for_node("gold__backtest")[0].metadata
    daily = lake.read(tables.GOLD_BACKTEST).sort("date")
    assert daily["date"].max() < LAST  # the last session's next return is not known
    assert metadata["sessions"].value == daily.height
    assert metadata["sanity_label_as_prediction_rank_ic"].value > 0.9
    assert abs(metadata["sanity_shuffled_label_rank_ic"].value) < 0.1
    assert 0.5 < metadata["interval_coverage"].value <= 1.0
    returns = daily["long_short_net"].to_numpy()
    assert metadata["long_short_sharpe"].value == pytest.approx(
        empyrical.sharpe_ratio(returns), abs=1e-6
    )
    assert metadata["long_short_max_drawdown"].value == pytest.approx(
        empyrical.max_drawdown(returns), abs=1e-6
    )


def test_a_refit_with_the_same_cut_and_inputs_registers_no_new_version(stack):
    """What a drift request for a month already refit used to do: train the same rows again
    and register the same model as a new version. Now it reports the version that has them."""
    _, registry, resources, june = stack
    before = {str(v.version) for v in registry.versions()}
    again = refit(JUNE, resources)
    assert again.success
    (materialization,) = again.asset_materializations_for_node("models__challenger")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["refit_skipped"] is True and metadata["model_version"] == "1"
    assert "unchanged" in metadata["reason"]
    assert {str(v.version) for v in registry.versions()} == before
    checks = {c.check_name: c for c in again.get_asset_check_evaluations()}
    assert checks[RANK_IC_FLOOR].passed and checks[BEATS_CHAMPION].passed  # version 1's verdict
    assert checks[RANK_IC_FLOOR].metadata["reused_verdict_of_version"].value == "1"
    assert registry.version_for(CHAMPION) in before  # the champion did not move to a twin


def test_make_run_refits_the_latest_months_with_a_broad_universe(stack):
    lake, _, _, _ = stack
    months = months_to_refit(lake, 3)
    assert months == [dt.date(2010, 6, 1), dt.date(2010, 7, 1), dt.date(2010, 8, 1)]


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal(20_000)
    assert psi(reference, rng.standard_normal(5_000)) < 0.02
    assert psi(reference, rng.standard_normal(5_000) + 1.0) > SHIFTED


def test_drift_report_compares_recent_sessions_with_the_champions_training(stack):
    _, _, resources, _ = stack
    result = dg.materialize([drift], resources=resources)
    assert result.success
    metadata = result.asset_materializations_for_node("models__drift")[0].metadata
    assert metadata["features_compared"].value > 150
    assert metadata["recent_window"].value.endswith(str(LAST))
    assert metadata["training_window"].value.startswith(str(FIRST))
    (check,) = result.get_asset_check_evaluations()
    assert check.passed is (not metadata["refit_requested"].value)


def test_a_drift_report_asking_for_a_refit_requests_one_for_its_month():
    instance = dg.DagsterInstance.ephemeral()
    for asks in (False, True):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=DRIFT_KEY,
                metadata={"refit_requested": asks, "recent_window": "2010-06-01..2010-06-29"},
            )
        )
        (result,) = drift_refit_sensor(dg.build_sensor_context(instance=instance))
        if asks:
            assert isinstance(result, dg.RunRequest) and result.partition_key == "2010-06-01"
        else:
            assert isinstance(result, dg.SkipReason)


def test_no_prediction_up_to_t_changes_when_every_input_after_t_changes(
    stack, sp500, events, tmp_path
):
    """The end-to-end leakage probe: prices, volumes, a corporate action and index membership
    after t perturbed, then features, the June refit and June's predictions rebuilt through the
    same assets in a second lake and MLflow store; every prediction dated <= t is identical."""
    lake, _, _, _ = stack
    t = dt.date(2010, 6, 15)
    rng = np.random.default_rng(11)
    after = pl.col("date") > t
    noise = pl.Series(rng.uniform(0.7, 1.3, sp500.height))
    bars = sp500.with_columns(
        *(pl.when(after).then(pl.col(c) * noise).otherwise(pl.col(c)) for c in ("open", "close")),
        high=pl.when(after).then(pl.max_horizontal("high", "open", "close") * noise.max())
        .otherwise(pl.col("high")),
        low=pl.when(after).then(pl.min_horizontal("low", "open", "close") * noise.min())
        .otherwise(pl.col("low")),
        volume=pl.when(after).then(pl.col("volume") * 3).otherwise(pl.col("volume")),
    )  # fmt: skip
    split_after_t = pl.DataFrame(
        [{"instrument": "AAPL", "ticker": "AAPL", "action": "split",
          "effective_date": dt.date(2010, 7, 1), "ratio": 4.0, "new_ticker": None,
          "detected_ratio": None, "volume_ratio": None, "source": "test", "status": "confirmed",
          "known_from": dt.date(2010, 7, 1), "note": "made up, after t"}],
        schema=events.schema,
    )  # fmt: skip
    adjusted = adjust_bars(bars, pl.concat([events, split_after_t]))
    intervals, _ = parse_intervals(MembershipSource().intervals(), today_utc())
    intervals = intervals.with_columns(  # memberships starting after t start the day after t
        member_from=pl.when(pl.col("member_from") > t)
        .then(pl.lit(t + dt.timedelta(days=1)))
        .otherwise(pl.col("member_from"))
    )
    other, _, resources = lake_with_models(tmp_path, adjusted, intervals)
    assert refit(JUNE, resources).success
    june = range_tags(JUNE, "2010-06-30")
    assert dg.materialize([predictions], resources=resources, tags=june).success

    def upto_t(of: LakeResource) -> pl.DataFrame:
        stored = of.read_dates(tables.GOLD_PREDICTIONS, dt.date(2010, 6, 1), t)
        return (
            stored.filter(pl.col("role") == "champion")
            .select("instrument", "date", "prediction", "lower", "upper")
            .sort("instrument", "date")
        )

    original = upto_t(lake)
    assert original.height > 5000
    assert upto_t(other).equals(original)
    # and the perturbation reached the model's inputs after t
    later = other.read_dates(tables.GOLD_PREDICTIONS, dt.date(2010, 6, 16), dt.date(2010, 6, 30))
    before = lake.read_dates(tables.GOLD_PREDICTIONS, dt.date(2010, 6, 16), dt.date(2010, 6, 30))
    champion_only = pl.col("role") == "champion"
    assert (
        not later.filter(champion_only)
        .sort("instrument", "date")["prediction"]
        .equals(before.filter(champion_only).sort("instrument", "date")["prediction"])
    )
