"""Wall time of each phase of `make run` from a fresh state, per data set.

    .venv/bin/python bench/make_run_phases.py [--datasets sp500_2009,sp500_1990_adjclose]
        [--timeout-min 30] [--keep]
    .venv/bin/python bench/make_run_phases.py --bookkeeping 1000

``--bookkeeping N`` measures only Dagster's per-partition bookkeeping: a trivial daily asset
materialized as one run over N sessions in a fresh SQLite instance, with and without
DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS, and the events each wrote.

For each data set: a new temporary state folder (lake, Dagster home, broker, MLflow, Feast), free
ports, the environment stripped of every setting that points elsewhere; then `stock-assets up`
(what `make run` runs once dependencies are installed) as a child process. Its progress lines
are timestamped as they arrive and mapped to phases; once it prints "ready." the bench stops it
(SIGINT, then SIGKILL by PID of it and every process it started) and prints the phases, the
total and the load average. Dependencies must be installed (`make install`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stock_assets.resources.broker import free_port  # noqa: E402

# settings that would make a run reuse something other than its fresh state
FOREIGN = (
    "DAGSTER_HOME", "STOCK_LAKE_ROOT", "STOCK_FEAST_REPO", "STOCK_MLFLOW_TRACKING_URI",
    "STOCK_MLFLOW_ARTIFACTS", "STOCK_KAFKA_BOOTSTRAP", "STOCK_API_KEYS", "STOCK_REPLAY_UNTIL",
)  # fmt: skip
PROGRESS = re.compile(
    r"kafka lag\s+(\d+) \| bronze ticker-days\s+(\d+) \| silver rows\s+(\d+) \| adjusted rows"
    r"\s+(\d+) \| feature rows\s+(\d+) \| online\s+(\d+)/(\d+)"
)
REPLAYED = re.compile(r"^replayed (\d+) bars")
# (phase, what ends it), in the order they happen
PHASES = [
    ("services (broker, process start)", "broker"),
    ("replay to Kafka", "replayed"),
    ("bronze (every offset stored)", "bronze"),
    ("silver (daily and adjusted bars)", "silver"),
    ("features", "features"),
    ("Feast online store", "feast"),
    ("alternative-data backfill, context recompute", "context"),
    ("first champion (refits and gates)", "champion"),
    ("predictions, signals, backtest", "models"),
    ("API ready (champion and predictions loaded)", "api_ready"),
]


class Phases:
    """First time (seconds since start) each marker was seen in the stack's output."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.replayed = 0
        self.models_line = ""

    def mark(self, name: str, t: float) -> None:
        self.at.setdefault(name, t)

    def feed(self, line: str, t: float) -> None:
        if line.startswith("embedded broker on"):
            self.mark("broker", t)
        elif match := REPLAYED.match(line):
            self.replayed += int(match.group(1))
            self.at["replayed"] = t
        elif match := PROGRESS.search(line):
            lag, bronze, silver, adjusted, features, online, tickers = map(int, match.groups())
            if lag == 0 and bronze and bronze >= self.replayed:
                self.mark("bronze", t)
                if silver >= bronze and adjusted >= silver:
                    self.mark("silver", t)
                    if features >= adjusted:
                        self.mark("features", t)
                        if tickers and online == tickers:
                            self.mark("feast", t)
        elif line.startswith("online store:"):
            self.mark("context", t)  # after the backfill and the features' recompute
        elif line.startswith("  refit "):
            self.at["champion"] = t
        elif line.startswith("models:") and not line.startswith("models: refitting"):
            self.mark("models", t)
            self.models_line = line
        elif line.startswith("API answers on") and line.endswith("/health/ready"):
            self.mark("api_ready", t)
        elif line.startswith("app answers on"):
            self.mark("app_ready", t)
        elif line.startswith("ready."):
            self.mark("ready", t)

    def report(self) -> list[str]:
        lines, previous = [], 0.0
        for label, key in PHASES:
            if key in self.at:
                end = self.at[key]
                lines.append(f"  {label:<46} {end - previous:>7.1f} s  (at {end:>7.1f} s)")
                previous = end
            else:
                lines.append(f"  {label:<46} {'-':>7}    (not reached)")
        if "app_ready" in self.at:
            lines.append(f"  {'app ready (in parallel since Dagster start)':<46} "
                         f"{'':>7}    (at {self.at['app_ready']:>7.1f} s)")  # fmt: skip
        total = self.at.get("ready")
        lines.append(f"  {'total to ready':<46} {total:>7.1f} s" if total else "  not ready")
        return lines


def stop(process: subprocess.Popen, grace_s: float = 90) -> None:
    """SIGINT (the stack stops what it started), then SIGKILL by PID of whatever is left."""
    family = [process.pid, *(p.pid for p in psutil.Process(process.pid).children(recursive=True))]
    process.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace_s)
    for pid in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    process.wait()


def run_once(dataset: str, timeout_s: float, keep: bool) -> Phases:
    state = Path(tempfile.mkdtemp(prefix=f"make-run-{dataset}-"))
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env.update(
        STOCK_STATE_DIR=str(state),
        STOCK_REPLAY_DATASETS=dataset,
        STOCK_API_PORT=str(free_port()),
        STOCK_APP_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    command = [str(REPO / ".venv" / "bin" / "stock-assets"), "up", "--port", str(free_port())]
    phases, started = Phases(), time.monotonic()
    log = (state.parent / f"{state.name}.out").open("w")
    print(f"{dataset}: state {state}, output {log.name}", flush=True)
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        for line in process.stdout:
            t = time.monotonic() - started
            log.write(f"{t:8.1f} {line}")
            log.flush()
            phases.feed(line.rstrip("\n"), t)
            if "ready" in phases.at or t > timeout_s:
                break
    finally:
        stop(process)
        log.close()
        if not keep:
            shutil.rmtree(state, ignore_errors=True)
    return phases


def bookkeeping(sessions: int) -> None:
    """One single-run materialization of a no-op daily asset over ``sessions`` partitions."""
    import dagster as dg

    from stock_assets.partitions import range_tags, trading_day_partitions

    keys = trading_day_partitions().get_partition_keys()[:sessions]

    policy = dg.BackfillPolicy.single_run()

    @dg.asset(partitions_def=trading_day_partitions(), backfill_policy=policy)
    def noop() -> None:
        """Nothing to compute: what is left is the bookkeeping."""

    for flag in ("", "1"):
        os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = flag
        with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
            started, cpu = time.monotonic(), time.process_time()
            dg.materialize([noop], instance=instance, tags=range_tags(keys[0], keys[-1]))
            wall, used = time.monotonic() - started, time.process_time() - cpu
            planned = instance.get_event_records(
                dg.EventRecordsFilter(dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
            )
            print(f"  {sessions} sessions, subset events {'on ' if flag else 'off'}: {wall:6.1f} s "
                  f"wall, {used:5.1f} s CPU, {len(planned)} planned events")  # fmt: skip
    os.environ.pop("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="sp500_2009,sp500_1990_adjclose")
    parser.add_argument("--timeout-min", type=float, default=30)
    parser.add_argument("--keep", action="store_true", help="keep each run's state folder")
    parser.add_argument("--bookkeeping", type=int, metavar="N", help="only the bookkeeping bench")
    args = parser.parse_args()
    for sig in (signal.SIGINT, signal.SIGTERM):  # also when started in the background
        signal.signal(sig, signal.default_int_handler)
    if args.bookkeeping:
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        bookkeeping(args.bookkeeping)
        return 0
    results = {}
    for dataset in args.datasets.split(","):
        before = os.getloadavg()
        phases = run_once(dataset, args.timeout_min * 60, args.keep)
        results[dataset] = (phases, before, os.getloadavg())
    for dataset, (phases, before, after) in results.items():
        print(f"\n{dataset} (load average 1/5/15 min: before {before[0]:.1f}/{before[1]:.1f}/"
              f"{before[2]:.1f}, after {after[0]:.1f}/{after[1]:.1f}/{after[2]:.1f}; "
              f"{os.cpu_count()} cores)")  # fmt: skip
        print("\n".join(phases.report()))
        print(f"  {phases.models_line or 'models: no line'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
