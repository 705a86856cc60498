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

from stock_assets.bronze.ingest import catch_up, stored_offsets
from stock_assets.bronze.market_bars import MARKET_BARS
from stock_assets.bronze.replay import replay
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets_tests.conftest import bars_between, publish

REPO = Path(__file__).resolve().parents[2]


def run_crashing_ingest(
    bootstrap, root, topic, crash: str, kill_after_passes: int = 0, delay_s: float = 0.0
) -> int:
    """Run an ingest in a child process; optionally SIGKILL it delay_s after its Nth pass."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stock_assets_tests.bronze.crash_ingest",
            bootstrap,
            root,
            topic,
            crash,
        ],
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


def publish_with_garbage(kafka, topic, bars, bad: int) -> int:
    sent = replay(kafka, topic, bars, "sp500_2009").sent
    publish(kafka.bootstrap_servers, topic, [(b"BAD", f"garbage {i}".encode()) for i in range(bad)])
    return sent


def assert_exactly_once(lake, valid: int, bad: int) -> None:
    bronze = lake.read(MARKET_BARS.bronze)
    quarantine = lake.read(MARKET_BARS.quarantine)
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
    kafka_bootstrap, fresh_topic, tmp_path, sp500
):
    topic = fresh_topic(3)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    bars = bars_between(sp500, dt.date(2010, 3, 1), dt.date(2010, 3, 5))
    valid = publish_with_garbage(kafka, topic, bars, bad=7)

    code = run_crashing_ingest(kafka_bootstrap, lake.root, topic, "after-quarantine-commit")
    assert code == -signal.SIGKILL
    assert lake.exists(MARKET_BARS.quarantine)
    assert not lake.exists(MARKET_BARS.bronze)

    catch_up(kafka, lake, MARKET_BARS, topic)
    assert_exactly_once(lake, valid, bad=7)
    ends = kafka.end_offsets(topic)
    assert stored_offsets(lake, MARKET_BARS, topic, ends) == {p: end - 1 for p, end in ends.items()}


def test_killed_at_random_moments_then_retried(kafka_bootstrap, fresh_topic, tmp_path, sp500):
    topic = fresh_topic(3)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    bars = bars_between(sp500, dt.date(2010, 1, 4), dt.date(2010, 2, 26))
    valid = publish_with_garbage(kafka, topic, bars, bad=11)
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
        progress.append(lake.read(MARKET_BARS.bronze).height)
    assert progress == sorted(progress) and 0 < progress[-1] < valid
    catch_up(kafka, lake, MARKET_BARS, topic)
    assert_exactly_once(lake, valid, bad=11)


def test_offset_zero_counts_as_stored(kafka_bootstrap, fresh_topic, tmp_path, sp500):
    """A partition whose only stored offset is 0 must not be read again (0 is not "none")."""
    topic = fresh_topic(1)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    publish(kafka_bootstrap, topic, [(b"BAD", b"not json")])
    catch_up(kafka, lake, MARKET_BARS, topic)
    one_bar = bars_between(sp500, dt.date(2010, 3, 1), dt.date(2010, 3, 1), ["KO"])
    publish_with_garbage(kafka, topic, one_bar, bad=0)
    catch_up(kafka, lake, MARKET_BARS, topic)
    catch_up(kafka, lake, MARKET_BARS, topic)
    assert_exactly_once(lake, valid=1, bad=1)
    assert stored_offsets(lake, MARKET_BARS, topic, [0]) == {0: 1}
