"""Sensor behaviour: bounded ticks when the broker is down or silent, cursors and run keys."""

from __future__ import annotations

import socket
import threading
import time

import dagster as dg
import pytest

from stock_assets.ingestion.sensors import market_bars_kafka_sensor, partition_ranges
from stock_assets.resources.broker import free_port
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource


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
    kafka = KafkaResource(bootstrap_servers=f"127.0.0.1:{free_port()}")
    result, elapsed, cursor = evaluate(
        kafka, LakeResource(root=str(tmp_path)), cursor='{"generation": 4}'
    )
    assert elapsed < 5
    assert isinstance(result, dg.SkipReason)
    assert "unreachable" in result.skip_message and "retry" in result.skip_message
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
    kafka = KafkaResource(bootstrap_servers=silent_server)
    result, elapsed, _ = evaluate(kafka, LakeResource(root=str(tmp_path)))
    assert elapsed < 5
    assert isinstance(result, dg.SkipReason)
    assert "did not answer" in result.skip_message or "Kafka broker" in result.skip_message


def test_caught_up_topic_requests_nothing(kafka_bootstrap, fresh_topic, tmp_path, monkeypatch):
    monkeypatch.setenv("STOCK_MARKET_TOPIC", fresh_topic(2))
    result, _, _ = evaluate(
        KafkaResource(bootstrap_servers=kafka_bootstrap), LakeResource(root=str(tmp_path))
    )
    assert isinstance(result, dg.SkipReason) and "holds every offset" in result.skip_message


def test_new_offsets_become_one_keyed_run_and_the_cursor_advances(
    kafka_bootstrap, fresh_topic, tmp_path, monkeypatch
):
    from kafka import KafkaProducer

    topic = fresh_topic(2)
    monkeypatch.setenv("STOCK_MARKET_TOPIC", topic)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for i in range(10):
        producer.send(topic, key=f"K{i}".encode(), value=b"{}")
    producer.flush()
    producer.close()
    kafka, lake = KafkaResource(bootstrap_servers=kafka_bootstrap), LakeResource(root=str(tmp_path))
    first, _, cursor = evaluate(kafka, lake)
    assert isinstance(first, dg.RunRequest)
    ranges = first.run_config["ops"]["market_bars"]["config"]["ranges"]
    assert sum(r["end"] - r["start"] for r in ranges) == 10
    assert all(r["start"] == 0 for r in ranges)
    second, _, _ = evaluate(kafka, lake, cursor=cursor)
    # nothing was ingested yet, so the same offsets are requested again, under a new run key
    assert second.run_config == first.run_config and second.run_key != first.run_key


def test_partition_ranges_group_trading_days_and_report_unknown_dates():
    ranges, unknown = partition_ranges(
        [
            "2010-06-01",
            "2010-06-02",
            "2010-06-04",
            "2010-06-30",
            "2010-07-04",
            "2010-07-03",
            "bogus",
        ]
    )
    assert ranges == [("2010-06-01", "2010-06-04"), ("2010-06-30", "2010-06-30")]
    assert unknown == ["2010-07-03", "2010-07-04", "bogus"]
