"""Exactly once with several ingests at once: CLI beside CLI, threads beside threads, local and S3.

delta-rs rebases a blind append onto a newer version without comparing application transactions,
so before the commit was fenced two concurrent ingests of one range both stored it (measured:
three CLI ingests stored 122,574 bars twice). Each test here fails on that behaviour.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from stock_assets import tables
from stock_assets.bronze.ingest import catch_up
from stock_assets.bronze.market_bars import MARKET_BARS, encode_bar
from stock_assets.bronze.replay import replay
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_lake(s3_endpoint):
    import boto3
    from dagster_deltalake import S3Config

    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="test",
        aws_secret_access_key="test", region_name="us-east-1",
    )  # fmt: skip
    if "stock-lake" not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket="stock-lake")

    def make(prefix: str):
        root = f"s3://stock-lake/{prefix}-{os.urandom(4).hex()}"
        lake = LakeResource(
            root=root,
            storage=S3Config(
                endpoint=s3_endpoint, access_key_id="test", secret_access_key="test",
                region="us-east-1",
            ),
            extra_storage_options={"allow_http": "true"},
        )  # fmt: skip
        return lake, {**env, "STOCK_LAKE_ROOT": root}

    return make


BAD = [b"not json", encode_bar("IBM", "2010-06-31", 1.0, 1.0, 1.0, 1.0, 1, "t")]


def publish(kafka: KafkaResource, topic: str, bars: pl.DataFrame) -> dict[int, int]:
    """Real bars plus malformed messages; returns the end offset of every partition."""
    report = replay(kafka, topic, bars, "sp500_2009")
    assert report.failed == 0
    producer = kafka.producer()
    for i, payload in enumerate(BAD):
        producer.send(topic, key=f"BAD{i}".encode(), value=payload)
    producer.flush()
    producer.close()
    return kafka.end_offsets(topic)


def assert_each_offset_once(lake, topic: str, ends: dict[int, int]) -> None:
    """Every published offset is in bronze or its quarantine, exactly once, and none is lost."""
    bronze = lake.scan(tables.BRONZE_MARKET_BARS).select("kafka_partition", "kafka_offset")
    quarantine = lake.scan(tables.BRONZE_MARKET_BARS_QUARANTINE).select(
        "kafka_partition", "kafka_offset"
    )
    stored = pl.concat([bronze.collect(), quarantine.collect()])
    assert stored.is_duplicated().sum() == 0, "an offset was stored twice"
    expected = {(p, o) for p, end in ends.items() for o in range(end)}
    assert set(stored.iter_rows()) == expected
    assert lake.scan(tables.BRONZE_MARKET_BARS_QUARANTINE).collect().height == len(BAD)


def race(kafka, lake, topic: str, batch_sizes: tuple[int, ...]) -> list:
    """One in-process ingest per batch size, all at once; small passes make writers interleave
    their commits instead of one taking it all. Returns every pass's report."""
    reports, errors = [], []

    def ingest(batch: int) -> None:
        try:
            reports.extend(catch_up(kafka, lake, MARKET_BARS, topic, batch))
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(n,)) for n in batch_sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    return reports


@pytest.fixture
def bars(sp500) -> pl.DataFrame:
    return sp500.filter(pl.col("date") <= pl.date(2009, 9, 30)).head(6000)


def test_concurrent_threads_store_every_offset_exactly_once(
    kafka_bootstrap, fresh_topic, tmp_path, bars
):
    """Many rounds of four in-process ingests racing on a fresh table, then on a growing one."""
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    raced = 0
    for round_ in range(6):
        topic = fresh_topic(3)
        ends = publish(kafka, topic, bars)
        lake = LakeResource(root=str(tmp_path / f"lake-{round_}"))
        reports = race(kafka, lake, topic, (700, 1000, 1500, 5000))
        assert_each_offset_once(lake, topic, ends)
        # the fence was exercised: some writer found rows another had stored first
        assert sum(r.stored for r in reports) == bars.height
        raced += sum(r.stored_by_another_writer for r in reports)
    assert raced > 0, "no writer ever lost a race: the test did not exercise the fence"


def cli(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("stock-assets")), "ingest", "--until-caught-up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_clean_exits_and_one_copy(outcomes: list[tuple], valid_bars: int) -> None:
    """Every process ends normally with one-line summaries; together they stored each bar once
    (a process that started late finds everything stored and says so)."""
    stored = 0
    for code, out, err in outcomes:
        assert code == 0 and "Traceback" not in err, err
        for line in out.splitlines():
            match = re.match(r".*: stored (\d+), quarantined \d+, skipped \d+ already stored, "
                             r"\d+ stored first by a concurrent ingest", line)  # fmt: skip
            assert match or "bronze already holds every offset" in line, line
            stored += int(match.group(1)) if match else 0
    assert stored == valid_bars


def run_three_cli_ingests(kafka_bootstrap: str, topic: str, lake_env: dict) -> list[tuple]:
    env = {**os.environ, "STOCK_KAFKA_BOOTSTRAP": kafka_bootstrap, "STOCK_MARKET_TOPIC": topic}
    env.update(lake_env)
    processes = [cli(env) for _ in range(3)]
    return [(p.wait(timeout=180), *p.communicate()) for p in processes]


def test_three_cli_ingests_on_a_local_lake(kafka_bootstrap, fresh_topic, tmp_path, bars):
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    topic = fresh_topic(3)
    ends = publish(kafka, topic, bars)
    root = str(tmp_path / "lake")
    outcomes = run_three_cli_ingests(kafka_bootstrap, topic, {"STOCK_LAKE_ROOT": root})
    assert_clean_exits_and_one_copy(outcomes, bars.height)
    assert_each_offset_once(LakeResource(root=root), topic, ends)


def test_three_cli_ingests_on_an_s3_lake(kafka_bootstrap, fresh_topic, s3_lake, bars):
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    topic = fresh_topic(3)
    ends = publish(kafka, topic, bars)
    lake, env = s3_lake("concurrent-cli")
    outcomes = run_three_cli_ingests(kafka_bootstrap, topic, env)
    assert_clean_exits_and_one_copy(outcomes, bars.height)
    assert_each_offset_once(lake, topic, ends)


def test_concurrent_threads_on_an_s3_lake(kafka_bootstrap, fresh_topic, s3_lake, bars):
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    for round_ in range(3):
        topic = fresh_topic(3)
        ends = publish(kafka, topic, bars)
        lake, _ = s3_lake(f"threads-{round_}")
        race(kafka, lake, topic, (800, 1300, 6000))
        assert_each_offset_once(lake, topic, ends)
