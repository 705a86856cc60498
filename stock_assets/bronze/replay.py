"""Publish historical bars onto the market-data topic so the live path runs on real data."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from stock_assets.bronze.datasets import load_dataset
from stock_assets.bronze.market_bars import encode_bar
from stock_assets.resources.kafka import KafkaResource


@dataclass
class ReplayReport:
    dataset: str
    topic: str
    sent: int = 0
    failed: int = 0
    trading_days: int = 0
    first_date: dt.date | None = None
    last_date: dt.date | None = None
    per_partition: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        return (
            f"replayed {self.sent} bars of {self.dataset} ({self.first_date}..{self.last_date}, "
            f"{self.trading_days} trading days) to {self.topic} in {self.seconds:.1f}s "
            f"({rate:,.0f} msg/s); failed: {self.failed}; per partition: "
            f"{dict(sorted(self.per_partition.items()))}"
        )


def select_bars(
    dataset: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
    tickers: list[str] | None = None,
) -> pl.DataFrame:
    bars = load_dataset(dataset)
    if start:
        bars = bars.filter(pl.col("date") >= start)
    if end:
        bars = bars.filter(pl.col("date") <= end)
    if tickers:
        unknown = set(tickers) - set(bars["ticker"].unique())
        if unknown:
            raise ValueError(f"tickers not in {dataset} for that range: {sorted(unknown)}")
        bars = bars.filter(pl.col("ticker").is_in(tickers))
    return bars.sort("date", "ticker")


def replay(
    kafka: KafkaResource,
    topic: str,
    bars: pl.DataFrame,
    dataset: str,
    days_per_second: float | None = None,
) -> ReplayReport:
    """Send bars in date order, keyed by ticker; optionally paced like a live feed."""
    report = ReplayReport(dataset=dataset, topic=topic)
    if bars.is_empty():
        return report
    producer = kafka.producer()
    started = time.monotonic()

    def delivered(metadata) -> None:
        report.per_partition[metadata.partition] += 1

    def failed(_exc) -> None:
        report.failed += 1

    try:
        for day_index, (_, day_bars) in enumerate(bars.group_by("date", maintain_order=True)):
            if days_per_second:
                _wait_until(started + day_index / days_per_second)
            for ticker, date, o, h, low, c, v, source in day_bars.iter_rows():
                value = encode_bar(ticker, date, o, h, low, c, v, source)
                future = producer.send(topic, key=ticker.encode(), value=value)
                future.add_callback(delivered).add_errback(failed)
            if days_per_second:
                producer.flush()
        producer.flush()
    finally:
        producer.close(timeout=10)
    report.sent = sum(report.per_partition.values())
    report.trading_days = bars["date"].n_unique()
    report.first_date, report.last_date = bars["date"].min(), bars["date"].max()
    report.seconds = time.monotonic() - started
    return report


def _wait_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)
