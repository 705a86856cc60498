"""Raw kafka-python consume rate vs the Kafka -> bronze Delta ingest rate, same messages.

    .venv/bin/python bench/ingest_throughput.py [--messages N] [--rounds R]

Publishes real bars (the 524-symbol S&P 500 set, repeated if N is larger) to a fresh topic on an
embedded broker (or STOCK_KAFKA_BOOTSTRAP), then alternates: a raw consume of every message with
the same consumer settings the ingest uses, and a full ingest into a fresh Delta lake (parse,
validate, build Arrow, one Delta commit with offsets). Prints the median of each and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import TopicPartition  # noqa: E402

from stock_assets.bronze.ingest import CONSUMER_GROUP, ingest_range  # noqa: E402
from stock_assets.bronze.market_bars import MARKET_BARS  # noqa: E402
from stock_assets.bronze.replay import replay, select_bars  # noqa: E402
from stock_assets.resources.broker import EmbeddedBroker, ensure_topic  # noqa: E402
from stock_assets.resources.kafka import KafkaResource  # noqa: E402
from stock_assets.resources.lake import LakeResource  # noqa: E402

PARTITIONS = 6


def publish(kafka: KafkaResource, topic: str, messages: int) -> dict[int, int]:
    bars = select_bars("sp500_2009")
    sent = 0
    while sent < messages:
        chunk = bars.head(messages - sent)
        report = replay(kafka, topic, chunk, "sp500_2009")
        sent += report.sent
    return kafka.end_offsets(topic)


def raw_consume(kafka: KafkaResource, topic: str, ends: dict[int, int]) -> float:
    started = time.perf_counter()
    seen = 0
    with kafka.consumer(group_id=CONSUMER_GROUP + "-bench", max_poll_records=5000) as consumer:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        total = sum(ends.values())
        while seen < total:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    _ = record.value
                    seen += 1
    return time.perf_counter() - started


def ingest(kafka: KafkaResource, topic: str, ends: dict[int, int], workdir: Path) -> float:
    lake = LakeResource(root=str(workdir / f"lake-{uuid.uuid4().hex[:8]}"))
    started = time.perf_counter()
    report = ingest_range(kafka, lake, MARKET_BARS, topic, {p: (0, end) for p, end in ends.items()})
    elapsed = time.perf_counter() - started
    assert report.stored + report.quarantined == sum(ends.values()), report
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=122_574)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        broker = None
        bootstrap = os.environ.get("STOCK_KAFKA_BOOTSTRAP")
        if not bootstrap:
            broker = EmbeddedBroker(data_dir=workdir / "broker")
            broker.start()
            bootstrap = broker.bootstrap
        try:
            kafka = KafkaResource(bootstrap_servers=bootstrap)
            topic = f"bench.bars.{uuid.uuid4().hex[:8]}"
            ensure_topic(bootstrap, topic, PARTITIONS)
            ends = publish(kafka, topic, args.messages)
            total = sum(ends.values())
            raw, full = [], []
            for _ in range(args.rounds):
                raw.append(raw_consume(kafka, topic, ends))
                full.append(ingest(kafka, topic, ends, workdir))
        finally:
            if broker:
                broker.stop()
    raw_rate, ingest_rate = total / statistics.median(raw), total / statistics.median(full)
    print(f"messages:            {total} on {PARTITIONS} partitions, {args.rounds} rounds (median)")
    print(f"raw consume:         {raw_rate:,.0f} msg/s  ({statistics.median(raw):.2f} s)")
    print(f"kafka -> bronze:     {ingest_rate:,.0f} msg/s  ({statistics.median(full):.2f} s)")
    print(f"ratio ingest/raw:    {ingest_rate / raw_rate:.2f}  (target >= 0.70)")


if __name__ == "__main__":
    main()
