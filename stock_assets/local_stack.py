"""The local stack behind ``make run``: broker, real-data replay, Dagster UI and daemon.

Everything started here runs in its own process group and is stopped by PID (TERM, then KILL
after a grace period): servers on these machines may ignore SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl

from stock_assets import config, tables
from stock_assets import local_services as services
from stock_assets.bronze.datasets import load_dataset
from stock_assets.bronze.ingest import stored_offsets
from stock_assets.bronze.market_bars import MARKET_BARS
from stock_assets.bronze.replay import replay, select_bars
from stock_assets.feast import feature_store as fs
from stock_assets.feast.daily_features_online import FEAST_ASSETS
from stock_assets.local_backfills import (
    CATCH_UP_TIMEOUT_S,
    backfill_history,
    history_selection,
    wait_for_backfill,
    wait_for_webserver,
)
from stock_assets.partitions import range_tags
from stock_assets.resources.broker import EmbeddedBroker, ensure_topic, stop_process_group
from stock_assets.resources.feast import FeastResource
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource


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


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Runs a previous stack left STARTING/STARTED when it stopped; called before this stack
    launches anything, so no live run can be among them. Left alone, a dead bar-chain run holds
    the ``stock/bar_chain`` slot and every later range queues behind it forever, and a step of
    it killed inside a pool (``feast_store``) keeps that pool's one slot claimed."""
    stuck = instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
    )
    for run in stuck:
        instance.report_run_failed(run, "its run worker stopped with the previous local stack")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return [run.run_id for run in stuck]


def _rows(lake: LakeResource, table: tables.Table, expr: pl.Expr | None = None) -> int:
    if not lake.exists(table):
        return 0
    return lake.scan(table).select(expr if expr is not None else pl.len()).collect().item()


def _ensure_running(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        raise RuntimeError(f"dagster dev exited with code {process.returncode}; see its log")


def _wait_for_pipeline(
    kafka: KafkaResource, lake: LakeResource, topic: str, dagster: subprocess.Popen
) -> bool:
    """Print progress until bronze holds every offset, silver, adjusted bars and features hold
    every bar, and the online store answers for the newest session."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        _ensure_running(dagster)
        ends = kafka.end_offsets(topic)
        stored = stored_offsets(lake, MARKET_BARS, topic, ends)
        behind = sum(end - (stored[p] + 1) for p, end in ends.items())
        bronze = _rows(lake, tables.BRONZE_MARKET_BARS, pl.struct("ticker", "date").n_unique())
        silver = _rows(lake, tables.DAILY_BARS)
        adjusted = _rows(lake, tables.ADJUSTED_DAILY_BARS)
        features = _rows(lake, tables.GOLD_DAILY_FEATURES)
        online, tickers, _, _ = online_store_status(lake)
        print(
            f"  kafka lag {behind:>7} | bronze ticker-days {bronze:>7} | silver rows {silver:>7} "
            f"| adjusted rows {adjusted:>7} | feature rows {features:>7} "
            f"| online {online:>4}/{tickers}",
            flush=True,
        )
        filled = behind == 0 and bronze and silver >= bronze and adjusted >= silver <= features
        if filled and online == tickers:
            return True
        time.sleep(PROGRESS_EVERY_S)
    print(
        f"  still catching up after {CATCH_UP_TIMEOUT_S // 60} minutes; the runs go on: watch "
        "them in the UI (Dagster's bookkeeping of a many-year first range is slow)",
        flush=True,
    )
    return False


RUNS_LOG = "runs"  # what the runs executed in this process log, under <state>/logs


def sessions_without_context(lake: LakeResource) -> tuple[dt.date, dt.date] | None:
    """First and last session whose features a chain run computed before the alternative data
    landed (no universe: ``in_universe`` null); None when there are none."""
    if not lake.exists(tables.GOLD_DAILY_FEATURES):
        return None
    missing = (
        lake.scan(tables.GOLD_DAILY_FEATURES)
        .filter(pl.col("in_universe").is_null())
        .select(pl.col("date").min().alias("first"), pl.col("date").max().alias("last"))
        .collect()
    )
    first, last = missing.row(0)
    return None if first is None else (first, last)


def recompute_with_context(first: dt.date, last: dt.date) -> None:
    """Those sessions' features (checks included) and their Feast rows again, as one run in this
    process: no launch and no backfill daemon to wait for (a minute each on two busy cores). It
    is recorded in the instance like the daemon's runs; its event lines go to the runs log."""

    from stock_assets.definitions import build_resources
    from stock_assets.gold.daily_features import DAILY_FEATURES_CHECKS, daily_features

    with services.output_to_log(config.state_dir(), RUNS_LOG) as say:
        say(f"  features {first}..{last} again, now with their context, and the Feast store")
        result = dg.materialize(
            [daily_features, DAILY_FEATURES_CHECKS.asset_check(), *FEAST_ASSETS],
            resources=build_resources(),
            instance=dg.DagsterInstance.get(),
            tags=range_tags(str(first), str(last)),
            raise_on_error=False,
        )
        say(f"  features and Feast store: {'done' if result.success else 'failed, see the UI'}")


def online_store_status(lake: LakeResource) -> tuple[int, int, dt.date | None, str]:
    """(tickers online as of the newest feature session, tickers that session has, it, why not)."""
    if not lake.exists(tables.GOLD_DAILY_FEATURES):
        return 0, 0, None, "no features yet"
    newest = lake.scan(tables.GOLD_DAILY_FEATURES).select(pl.col("date").max()).collect().item()
    if newest is None:  # created, not yet written
        return 0, 0, None, "no features yet"
    tickers = lake.read_dates(tables.GOLD_DAILY_FEATURES, newest, newest)["ticker"].to_list()
    try:
        store = fs.open_store(FeastResource.from_env().settings())
        online = fs.online_features(store, tickers, dt.timedelta(0), now=fs.event_time(newest))
    except Exception as error:  # not applied or loaded yet: a status, not a crash
        return 0, len(tickers), newest, f"{type(error).__name__}: {error}"
    current = int((online[fs.EVENT_TS] == fs.event_time(newest)).sum())
    return current, len(tickers), newest, ""


def online_store_summary(lake: LakeResource) -> str:
    current, total, newest, problem = online_store_status(lake)
    if problem:
        return f"online store: not readable yet ({problem})"
    return f"online store: {current} of {total} tickers answer as of {newest}'s close"


def train_first_champion() -> str:
    """The first champion, predictions, signals and backtest, unless a champion exists."""

    from stock_assets.definitions import build_resources
    from stock_assets.models.first_champion import first_champion

    with services.output_to_log(config.state_dir(), RUNS_LOG) as say:
        resources = build_resources()
        existing = resources["mlflow_registry"].version_for("champion")
        if existing:
            return f"models: champion version {existing} already registered: not retraining"
        say("models: refitting the latest months, then predictions, signals, backtest")
        log = services.log_path(config.state_dir(), RUNS_LOG)
        say(f"  (their event lines: {log}; a refit refused by its gate is a normal outcome)")
        return first_champion(resources, dg.DagsterInstance.get(), say=say)


def _publish_hint(datasets: list[str], until: dt.date | None) -> str:
    """The replay command that feeds the next sessions as a live feed."""
    if until is None:
        return f".venv/bin/stock-assets replay --dataset {datasets[0]} --days-per-second 2"
    start = until + dt.timedelta(days=1)
    return (
        f".venv/bin/stock-assets replay --dataset {datasets[0]} --start {start} "
        "--days-per-second 0.01  (the sessions held back, one every 100 s)"
    )


def _altdata() -> list:
    """(key, partitions_def) of every alternative-data asset."""
    from stock_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = [key for key in graph.get_all_asset_keys() if graph.get(key).group_name == "altdata"]
    return [(key, graph.get(key).partitions_def) for key in sorted(keys, key=str)]


# What the local stack's runs do differently (an operator's value wins). Dagster on SQLite
# writes one "planned" event per partition per asset of a single-run backfill, each its own
# commit; with the first setting it writes one per asset and run (the partition range inside
# it). The consequence: a run that fails no longer marks its partitions failed (they stay
# missing, the run shows failed); materialized partitions show as before. The second runs a
# bar-chain range of any length in the run's own process: a process per step cost 10-20 s of
# Python and Dagster start each on two busy cores, and two cores gain little from parallel steps.
# The third keeps a replayed history in one bar-chain run across the sessions a data set lacks
# (sp500_2009 misses 7, one gap of 6 sessions), not one run per stretch, each paying a launch.
LOCAL_RUN_ENV = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    "STOCK_IN_PROCESS_MAX_SESSIONS": "100000",
    "STOCK_MAX_SESSION_GAP_PER_RUN": "30",
}
PROGRESS_EVERY_S = 5


def run_local_stack(datasets: list[str] | None = None, ui_port: int = 3000) -> int:
    """``datasets`` None means ``STOCK_REPLAY_DATASETS``; an unknown name fails before any start."""
    datasets = config.replay_datasets(",".join(datasets) if datasets else None)
    until = config.replay_until()
    stop_on_signals()
    state = config.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    for name, value in LOCAL_RUN_ENV.items():
        os.environ.setdefault(name, value)
    env = dict(os.environ)
    os.environ["DAGSTER_HOME"] = str(_prepare_dagster_home())  # this process records runs too
    orphaned = fail_orphaned_runs(dg.DagsterInstance.get())
    if orphaned:
        print(f"marked {len(orphaned)} runs of the previous stack failed: {orphaned}", flush=True)
    env.update(
        DAGSTER_HOME=os.environ["DAGSTER_HOME"],
        STOCK_LAKE_ROOT=config.lake_root(),
        STOCK_STATE_DIR=str(state),
    )
    broker = dagster = api = app = None
    try:
        if not os.environ.get("STOCK_KAFKA_BOOTSTRAP"):
            broker = start_local_broker()
            env["STOCK_KAFKA_BOOTSTRAP"] = broker.bootstrap
            print(f"embedded broker on {broker.bootstrap} (data in {state / 'broker'})", flush=True)
        kafka = KafkaResource.resolved_from_env(env["STOCK_KAFKA_BOOTSTRAP"])
        lake = LakeResource.from_env()
        topic = config.market_bars_topic()
        partitions = config.market_bars_partitions()
        ensure_topic(kafka.bootstrap_servers, topic, partitions, security=kafka.security_kwargs())
        held = sum(kafka.end_offsets(topic).values())
        if held:
            print(f"{topic} already holds {held} messages: not replaying again", flush=True)
        else:
            held_back = f" up to {until}" if until else ""
            print(f"replaying {', '.join(datasets)}{held_back} onto {topic}", flush=True)
            for name in datasets:
                bars = select_bars(name, end=until)
                print(replay(kafka, topic, bars, name).summary(), flush=True)
        # the newest session the replayed sets hold (the held-back ones included)
        data_end = None if held else max(load_dataset(n)["date"].max() for n in datasets)
        dagster = services.start_logged(
            [str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml",
             "-h", "127.0.0.1", "-p", str(ui_port)],
            env, state, "dagster",
        )  # fmt: skip
        # next to Dagster: their start-up overlaps the pipeline; they load what lands on their own
        api, app, delivery_ports = services.start_delivery(env, state, ui_port, wait=False)
        print(
            f"Dagster UI and daemon starting on http://127.0.0.1:{ui_port} "
            f"(their log: {state / 'logs' / 'dagster.log'})",
            flush=True,
        )
        altdata, backfill = _altdata(), None
        if all(lake.exists(tables.table("/".join(key.path))) for key, _ in altdata):
            print("alternative data already in the lake: not backfilling again", flush=True)
        else:  # first, so features computed from the bars find their context
            print("alternative data (macro, news, earnings, membership): backfilling history")
            wait_for_webserver(ui_port)
            selection = history_selection(altdata, data_end)
            backfill = backfill_history(ui_port, selection, "make run: alternative-data history")
        print("sensors ingest the topic into bronze, then build silver and features:", flush=True)
        caught_up = _wait_for_pipeline(kafka, lake, topic, dagster)
        if backfill:
            wait_for_backfill(ui_port, backfill)
            again = sessions_without_context(lake)
            if again:
                recompute_with_context(*again)
        print(online_store_summary(lake), flush=True)
        trained = ""
        if caught_up:
            trained = train_first_champion()
            print(trained, flush=True)
        else:
            print(
                "models: not trained yet (features still building); once they are, "
                "materialize models/challenger + models/champion for a month from the UI",
                flush=True,
            )
        expect_ready = trained.startswith("models: champion")
        services.wait_for_delivery(api, app, delivery_ports, state, expect_ready=expect_ready)
        api_port, app_port = delivery_ports
        print(
            f"\nready. Dagster UI: http://127.0.0.1:{ui_port}  (assets, runs, sensors, checks)\n"
            f"API: http://127.0.0.1:{api_port}/docs  (header X-API-Key: the secret in "
            f"{state / 'api_key'})\n"
            f"app: http://127.0.0.1:{app_port}\n"
            f"logs of Dagster, its runs, the API and the app: {state / 'logs'}\n"
            f"lake: {config.lake_root()}  broker: {env['STOCK_KAFKA_BOOTSTRAP']}\n"
            f"publish more: {_publish_hint(datasets, until)}\n"
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
        for process in (app, api):
            if process is not None:
                stop_process_group(process, grace_s=5)
        if dagster is not None:
            stop_process_group(dagster, grace_s=10)
        if broker is not None:
            broker.stop()
            config.broker_info_file().unlink(missing_ok=True)
