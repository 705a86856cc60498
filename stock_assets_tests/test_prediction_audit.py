"""A real prediction traced back to the Kafka messages it came from.

Real bars of 40 S&P 500 names, January..June 2010, go Kafka -> sensor -> bronze -> the bar chain
(silver, adjusted bars, features, Feast; predictions skipped: no champion yet); June is refit and
promoted, June predicted; then `prediction_chain` must lead from one stored prediction to the
exact messages on the broker, and still to the same records and values after a corrected bar is
published on the broker and flows through silver; the reproduction of every link stays
bit-identical, and once the recorded silver version is vacuumed the audit says so.
"""

import datetime as dt
import json
import shutil

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable
from kafka import KafkaConsumer, TopicPartition

from stock_assets import tables
from stock_assets.bronze.replay import replay
from stock_assets.cli import main as cli_main
from stock_assets.gold.feature_set import SCHEMA
from stock_assets.gold.predictions import predictions
from stock_assets.models.audit import VersionGone, prediction_chain
from stock_assets.models.challenger import challenger
from stock_assets.models.champion import champion
from stock_assets.models.reproduce import reproduce
from stock_assets.partitions import range_tags
from stock_assets.pit import members_on
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import MembershipSource, today_utc
from stock_assets.silver.index_membership import parse_intervals
from stock_assets_tests.conftest import (
    bars_between,
    build_silver_from_sensor,
    ingest_from_sensor,
    mlflow_beside,
)

SMALL = {  # 40 names and five months: a smaller model than the defaults assume
    "min_validation_rank_ic": -1.0,
    "min_train_sessions": 60,
    "validation_sessions": 10,
    "min_data_in_leaf": 20,
}


def test_a_prediction_traces_back_to_its_kafka_offsets(
    kafka_bootstrap, fresh_topic, tmp_path, monkeypatch, sp500, capsys
):
    topic = fresh_topic(3)
    monkeypatch.setenv("STOCK_MARKET_TOPIC", topic)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    instance = dg.DagsterInstance.ephemeral()
    names = sorted(sp500.filter(pl.col("date") == dt.date(2010, 1, 4))["ticker"])[:39]
    bars = bars_between(sp500, dt.date(2010, 1, 4), dt.date(2010, 6, 30), [*names, "AAPL"])
    intervals, _ = parse_intervals(MembershipSource().intervals(), today_utc())
    days = sorted(bars["date"].unique())
    lake.overwrite_dates(tables.UNIVERSE, members_on(intervals, days), days[0], days[-1])
    assert replay(kafka, topic, bars, "sp500_2009").failed == 0
    ingest_from_sensor(instance, kafka, lake)
    _, cursor = build_silver_from_sensor(instance, lake)
    assert not lake.exists(tables.GOLD_PREDICTIONS)  # no champion yet: the step was skipped

    registry = mlflow_beside(lake)
    resources = {"lake": lake, "mlflow_registry": registry}
    refit = dg.materialize(
        [challenger, champion],
        resources=resources,
        partition_key="2010-06-01",
        run_config={"ops": {"models__challenger": {"config": SMALL}}},
    )
    assert refit.success
    tags = range_tags("2010-06-01", "2010-06-30")
    assert dg.materialize([predictions], resources=resources, tags=tags).success

    day = dt.date(2010, 6, 15)
    chain = prediction_chain(lake, registry, "AAPL", day)
    assert chain.prediction["model_version"] == chain.model["version"] == "1"
    assert chain.model["refit_month"] == "2010-06" and chain.model["mlflow_run_id"]
    assert chain.model["delta_versions"]["gold/daily_features"] is not None
    assert chain.features.height == 1 and chain.features["ticker"].item() == "AAPL"
    aapl = bars.filter(pl.col("ticker") == "AAPL", pl.col("date") <= day)
    assert chain.adjusted_bars["date"].to_list() == aapl["date"].to_list()  # whole lookback
    assert chain.silver_bars.height == chain.bronze_bars.height == aapl.height
    assert chain.kafka["kafka_topic"].to_list() == [topic]  # keyed by ticker: one partition

    # the offsets lead to the very messages on the broker
    (partition,) = chain.kafka["kafka_partition"].to_list()
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    where = TopicPartition(topic, partition)
    consumer.assign([where])
    wanted = set(chain.bronze_bars["kafka_offset"].to_list())
    consumer.seek(where, min(wanted))
    found = {}
    while len(found) < len(wanted):
        for record in consumer.poll(timeout_ms=2000).get(where, []):
            if record.offset in wanted:
                found[record.offset] = json.loads(record.value)
    consumer.close()
    messages = pl.DataFrame(list(found.values())).sort("date")
    assert messages["ticker"].unique().to_list() == ["AAPL"]
    assert messages["date"].to_list() == [d.isoformat() for d in aapl["date"]]
    assert messages["close"].to_list() == aapl["close"].to_list()

    # the same chain from the command line
    monkeypatch.setenv("STOCK_LAKE_ROOT", lake.root)
    monkeypatch.setenv("STOCK_MLFLOW_TRACKING_URI", registry.tracking_uri)
    assert cli_main(["audit", "AAPL", "2010-06-15"]) == 0
    printed = capsys.readouterr().out
    assert f"kafka {topic}[{partition}] offsets {min(wanted)}..{max(wanted)}" in printed
    universe_version = chain.features["universe_version"].item()
    assert f"silver/universe v{universe_version}" in printed  # the row's recorded inputs

    # a corrected bar for a day inside the lookback, published after the prediction
    corrected_day = dt.date(2010, 6, 14)
    corrected = bars.filter(pl.col("ticker") == "AAPL", pl.col("date") == corrected_day)
    assert (
        replay(kafka, topic, corrected.with_columns(close=pl.col("close") * 1.01), "x").failed == 0
    )
    ingest_from_sensor(instance, kafka, lake)
    build_silver_from_sensor(instance, lake, cursor)
    latest = lake.read_dates(tables.DAILY_BARS, corrected_day, corrected_day).filter(
        pl.col("ticker") == "AAPL"
    )
    original = chain.silver_bars.filter(pl.col("date") == corrected_day)
    assert latest["kafka_offset"].item() > max(wanted)  # silver now keeps the correction
    again = prediction_chain(lake, registry, "AAPL", day)
    assert again.prediction == chain.prediction  # the stored prediction was not touched
    assert again.versions == chain.versions  # every link read at the recorded version
    assert again.silver_bars.equals(chain.silver_bars)
    assert again.silver_bars.filter(pl.col("date") == corrected_day).equals(original)
    assert again.kafka.equals(chain.kafka)  # still the offsets that fed the prediction
    fed = again.bronze_bars.filter(pl.col("date") == corrected_day)
    assert (
        fed["kafka_offset"].item()
        == original["kafka_offset"].item()
        < latest["kafka_offset"].item()
    )
    assert fed["close"].item() == original["close"].item() == corrected["close"].item()
    assert latest["close"].item() == corrected["close"].item() * 1.01
    assert original["kafka_topic"].item() == topic
    # silver at its latest version and bronze at its latest would both name the correction
    assert original["bronze_version"].item() < lake.version(tables.BRONZE_MARKET_BARS)
    assert max(again.versions["silver/daily_bars"]) < lake.version(tables.DAILY_BARS)

    # every link recomputed at its recorded version: bronze -> silver -> adjusted -> features
    reproduction = reproduce(lake, registry, "AAPL", day)
    assert reproduction.identical, reproduction.summary()
    assert reproduction.links_compared == {
        "silver/daily_bars": aapl.height,
        "silver/adjusted_daily_bars": aapl.height,
    }

    # the silver versions the chain recorded, vacuumed: the audit says which and why
    DeltaTable(lake.uri(tables.DAILY_BARS)).vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False
    )
    with pytest.raises(VersionGone, match=r"silver/daily_bars v\d+.*no longer be read.*VACUUM"):
        prediction_chain(lake, registry, "AAPL", day)
    capsys.readouterr()
    assert cli_main(["audit", "AAPL", "2010-06-15"]) == 2
    assert "silver/daily_bars v" in capsys.readouterr().err


def test_a_stored_prediction_is_reproduced_bit_for_bit(delivered, monkeypatch, capsys):
    """A real prediction of the delivered state: its feature row recomputed from the recorded
    input versions and re-scored by its registered model version, from the command line."""
    lake, registry = delivered.lake, delivered.registry
    day = dt.date(2010, 7, 15)
    reproduction = reproduce(lake, registry, "AAPL", day)
    assert reproduction.identical, reproduction.summary()
    assert reproduction.columns_compared == len(SCHEMA)
    for name, value in delivered.env.items():
        monkeypatch.setenv(name, value)
    assert cli_main(["audit", "--reproduce", "AAPL", day.isoformat()]) == 0
    assert "bit-identical" in capsys.readouterr().out


def test_a_reproduction_reports_the_first_difference(delivered, tmp_path):
    """On a copy of the delivered lake: a stored score that its inputs and model do not give is
    reported with both values; features rewritten after the prediction change nothing, since
    the prediction names the version it read."""
    copy = tmp_path / "lake"
    shutil.copytree(delivered.lake.root, copy)
    lake, registry = LakeResource(root=str(copy)), delivered.registry
    day = dt.date(2010, 7, 15)
    stored = lake.read_dates(tables.GOLD_PREDICTIONS, day, day)
    aapl = (pl.col("ticker") == "AAPL") & (pl.col("role") == "champion")
    nudge = pl.when(aapl).then(pl.col("prediction") + 1e-12).otherwise(pl.col("prediction"))
    lake.overwrite_dates(tables.GOLD_PREDICTIONS, stored.with_columns(prediction=nudge), day, day)
    reproduction = reproduce(lake, registry, "AAPL", day)
    assert not reproduction.identical
    column, was, again = reproduction.first_difference
    assert column == "prediction" and was - again == pytest.approx(1e-12, abs=1e-15)
    assert "first difference in prediction" in reproduction.summary()

    lake.overwrite_dates(tables.GOLD_PREDICTIONS, stored, day, day)  # back to the stored score
    features = lake.read_dates(tables.GOLD_DAILY_FEATURES, day, day)
    lake.overwrite_dates(
        tables.GOLD_DAILY_FEATURES, features.with_columns(obv=pl.col("obv") * 2), day, day
    )
    assert reproduce(lake, registry, "AAPL", day).identical  # read at the recorded version
