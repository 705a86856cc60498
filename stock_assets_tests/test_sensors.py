"""Sensor behaviour: bounded ticks when the broker is down or silent, cursors and run keys."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading
import time

import dagster as dg
import pytest

from stock_assets import tables
from stock_assets.feast.daily_features_online import ONLINE_FRESH, ONLINE_KEY
from stock_assets.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from stock_assets.resources.broker import free_port
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets.sensors import (
    BAR_CHAIN_ASSETS,
    BAR_CHAIN_CHECKS,
    BAR_CHAIN_TAG,
    IN_PROCESS,
    bar_chain_job,
    daily_bars_sensor,
    market_bars_kafka_sensor,
    partition_ranges,
)
from stock_assets.table_assets import table_key
from stock_assets_tests.conftest import publish


def evaluate(kafka: KafkaResource, lake: LakeResource, cursor: str | None = None):
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={"kafka": kafka, "lake": lake},
    )
    started = time.monotonic()
    result = market_bars_kafka_sensor(context)
    return result, time.monotonic() - started, context.cursor


def test_tick_with_broker_down_returns_within_five_seconds_with_a_reason(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    kafka = KafkaResource(bootstrap_servers=address)
    result, elapsed, cursor = evaluate(
        kafka, LakeResource(root=str(tmp_path)), cursor='{"generation": 4}'
    )
    assert elapsed < 5
    assert isinstance(result, dg.SkipReason)
    assert re.fullmatch(
        rf"Kafka broker unreachable \({re.escape(address)}: .*refused.*\); will retry next tick",
        result.skip_message,
    ), result.skip_message
    assert cursor == '{"generation": 4}'  # nothing was requested, nothing was skipped over


@pytest.fixture
def silent_server():
    """Accepts TCP connections and never answers: the worst case for a Kafka client."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_tick_with_a_broker_that_never_answers_is_still_bounded(silent_server, tmp_path):
    # The bound on the whole query (timeout_s) is shorter than the clients' own 1 s minimum
    # (bounded_client_kwargs), so it is always the bound that ends the tick, never a client error.
    kafka = KafkaResource(bootstrap_servers=silent_server, timeout_s=0.5)
    result, elapsed, cursor = evaluate(kafka, LakeResource(root=str(tmp_path)))
    assert elapsed < 3
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == (
        f"Kafka broker {silent_server} did not answer within 0.5s; will retry next tick"
    )
    assert cursor is None


def test_caught_up_topic_requests_nothing(kafka_bootstrap, fresh_topic, tmp_path, monkeypatch):
    topic = fresh_topic(2)
    monkeypatch.setenv("STOCK_MARKET_TOPIC", topic)
    result, _, _ = evaluate(
        KafkaResource(bootstrap_servers=kafka_bootstrap), LakeResource(root=str(tmp_path))
    )
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == f"bronze holds every offset of {topic}: {{0: 0, 1: 0}}"


def test_new_offsets_become_one_keyed_run_and_the_cursor_advances(
    kafka_bootstrap, fresh_topic, tmp_path, monkeypatch
):
    topic = fresh_topic(2)
    monkeypatch.setenv("STOCK_MARKET_TOPIC", topic)
    publish(kafka_bootstrap, topic, [(f"K{i}".encode(), b"{}") for i in range(10)])
    kafka, lake = KafkaResource(bootstrap_servers=kafka_bootstrap), LakeResource(root=str(tmp_path))
    first, _, cursor = evaluate(kafka, lake)
    assert isinstance(first, dg.RunRequest)
    ranges = first.run_config["ops"]["market_bars"]["config"]["ranges"]
    assert sum(r["end"] - r["start"] for r in ranges) == 10
    assert all(r["start"] == 0 for r in ranges)
    assert json.loads(cursor)["generation"] == 1
    second, _, cursor = evaluate(kafka, lake, cursor=cursor)
    # nothing was ingested yet, so the same offsets are requested again, under a new run key
    assert second.run_config == first.run_config and second.run_key != first.run_key
    assert json.loads(cursor)["generation"] == 2
    from stock_assets.definitions import defs

    monkeypatch.setenv("STOCK_KAFKA_BOOTSTRAP", kafka_bootstrap)  # the job's resource config
    ingest = defs.get_job_def(first.job_name or "ingest_market_bars")
    assert first.run_config["execution"] == IN_PROCESS["execution"]  # one step: no subprocess
    assert dg.validate_run_config(ingest, first.run_config) is not None


def test_partition_ranges_map_bar_dates_to_the_sessions_owning_them():
    ranges, unknown = partition_ranges(
        [
            "2010-06-01",
            "2010-06-02",
            "2010-06-04",
            "2010-06-30",
            "2010-07-04",  # Sunday and
            "2010-07-03",  # Saturday: both owned by Tuesday 07-06 (Monday was a holiday)
            "1984-12-31",  # before the first session partition
        ]
    )
    assert ranges == [("2010-06-01", "2010-06-04"), ("2010-06-30", "2010-07-06")]
    assert unknown == ["1984-12-31"]
    # a session far ahead of today has no partition yet: nothing owns a bar dated then
    ahead = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    assert partition_ranges([ahead]) == ([], [ahead])
    # sessions more than MAX_GAP apart become separate runs
    assert partition_ranges(["2010-06-01", "2010-06-09"], max_gap=5) == (
        [("2010-06-01", "2010-06-01"), ("2010-06-09", "2010-06-09")],
        [],
    )


def test_partition_ranges_report_a_malformed_date_as_unknown():
    """Unknown dates are returned separately, malformed ones included (as before the refactor):
    the sensor logs them instead of failing every tick on the same materialization."""
    ranges, unknown = partition_ranges(["2010-06-01", "bogus"])
    assert ranges == [("2010-06-01", "2010-06-01")]
    assert unknown == ["bogus"]


def test_daily_bars_sensor_requests_one_keyed_range_run_per_group_of_bar_dates():
    instance = dg.DagsterInstance.ephemeral()
    dates = ["2010-06-01", "2010-06-02", "2010-06-05", "2010-07-01"]  # 06-05: a Saturday
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=table_key(tables.BRONZE_MARKET_BARS),
            metadata={"event_dates": dg.MetadataValue.json(dates)},
        )
    )
    context = dg.build_sensor_context(instance=instance)
    requests = daily_bars_sensor(context)
    assert [
        (r.tags[PARTITION_RANGE_START_TAG], r.tags[PARTITION_RANGE_END_TAG]) for r in requests
    ] == [("2010-06-01", "2010-06-07"), ("2010-07-01", "2010-07-01")]
    keys = {key for asset in BAR_CHAIN_ASSETS for key in asset.keys}
    checks = {dg.AssetCheckKey(s.asset_key, r.name) for s in BAR_CHAIN_CHECKS for r in s.rules}
    checks.add(dg.AssetCheckKey(ONLINE_KEY, ONLINE_FRESH))  # the online store's own check
    for request in requests:
        assert set(request.asset_selection) == keys
        assert set(request.asset_check_keys) == checks
        assert request.tags[BAR_CHAIN_TAG] == "market"  # dagster.yaml: one range at a time
    assert len({r.run_key for r in requests}) == 2
    again = daily_bars_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
    assert isinstance(again, dg.SkipReason)
    assert again.skip_message == "no new bronze materializations"


def test_short_ranges_run_in_one_process_and_catch_up_ranges_keep_step_parallelism():
    """A step subprocess costs 8-25 s of start-up here: streaming cannot pay that per step."""
    from stock_assets.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    catch_up = [f"2010-03-{day:02d}" for day in range(1, 32)]
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=table_key(tables.BRONZE_MARKET_BARS),
            metadata={"event_dates": dg.MetadataValue.json([*catch_up, "2010-06-01"])},
        )
    )
    long, short = daily_bars_sensor(dg.build_sensor_context(instance=instance))
    assert (long.tags[PARTITION_RANGE_START_TAG], short.tags[PARTITION_RANGE_START_TAG]) == (
        "2010-03-01",
        "2010-06-01",
    )
    assert short.run_config == IN_PROCESS and long.run_config == {}
    job = defs.get_job_def(bar_chain_job.name)
    for request in (long, short):
        assert dg.validate_run_config(job, request.run_config) is not None
