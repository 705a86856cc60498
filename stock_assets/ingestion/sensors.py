"""Sensors that turn new Kafka offsets into ingest runs and new bar dates into silver runs.

Both are bounded (a tick never waits on Kafka for more than a few seconds), always move their
cursor forward, and give every RunRequest a run_key so a re-evaluated tick cannot double-launch.
"""

import json
from collections.abc import Callable

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets import config
from stock_assets.ingestion.assets import BRONZE_BARS_KEY, table_key
from stock_assets.ingestion.contract import TopicContract
from stock_assets.ingestion.ingest import stored_offsets
from stock_assets.ingestion.messages import MARKET_BARS
from stock_assets.market import MARKET_SILVER_ASSETS, MARKET_SILVER_CHECKS
from stock_assets.market.calendar import trading_day_partitions
from stock_assets.resources.kafka import BrokerUnavailable, KafkaResource
from stock_assets.resources.lake import LakeResource

MAX_RECORDS_PER_RUN = 500_000
MAX_GAP_WITHIN_ONE_SILVER_RUN = 5  # trading days between touched dates before a range splits
ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


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
            table_key(contract.bronze_table), table_key(contract.quarantine_table)
        ),
        description=f"Kafka offset ranges -> {contract.bronze_table} "
        f"(launched by {contract.name}_kafka_sensor).",
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
            run_config={
                "ops": {contract.name: {"config": {"topic": name, "ranges": offset_ranges}}}
            },
            tags={"stock/topic": name, "stock/offsets": spans[:200]},
        )

    return job, kafka_sensor


ingest_market_bars_job, market_bars_kafka_sensor = build_kafka_ingestion(
    MARKET_BARS, config.market_bars_topic
)
market_silver_job = dg.define_asset_job(
    "build_market_silver",
    selection=dg.AssetSelection.assets(*MARKET_SILVER_ASSETS),
    description="Silver bars, corporate actions, adjusted bars and quality for new trading days.",
)


def partition_ranges(dates: list[str], max_gap: int = MAX_GAP_WITHIN_ONE_SILVER_RUN):
    """Group trading-day keys into contiguous ranges; unknown dates are returned separately."""
    partitions = trading_day_partitions()
    all_keys = partitions.get_partition_keys()
    index = {key: i for i, key in enumerate(all_keys)}
    known = sorted({d for d in dates if d in index}, key=index.__getitem__)
    unknown = sorted(set(dates) - set(known))
    ranges: list[tuple[str, str]] = []
    for key in known:
        if ranges and index[key] - index[ranges[-1][1]] <= max_gap:
            ranges[-1] = (ranges[-1][0], key)
        else:
            ranges.append((key, key))
    return ranges, unknown


@dg.sensor(
    job=market_silver_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def daily_bars_sensor(context: dg.SensorEvaluationContext):
    """Rebuild market silver for every bar date a new bronze materialization touched."""
    result = context.instance.fetch_materializations(
        BRONZE_BARS_KEY, limit=200, cursor=context.cursor, ascending=True
    )
    if not result.records:
        return dg.SkipReason("no new bronze materializations")
    dates: set[str] = set()
    for record in result.records:
        metadata = record.asset_materialization.metadata
        if "event_dates" in metadata:
            dates.update(metadata["event_dates"].value)
    ranges, unknown = partition_ranges(sorted(dates))
    if unknown:
        context.log.warning(
            f"{len(unknown)} bar dates are not NYSE trading days and get no silver partition: "
            f"{unknown[:20]}"
        )
    context.update_cursor(result.cursor)
    last_id = result.records[-1].storage_id
    return [
        dg.RunRequest(
            run_key=f"market_silver@{last_id}/{start}..{end}",
            asset_selection=[key for asset in MARKET_SILVER_ASSETS for key in asset.keys],
            asset_check_keys=[key for check in MARKET_SILVER_CHECKS for key in check.check_keys],
            tags={ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end},
        )
        for start, end in ranges
    ]
