"""Sensors that turn new Kafka offsets into ingest runs and new bar dates into silver runs.

Market data is driven by these sensors, alternative data by schedules (schedules.py).

Both are bounded (a tick never waits on Kafka for more than a few seconds), always move their
cursor forward, and give every RunRequest a run_key so a re-evaluated tick cannot double-launch.
"""

import datetime as dt
import json
import os
from collections.abc import Callable

import dagster as dg

from stock_assets import config, tables
from stock_assets.bronze.contract import TopicContract
from stock_assets.bronze.ingest import stored_offsets
from stock_assets.bronze.market_bars import MARKET_BARS
from stock_assets.bronze.news_articles import NEWS_ARTICLES
from stock_assets.calendar import is_trading_day
from stock_assets.feast.daily_features_online import FEAST_ASSETS
from stock_assets.gold.daily_features import DAILY_FEATURES_CHECKS, daily_features
from stock_assets.gold.predictions import PREDICTIONS_CHECKS, predictions
from stock_assets.gold.signals import signals
from stock_assets.models.challenger import model_months
from stock_assets.models.drift import DRIFT_KEY
from stock_assets.models.training import next_session
from stock_assets.partitions import month_key, range_tags, trading_day_partitions
from stock_assets.resources.kafka import BrokerUnavailable, KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets.silver.adjusted_daily_bars import ADJUSTED_CHECKS, adjusted_daily_bars
from stock_assets.silver.corporate_actions import CORPORATE_ACTIONS_CHECKS, corporate_actions
from stock_assets.silver.daily_bars import DAILY_BARS_CHECKS, daily_bars, silver_partition_for
from stock_assets.silver.data_quality import data_quality
from stock_assets.table_assets import table_key

# Built together, in one run per range of sessions (the streaming path): bars, the events they
# reveal, the adjusted view and the quality report, the sessions' features and their Feast
# snapshot and online rows, then the champion's predictions and signals (skipped while no
# champion exists); blocking checks on each stop what follows when they fail.
BAR_CHAIN_ASSETS = [
    daily_bars,
    corporate_actions,
    adjusted_daily_bars,
    data_quality,
    daily_features,
    *FEAST_ASSETS,
    predictions,
    signals,
]
BAR_CHAIN_CHECKS = [
    DAILY_BARS_CHECKS,
    CORPORATE_ACTIONS_CHECKS,
    ADJUSTED_CHECKS,
    DAILY_FEATURES_CHECKS,
    PREDICTIONS_CHECKS,
]
BAR_CHAIN_TAG = "stock/bar_chain"  # dagster.yaml runs one tagged run at a time
MAX_RECORDS_PER_RUN = 500_000
# trading days between touched dates before a range splits (``STOCK_MAX_SESSION_GAP_PER_RUN``:
# the local stack loads a replayed history with missing sessions in one run)
MAX_GAP_WITHIN_ONE_SILVER_RUN = int(os.environ.get("STOCK_MAX_SESSION_GAP_PER_RUN", "5"))
ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


# One process per step costs a Python start and a Dagster import each (8-25 s on two busy cores):
# short runs execute in the run worker itself; long catch-up ranges keep step parallelism
# (``STOCK_IN_PROCESS_MAX_SESSIONS``: the local stack runs any range in process on its 2 cores).
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
IN_PROCESS_MAX_SESSIONS = int(os.environ.get("STOCK_IN_PROCESS_MAX_SESSIONS", "5"))


def _active_runs(instance: dg.DagsterInstance, job_name: str) -> list[dg.DagsterRun]:
    return instance.get_runs(
        filters=dg.RunsFilter(job_name=job_name, statuses=ACTIVE_STATUSES), limit=5
    )


def build_kafka_ingestion(contract: TopicContract, topic: Callable[[], str]):
    """The ingest job for a contract's bronze and quarantine tables, and the sensor driving it.

    The sensor requests one ingest run for everything between bronze and the topic end.
    Progress comes from bronze's Delta transactions, not from the cursor, so a failed run leaves
    its range to the next request instead of a gap. One ingest run at a time keeps it simple.
    """
    job = dg.define_asset_job(
        f"ingest_{contract.name}",
        selection=dg.AssetSelection.assets(
            table_key(contract.bronze), table_key(contract.quarantine)
        ),
        description=f"Kafka offset ranges -> {contract.bronze.path} "
        f"(launched by {contract.name}_kafka_sensor).",
        executor_def=dg.multi_or_in_process_executor,  # honours IN_PROCESS under k8s too
    )

    @dg.sensor(
        name=f"{contract.name}_kafka_sensor",
        job=job,
        minimum_interval_seconds=10,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def kafka_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource, lake: LakeResource):
        name = topic()
        cursor = json.loads(context.cursor) if context.cursor else {"generation": 0}
        try:
            ends = kafka.end_offsets(name)
        except BrokerUnavailable as exc:
            return dg.SkipReason(f"{exc}; will retry next tick")
        active = _active_runs(context.instance, job.name)
        if active:
            return dg.SkipReason(f"ingest run {active[0].run_id} is still in progress")
        stored = stored_offsets(lake, contract, name, ends)
        ranges = {
            p: (stored[p] + 1, min(end, stored[p] + 1 + MAX_RECORDS_PER_RUN))
            for p, end in sorted(ends.items())
            if stored[p] + 1 < end
        }
        if not ranges:
            return dg.SkipReason(
                f"bronze holds every offset of {name}: {dict(sorted(ends.items()))}"
            )
        generation = cursor["generation"] + 1
        spans = ",".join(f"{p}:{s}-{e}" for p, (s, e) in ranges.items())
        context.update_cursor(json.dumps({"generation": generation, "ends": ends}))
        offset_ranges = [{"partition": p, "start": s, "end": e} for p, (s, e) in ranges.items()]
        return dg.RunRequest(
            run_key=f"{name}@{generation}/{spans}",
            run_config={  # one step: nothing to run in parallel
                "ops": {contract.name: {"config": {"topic": name, "ranges": offset_ranges}}},
                **IN_PROCESS,
            },
            tags={"stock/topic": name, "stock/offsets": spans[:200]},
        )

    return job, kafka_sensor


ingest_market_bars_job, market_bars_kafka_sensor = build_kafka_ingestion(
    MARKET_BARS, config.market_bars_topic
)
ingest_news_articles_job, news_articles_kafka_sensor = build_kafka_ingestion(
    NEWS_ARTICLES, config.news_topic
)
bar_chain_job = dg.define_asset_job(
    "build_from_new_bars",
    selection=dg.AssetSelection.assets(*BAR_CHAIN_ASSETS),
    description="Silver bars, corporate actions, adjusted bars, quality, features, the Feast "
    "store, predictions and signals for the sessions new bars touched (launched by "
    "daily_bars_sensor).",
    # its own executor, so that the sensor's IN_PROCESS run config holds where the code
    # location's default is k8s_job_executor (a pod per step would cost more than the steps)
    executor_def=dg.multi_or_in_process_executor,
)


def _owner(day: str) -> str | None:
    try:
        return silver_partition_for(dt.date.fromisoformat(day))
    except ValueError:  # not a date at all: reported as unknown, never fails the tick
        return None


def partition_ranges(dates: list[str], max_gap: int = MAX_GAP_WITHIN_ONE_SILVER_RUN):
    """Group the session partitions owning these bar dates into ranges of sessions.

    A bar dated on a weekend or holiday maps to the next session, whose run reads it and sets it
    aside in the silver quarantine; dates no partition owns are returned separately.
    """
    all_keys = trading_day_partitions().get_partition_keys()
    index = {key: i for i, key in enumerate(all_keys)}
    owners = {d: _owner(d) for d in dates}
    unknown = sorted(d for d, key in owners.items() if key not in index)
    known = sorted({key for key in owners.values() if key in index}, key=index.__getitem__)
    ranges: list[tuple[str, str]] = []
    for key in known:
        if ranges and index[key] - index[ranges[-1][1]] <= max_gap:
            ranges[-1] = (ranges[-1][0], key)
        else:
            ranges.append((key, key))
    return ranges, unknown


@dg.sensor(
    job=bar_chain_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def daily_bars_sensor(context: dg.SensorEvaluationContext):
    """Rebuild market silver for every bar date a new bronze materialization touched."""
    result = context.instance.fetch_materializations(
        table_key(tables.BRONZE_MARKET_BARS), limit=200, cursor=context.cursor, ascending=True
    )
    if not result.records:
        return dg.SkipReason("no new bronze materializations")
    dates: set[str] = set()
    for record in result.records:
        metadata = record.asset_materialization.metadata
        if "event_dates" in metadata:
            dates.update(metadata["event_dates"].value)
    ranges, unknown = partition_ranges(sorted(dates))
    index = {key: i for i, key in enumerate(trading_day_partitions().get_partition_keys())}
    ranges = [(start, end, index[end] - index[start] + 1) for start, end in ranges]
    if unknown:
        context.log.warning(
            f"{len(unknown)} bar dates have no session partition to land in: {unknown[:20]}"
        )
    context.update_cursor(result.cursor)
    last_id = result.records[-1].storage_id
    return [
        dg.RunRequest(
            run_key=f"market_silver@{last_id}/{start}..{end}",
            asset_selection=[key for asset in BAR_CHAIN_ASSETS for key in asset.keys],
            asset_check_keys=[
                *(
                    dg.AssetCheckKey(suite.asset_key, rule.name)
                    for suite in BAR_CHAIN_CHECKS
                    for rule in suite.rules
                ),
                *(key for asset in BAR_CHAIN_ASSETS for key in asset.check_keys),
            ],
            tags={**range_tags(start, end), BAR_CHAIN_TAG: "market"},  # one at a time
            run_config=IN_PROCESS if sessions <= IN_PROCESS_MAX_SESSIONS else {},
        )
        for start, end, sessions in ranges
    ]


@dg.asset_sensor(
    asset_key=DRIFT_KEY,
    job_name="model_refit_job",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def drift_refit_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """A drift report asking for a refit becomes one refit run decided at its newest session.

    The refit learns what was known at that session's close (its data cut is the last session
    whose label is known then) and serves from the next session, so drift inside a month
    reaches the model the next day, not at the next month's refit. It runs the challenger
    partition of the month it serves in; the champion's shadow evidence reads the same cut.
    """
    metadata = asset_event.asset_materialization.metadata
    if not metadata.get("refit_requested") or not metadata["refit_requested"].value:
        return dg.SkipReason("the latest drift report asks for no refit")
    if "decision_session" in metadata:
        decided = metadata["decision_session"].value
    else:  # reports written before the decision was recorded: their newest session
        decided = metadata["recent_window"].value.split("..")[-1]
    try:
        decision = dt.date.fromisoformat(decided)
        serves_from = next_session(decision)
    except ValueError as exc:
        return dg.SkipReason(f"drift report's decision session {decided!r} is unusable: {exc}")
    if not is_trading_day(decision):
        return dg.SkipReason(f"drift report's decision {decision} is not an NYSE session")
    month = month_key(serves_from)
    if not model_months.has_partition_key(month):
        return dg.SkipReason(f"{month} is not a refit month yet")
    return dg.RunRequest(
        run_key=f"drift-refit@{decision}/{asset_event.timestamp}",
        partition_key=month,
        run_config={
            "ops": {
                "models__challenger": {"config": {"decision_session": decision.isoformat()}},
                "models__champion": {"config": {"decision_date": serves_from.isoformat()}},
            }
        },
        tags={"stock/refit": "drift", "stock/decision_session": decision.isoformat()},
    )
