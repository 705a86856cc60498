"""A drift refit through the real assets, sensor and MLflow store on the S&P 500 year.

June 2010 is refit monthly and promoted; a drift report decided at the close of 2010-07-15
becomes a refit of July's partition that trains on the later cut, serves from 2010-07-16 and,
promoted by the same gate, is champion from then: earlier sessions keep June's model. The same
refit again registers nothing, and no row dated after the decision can change it.
"""

import datetime as dt
import shutil

import dagster as dg
import numpy as np
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.calendar import sessions_before
from stock_assets.gold.predictions import predictions, score
from stock_assets.models.challenger import BEATS_CHAMPION, RANK_IC_FLOOR, challenger
from stock_assets.models.champion import champion
from stock_assets.models.drift import DRIFT_KEY, drift
from stock_assets.models.labels import sessions_after
from stock_assets.partitions import range_tags
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.mlflow import CHAMPION
from stock_assets.resources.sources import MembershipSource, today_utc
from stock_assets.sensors import drift_refit_sensor
from stock_assets.silver.index_membership import parse_intervals
from stock_assets_tests.conftest import LAST
from stock_assets_tests.test_models_pipeline import PERMISSIVE, lake_with_models, refit

DECISION = dt.date(2010, 7, 15)
SERVES_FROM = dt.date(2010, 7, 16)
JULY = "2010-07-01"
JULY_DAYS = dt.date(2010, 7, 1), dt.date(2010, 7, 30)


def drift_request(decision: dt.date, **metadata) -> dg.RunRequest | dg.SkipReason:
    """What the sensor makes of a drift report asking for a refit decided at ``decision``."""
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=DRIFT_KEY,
            metadata={"refit_requested": True, "decision_session": str(decision), **metadata},
        )
    )
    (result,) = drift_refit_sensor(dg.build_sensor_context(instance=instance))
    return result


def run_request(request: dg.RunRequest, resources: dict, training: dict | None = None):
    """Execute a sensor's refit request as the daemon would (its partition, config and tags)."""
    config = request.run_config
    ops = {**config["ops"]}
    challenger_config = {**ops["models__challenger"]["config"], **(training or PERMISSIVE)}
    ops["models__challenger"] = {"config": challenger_config}
    return dg.materialize(
        [challenger, champion],
        resources=resources,
        partition_key=request.partition_key,
        run_config={"ops": ops},
        tags=request.tags,
        raise_on_error=False,
    )


def metadata_of(result) -> dict:
    (materialization,) = result.asset_materializations_for_node("models__challenger")
    return {k: v.value for k, v in materialization.metadata.items()}


@pytest.fixture(scope="module")
def decided(tmp_path_factory, adjusted):
    root = tmp_path_factory.mktemp("drift_refit")
    intervals, _ = parse_intervals(MembershipSource().intervals(), today_utc())
    lake, registry, resources = lake_with_models(root, adjusted, intervals)
    assert refit("2010-06-01", resources).success  # version 1, champion from June
    request = drift_request(DECISION)
    result = run_request(request, resources)
    assert result.success
    return root, lake, registry, resources, request, result


def test_the_sensor_requests_a_refit_decided_at_the_reports_session():
    request = drift_request(DECISION)
    assert request.partition_key == JULY
    ops = request.run_config["ops"]
    assert ops["models__challenger"]["config"] == {"decision_session": "2010-07-15"}
    # shadow evidence for the promotion reads only outcomes known at the decision's close
    assert ops["models__champion"]["config"] == {"decision_date": "2010-07-16"}
    assert request.tags["stock/decision_session"] == "2010-07-15"
    # decided at June's last close, it serves July from its first session: July's partition
    assert drift_request(dt.date(2010, 6, 30)).partition_key == JULY
    assert isinstance(drift_request(dt.date(2010, 7, 5)), dg.SkipReason)  # a holiday
    assert isinstance(drift_request("not a date"), dg.SkipReason)


def test_the_drift_report_records_its_decision_session(decided):
    _, _, _, resources, _, _ = decided
    result = dg.materialize([drift], resources=resources)
    (materialization,) = result.asset_materializations_for_node("models__drift")
    assert materialization.metadata["decision_session"].value == str(LAST)


def test_a_mid_month_drift_refit_trains_on_the_later_cut_and_serves_from_the_next_session(
    decided,
):
    _, _, registry, _, _, result = decided
    metadata = metadata_of(result)
    assert metadata["refit_skipped"] is False and metadata["model_version"] == "2"
    model = registry.client().get_model_version(registry.model_name, "2")
    tags = model.tags
    assert tags["refit_month"] == "2010-07" and tags["decision_session"] == "2010-07-15"
    assert tags["data_cut"] == str(sessions_before(DECISION, 1)) == "2010-07-14"
    assert tags["serves_from"] == tags["champion_from"] == "2010-07-16"
    assert registry.version_for(CHAMPION) == "2"
    # the monthly layout: train | gap | early stopping | gap | gate, the gate ending at the cut
    stop = [dt.date.fromisoformat(d) for d in tags["early_stopping_dates"].split("..")]
    gate_days = [dt.date.fromisoformat(d) for d in tags["calibration_dates"].split("..")]
    assert sessions_after([stop[1]], 2)[stop[1]] == gate_days[0]  # a gap of one session
    assert gate_days[1] == dt.date(2010, 7, 14)
    run = registry.client().get_run(model.run_id)
    assert run.data.params["decision_session"] == "2010-07-15"
    assert run.data.params["test_start"] == "2010-07-16"
    # promoted by the same gate: both models on the gate days June's champion never saw
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    verdict = {k: v.value for k, v in checks[BEATS_CHAMPION].metadata.items()}
    june = registry.client().get_model_version(registry.model_name, "1").tags
    june_cut = dt.date.fromisoformat(june["data_cut"])
    assert verdict["champion_version"] == "1" and verdict["lags"] == 2
    assert verdict["first_day"] >= str(max(sessions_after([june_cut], 1)[june_cut], gate_days[0]))
    assert verdict["last_day"] == "2010-07-14" and verdict["days"] == 20
    assert checks[RANK_IC_FLOOR].passed and checks[BEATS_CHAMPION].passed


def test_the_same_drift_refit_again_registers_nothing(decided):
    _, _, registry, resources, request, _ = decided
    before = sorted(str(v.version) for v in registry.versions())
    again = run_request(request, resources)
    assert again.success
    metadata = metadata_of(again)
    assert metadata["refit_skipped"] is True and metadata["model_version"] == "2"
    assert metadata["decision_session"] == "2010-07-15"
    assert sorted(str(v.version) for v in registry.versions()) == before
    assert registry.version_for(CHAMPION) == "2"


def test_no_row_after_the_decision_changes_the_refit(decided, tmp_path):
    """The lake copied, every feature row and bar after the decision dropped or perturbed:
    the same drift refit has the same cut and inputs as version 2, so it registers nothing."""
    root, _, registry, resources, request, _ = decided
    shutil.copytree(root / "lake", tmp_path / "lake")
    other = LakeResource(root=str(tmp_path / "lake"))
    after = DECISION + dt.timedelta(days=1)
    rng = np.random.default_rng(5)
    for table, columns in [
        (tables.GOLD_DAILY_FEATURES, ["rsi_14", "roc_10", "KMID"]),
        (tables.ADJUSTED_DAILY_BARS, ["adj_close"]),
    ]:
        later = other.read_dates(table, after, LAST)
        kept = later.with_row_index("_n").filter(pl.col("_n") % 3 != 0).drop("_n")
        noise = pl.Series(rng.uniform(0.5, 1.5, kept.height))
        kept = kept.with_columns(pl.col(c) * noise for c in columns)
        other.overwrite_dates(table, kept, after, LAST)
        assert other.read_dates(table, after, LAST).height == kept.height < later.height
    versions = sorted(str(v.version) for v in registry.versions())
    again = run_request(request, {**resources, "lake": other})
    metadata = metadata_of(again)
    assert metadata["refit_skipped"] is True and metadata["model_version"] == "2"
    assert sorted(str(v.version) for v in registry.versions()) == versions


def test_each_session_is_scored_by_the_model_in_force_on_its_date(decided):
    """June's champion up to the decision, the drift refit from the next session; a later drift
    refit that fails its gate only shadows, from the session after its own decision."""
    _, lake, registry, resources, _, _ = decided
    later = dt.date(2010, 7, 22)
    failed = run_request(drift_request(later), resources, {"min_validation_rank_ic": 1.0})
    assert not failed.asset_materializations_for_node("models__champion")
    (third,) = [v for v in registry.versions() if v.tags.get("decision_session") == str(later)]
    assert third.tags["gate"] == "failed" and third.tags["serves_from"] == "2010-07-23"
    assert registry.version_for(CHAMPION) == "2"

    july = range_tags(*(str(d) for d in JULY_DAYS))
    assert dg.materialize([predictions], resources=resources, tags=july).success
    stored = lake.read_dates(tables.GOLD_PREDICTIONS, *JULY_DAYS)
    by_date = dict(
        stored.group_by("date", "role").agg(pl.col("model_version").unique().sort()).select(
            pl.concat_str(pl.col("date").cast(pl.String), pl.lit("/"), "role"), "model_version"
        ).rows()
    )  # fmt: skip
    days = sorted(stored["date"].unique())
    for day in days:
        expected = "1" if day <= DECISION else "2"
        assert by_date[f"{day}/champion"] == [expected], day
        shadow = by_date.get(f"{day}/challenger")
        assert shadow == ([str(third.version)] if day >= dt.date(2010, 7, 23) else None), day
    # the stored score on the first day served is the drift refit's booster on that row
    row = stored.filter(pl.col("date") == SERVES_FROM, pl.col("role") == "champion").head(1)
    features = lake.read_dates(tables.GOLD_DAILY_FEATURES, SERVES_FROM, SERVES_FROM)
    booster = registry.load_booster("2")
    mine = features.filter(pl.col("instrument") == row["instrument"].item())
    expected = booster.predict(mine.select(booster.feature_name()).cast(pl.Float64).to_numpy())
    assert row["prediction"].item() == pytest.approx(expected[0], rel=1e-12)

    # versions from before dated tags: a month 'YYYY-MM' means its first session
    client = registry.client()
    client.set_model_version_tag(registry.model_name, "1", "champion_from", "2010-06")
    client.delete_model_version_tag(registry.model_name, "1", "serves_from")
    version = lake.version(tables.GOLD_DAILY_FEATURES)
    features = lake.read_dates(tables.GOLD_DAILY_FEATURES, *JULY_DAYS, version)
    chosen = score(features, registry, "champion", version).group_by("date")
    assert dict(chosen.agg(pl.col("model_version").unique()).rows()) == {
        d: ["1" if d <= DECISION else "2"] for d in days
    }
