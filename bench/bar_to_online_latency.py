"""Latency from a bar on the Kafka topic to its features in Feast's online store (local stack),
and, once a champion exists, to its stored prediction.

    make run                                    # in one shell: the stack, caught up
    .venv/bin/python bench/bar_to_online_latency.py [--rounds 3] [--tickers 0]

Each round re-publishes the newest session's real bars (every ticker, or ``--tickers N``) as a
vendor correction with identical values (source ``latency-bench``), then polls the online store
until every one of those tickers is served from a newer ``gold/daily_features`` version. The
path is the production one: Kafka sensor -> ingest run -> bronze -> daily_bars_sensor -> one
chain run (silver, corporate actions, adjusted bars, quality, features, Feast snapshot, apply,
online load). The Dagster runs behind each round give the breakdown: time spent waiting for a
sensor tick and a run to start, against time inside the runs.

The corrections stay in bronze (as later published versions of the same bars; silver keeps the
latest, which is equal), so the lake's values do not change.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
from kafka import KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stock_assets import config, tables  # noqa: E402
from stock_assets.bronze.market_bars import encode_bar  # noqa: E402
from stock_assets.feast import feature_store as fs  # noqa: E402
from stock_assets.resources.feast import FeastResource  # noqa: E402
from stock_assets.resources.lake import LakeResource  # noqa: E402

JOBS = ("ingest_market_bars", "build_from_new_bars")


def newest_bars(lake: LakeResource, limit: int) -> pl.DataFrame:
    newest = lake.scan(tables.DAILY_BARS).select(pl.col("date").max()).collect().item()
    bars = lake.read_dates(tables.DAILY_BARS, newest, newest).sort("ticker")
    return bars.head(limit) if limit else bars


def publish(bootstrap: str, bars: pl.DataFrame) -> float:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    columns = ("ticker", "date", "open", "high", "low", "close", "volume")
    for ticker, day, o, h, low, c, v in bars.select(columns).iter_rows():
        value = encode_bar(ticker, day.isoformat(), o, h, low, c, v, "latency-bench")
        producer.send(config.market_bars_topic(), key=ticker.encode(), value=value)
    producer.flush()
    sent = time.time()
    producer.close()
    return sent


def wait_online(store, tickers: list[str], above: int, timeout_s: float) -> float | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            online = fs.online_features(store, tickers, dt.timedelta(days=36500))
        except sqlite3.OperationalError:  # a store made before WAL was switched on
            time.sleep(0.2)
            continue
        if (online[fs.VERSION].fill_null(-1) > above).all():
            return time.time()
        time.sleep(0.2)
    return None


def wait_predictions(lake: LakeResource, day, above: int | None, timeout_s: float) -> float | None:
    """When ``gold/predictions`` commits a version after ``above`` holding ``day``'s rows."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        version = lake.version(tables.GOLD_PREDICTIONS)
        newer = version is not None and (above is None or version > above)
        if newer and not lake.read_dates(tables.GOLD_PREDICTIONS, day, day).is_empty():
            return time.time()
        time.sleep(0.5)
    return None


def run_breakdown(instance: dg.DagsterInstance, since: float) -> dict[str, float]:
    """Seconds from publishing to each run's start and end, and each step's duration."""
    out: dict[str, float] = {}
    for job in JOBS:
        records = instance.get_run_records(dg.RunsFilter(job_name=job), limit=5)
        runs = [r for r in records if r.create_timestamp.timestamp() >= since]
        if not runs:
            continue
        record = min(runs, key=lambda r: r.create_timestamp)
        out[f"{job} created"] = record.create_timestamp.timestamp() - since
        if record.start_time:
            out[f"{job} started"] = record.start_time - since
        if record.end_time:
            out[f"{job} ended"] = record.end_time - since
        for step in instance.get_run_step_stats(record.dagster_run.run_id):
            if step.start_time and step.end_time:
                out[f"  step {step.step_key}"] = step.end_time - step.start_time
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tickers", type=int, default=0, help="0: every ticker of the session")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    bootstrap = config.kafka_bootstrap()
    if not bootstrap:
        print("no broker: start the local stack first (make run)", file=sys.stderr)
        return 2
    os.environ.setdefault("DAGSTER_HOME", str(config.dagster_home()))
    instance = dg.DagsterInstance.get()
    lake = LakeResource.from_env()
    store = fs.open_store(FeastResource.from_env().settings())
    bars = newest_bars(lake, args.tickers)
    tickers = bars["ticker"].to_list()
    print(f"{len(tickers)} bars of {bars['date'][0]} per round, {args.rounds} rounds")
    totals = []
    for round_no in range(1, args.rounds + 1):
        version = lake.version(tables.GOLD_DAILY_FEATURES)
        predicted_version = lake.version(tables.GOLD_PREDICTIONS)
        sent = publish(bootstrap, bars)
        online = wait_online(store, tickers, version, args.timeout)
        if online is None:
            print(f"round {round_no}: not online within {args.timeout:.0f} s")
            return 1
        totals.append(online - sent)
        print(f"round {round_no}: bar on topic -> features online {online - sent:6.1f} s")
        if predicted_version is not None:  # a champion exists: the chain predicts the session
            stored = wait_predictions(lake, bars["date"][0], predicted_version, 120)
            took = f"{stored - sent:6.1f} s" if stored else "not within 120 s after the features"
            print(f"round {round_no}: bar on topic -> prediction stored   {took}")
        for name, seconds in run_breakdown(instance, sent).items():
            print(f"    {name:<48} {seconds:6.1f} s")
        time.sleep(20)  # let the sensors go idle before the next round
    median = statistics.median(totals)
    print(f"median {median:.1f} s, min {min(totals):.1f} s, max {max(totals):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
