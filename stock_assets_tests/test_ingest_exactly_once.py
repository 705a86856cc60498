"""Exactly once under crashes: an ingest killed and retried neither duplicates nor loses."""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from kafka import KafkaProducer

from stock_assets.ingestion.ingest import catch_up, stored_offsets
from stock_assets.ingestion.messages import MARKET_BARS
from stock_assets.ingestion.replay import replay, select_bars
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource

REPO = Path(__file__).resolve().parent.parent


def run_crashing_ingest(
    bootstrap, root, topic, crash: str, kill_after_passes: int = 0, delay_s: float = 0.0
) -> int:
    """Run an ingest in a child process; optionally SIGKILL it delay_s after its Nth pass."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stock_assets_tests.crash_ingest", bootstrap, root, topic, crash],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    if kill_after_passes:
        for _ in range(kill_after_passes):
            assert process.stdout.readline() == "pass\n"
        time.sleep(delay_s)
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=180)
    return process.returncode


def publish(kafka, topic, bars, bad: int) -> int:
    sent = replay(kafka, topic, bars, "sp500_2009").sent
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    for i in range(bad):
        producer.send(topic, key=b"BAD", value=f"garbage {i}".encode())
    producer.flush()
    producer.close()
    return sent


def assert_exactly_once(lake, valid: int, bad: int) -> None:
    bronze = lake.scan(MARKET_BARS.bronze_table).collect()
    quarantine = lake.scan(MARKET_BARS.quarantine_table).collect()
    assert bronze.height == valid
    assert quarantine.height == bad
    both = pl.concat(
        [
            bronze.select("kafka_partition", "kafka_offset"),
            quarantine.select("kafka_partition", "kafka_offset"),
        ]
    )
    assert both.is_duplicated().sum() == 0


def test_killed_between_quarantine_and_bronze_commits_then_retried(
    kafka_bootstrap, fresh_topic, tmp_path
):
    topic = fresh_topic(3)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    bars = select_bars("sp500_2009", dt.date(2010, 3, 1), dt.date(2010, 3, 5))
    valid = publish(kafka, topic, bars, bad=7)

    code = run_crashing_ingest(kafka_bootstrap, lake.root, topic, "after-quarantine-commit")
    assert code == -signal.SIGKILL
    assert lake.table(MARKET_BARS.quarantine_table) is not None
    assert lake.table(MARKET_BARS.bronze_table) is None

    catch_up(kafka, lake, MARKET_BARS, topic)
    assert_exactly_once(lake, valid, bad=7)
    ends = kafka.end_offsets(topic)
    assert stored_offsets(lake, MARKET_BARS, topic, ends) == {p: end - 1 for p, end in ends.items()}


def test_killed_at_random_moments_then_retried(kafka_bootstrap, fresh_topic, tmp_path):
    topic = fresh_topic(3)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    bars = select_bars("sp500_2009", dt.date(2010, 1, 4), dt.date(2010, 2, 26))
    valid = publish(kafka, topic, bars, bad=11)
    rng = random.Random(20101)
    progress = []
    for _ in range(4):  # each attempt dies while its next pass is reading or committing
        code = run_crashing_ingest(
            kafka_bootstrap,
            lake.root,
            topic,
            "report-each-pass",
            rng.randint(1, 3),
            rng.random() / 3,
        )
        assert code == -signal.SIGKILL
        progress.append(lake.scan(MARKET_BARS.bronze_table).collect().height)
    assert progress == sorted(progress) and 0 < progress[-1] < valid
    catch_up(kafka, lake, MARKET_BARS, topic)
    assert_exactly_once(lake, valid, bad=11)


def test_offset_zero_counts_as_stored(kafka_bootstrap, fresh_topic, tmp_path):
    """A partition whose only stored offset is 0 must not be read again (0 is not "none")."""
    topic = fresh_topic(1)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topic, key=b"BAD", value=b"not json")
    producer.flush()
    catch_up(kafka, lake, MARKET_BARS, topic)
    publish(
        kafka,
        topic,
        select_bars("sp500_2009", dt.date(2010, 3, 1), dt.date(2010, 3, 1), ["KO"]),
        bad=0,
    )
    catch_up(kafka, lake, MARKET_BARS, topic)
    catch_up(kafka, lake, MARKET_BARS, topic)
    producer.close()
    assert_exactly_once(lake, valid=1, bad=1)
    assert stored_offsets(lake, MARKET_BARS, topic, [0]) == {0: 1}
