"""The local stack behind ``make run``: broker, real-data replay, Dagster UI and daemon.

Everything started here runs in its own process group and is stopped by PID (TERM, then KILL
after a grace period): servers on these machines may ignore SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from stock_assets import config
from stock_assets.ingestion.ingest import stored_offsets
from stock_assets.ingestion.messages import MARKET_BARS
from stock_assets.ingestion.replay import replay, select_bars
from stock_assets.market.assets import DAILY_BARS
from stock_assets.resources.broker import EmbeddedBroker, ensure_topic, stop_process_group
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource

CATCH_UP_TIMEOUT_S = 900


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Turn SIGINT/SIGTERM/SIGHUP into KeyboardInterrupt so ``finally`` blocks stop children.

    A process started in the background by a non-interactive shell inherits SIGINT as ignored;
    installing handlers explicitly makes Ctrl-C and ``kill PID`` work the same everywhere.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


def start_local_broker(port: int | None = None) -> EmbeddedBroker:
    """Start the embedded broker and advertise it in the state folder for other commands."""
    broker = EmbeddedBroker(data_dir=config.state_dir() / "broker", port=port)
    broker.start()
    info = config.broker_info_file()
    info.parent.mkdir(parents=True, exist_ok=True)
    info.write_text(json.dumps({"bootstrap": broker.bootstrap, "pid": broker.pid}))
    return broker


def serve_broker_forever(port: int | None = None) -> int:
    stop_on_signals()
    broker = None
    try:
        broker = start_local_broker(port)
        print(f"Kafka-protocol broker on {broker.bootstrap} (Ctrl-C stops it)", flush=True)
        while broker.is_running():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        if broker is not None:
            broker.stop()
            config.broker_info_file().unlink(missing_ok=True)
    return 0


def _prepare_dagster_home() -> Path:
    home = config.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(config.REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def _wait_for_pipeline(kafka: KafkaResource, lake: LakeResource, topic: str) -> None:
    """Print progress until bronze holds every offset and silver holds every bronze bar."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        ends = kafka.end_offsets(topic)
        stored = stored_offsets(lake, MARKET_BARS, topic, ends)
        behind = sum(end - (stored[p] + 1) for p, end in ends.items())
        silver = (
            lake.scan(DAILY_BARS).select(pl.len()).collect().item() if lake.table(DAILY_BARS) else 0
        )
        bronze_bars = (
            lake.scan(MARKET_BARS.bronze_table)
            .select(pl.struct("ticker", "date").n_unique())
            .collect()
            .item()
            if lake.table(MARKET_BARS.bronze_table)
            else 0
        )
        print(
            f"  kafka lag {behind:>7} | bronze ticker-days {bronze_bars:>7} "
            f"| silver rows {silver:>7}"
        )
        if behind == 0 and bronze_bars and silver >= bronze_bars:
            return
        time.sleep(10)
    print("  still catching up; watch the runs in the UI")


def run_local_stack(datasets: list[str], ui_port: int = 3000) -> int:
    stop_on_signals()
    state = config.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(_prepare_dagster_home()),
        STOCK_LAKE_ROOT=config.lake_root(),
        STOCK_STATE_DIR=str(state),
    )
    broker = None
    dagster = None
    try:
        if not os.environ.get("STOCK_KAFKA_BOOTSTRAP"):
            broker = start_local_broker()
            env["STOCK_KAFKA_BOOTSTRAP"] = broker.bootstrap
            print(f"embedded broker on {broker.bootstrap} (data in {state / 'broker'})", flush=True)
        kafka = KafkaResource(bootstrap_servers=env["STOCK_KAFKA_BOOTSTRAP"])
        lake = LakeResource.from_env()
        topic = config.market_bars_topic()
        ensure_topic(kafka.bootstrap_servers, topic, config.market_bars_partitions())
        held = sum(kafka.end_offsets(topic).values())
        if held:
            print(f"{topic} already holds {held} messages: not replaying again", flush=True)
        else:
            for name in datasets:
                print(replay(kafka, topic, select_bars(name), name).summary(), flush=True)
        dagster = subprocess.Popen(
            [Path(sys.executable).with_name("dagster"), "dev", "-w", "workspace.yaml",
             "-h", "127.0.0.1", "-p", str(ui_port)],
            cwd=config.REPO_ROOT,
            env=env,
            start_new_session=True,
        )  # fmt: skip
        print(f"Dagster UI and daemon starting on http://127.0.0.1:{ui_port}", flush=True)
        print("sensors ingest the topic into bronze, then build silver daily bars:", flush=True)
        _wait_for_pipeline(kafka, lake, topic)
        print(
            f"\nready. Dagster UI: http://127.0.0.1:{ui_port}  (assets, runs, sensors, checks)\n"
            f"lake: {config.lake_root()}  broker: {env['STOCK_KAFKA_BOOTSTRAP']}\n"
            "publish more: .venv/bin/stock-assets replay --dataset sp500_2009 --days-per-second 2\n"
            "Ctrl-C stops everything started here.",
            flush=True,
        )
        while dagster.poll() is None:
            time.sleep(1)
        return dagster.returncode or 0
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    finally:
        if dagster is not None:
            stop_process_group(dagster, grace_s=10)
        if broker is not None:
            broker.stop()
            config.broker_info_file().unlink(missing_ok=True)
