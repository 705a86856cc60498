"""Subprocess body for the crash tests: ingest a topic, optionally dying at a chosen point."""

from __future__ import annotations

import os
import signal
import sys

from stock_assets.bronze import ingest
from stock_assets.bronze.market_bars import MARKET_BARS
from stock_assets.lake import LakeIO
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource


def main(bootstrap: str, root: str, topic: str, crash: str) -> None:
    if crash == "after-quarantine-commit":
        original = LakeIO.append_kafka

        def append_then_die(self, table, *args, **kwargs):
            version = original(self, table, *args, **kwargs)
            if table == MARKET_BARS.quarantine:
                os.kill(os.getpid(), signal.SIGKILL)
            return version

        LakeIO.append_kafka = append_then_die
    if crash == "report-each-pass":  # the parent kills us while passes remain
        kafka, lake = KafkaResource(bootstrap_servers=bootstrap), LakeResource(root=root)
        while ingest.catch_up(
            kafka, lake, MARKET_BARS, topic, max_records_per_run=100, max_passes=1
        ):
            print("pass", flush=True)
        return
    ingest.catch_up(
        KafkaResource(bootstrap_servers=bootstrap),
        LakeResource(root=root),
        MARKET_BARS,
        topic,
        max_records_per_run=1000,
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
