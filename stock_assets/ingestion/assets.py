"""Bronze assets: the Dagster face of the exactly-once Kafka ingest, one pair per topic contract."""

import dagster as dg
from pydantic import Field

from stock_assets.ingestion.contract import TopicContract
from stock_assets.ingestion.ingest import IngestReport, ingest_range
from stock_assets.ingestion.messages import MARKET_BARS
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource

INGESTION_GROUP = "ingestion"


class OffsetRange(dg.Config):
    partition: int
    start: int = Field(description="first offset to read (inclusive)")
    end: int = Field(description="offset to stop before (exclusive)")


class IngestConfig(dg.Config):
    topic: str = Field(description="Kafka topic to read")
    ranges: list[OffsetRange] = Field(description="offset ranges, usually set by the sensor")
    timeout_s: float = 300.0


def table_key(table: str) -> dg.AssetKey:
    """Asset keys mirror Delta paths: ``bronze/market_bars`` -> ``["bronze", "market_bars"]``."""
    return dg.AssetKey(table.split("/"))


def report_metadata(report: IngestReport) -> dict:
    dates = report.event_dates
    return {
        "topic": report.topic,
        "offset_ranges": {str(p): f"{s}..{e}" for p, (s, e) in sorted(report.requested.items())},
        "last_offsets": {str(p): o for p, o in sorted(report.last_offsets.items())},
        "rows_stored": report.stored,
        "rows_quarantined": report.quarantined,
        "rows_skipped_already_stored": report.skipped_already_stored,
        "delta_version": report.bronze_version if report.bronze_version is not None else -1,
        "event_dates": dg.MetadataValue.json([d.isoformat() for d in dates]),
        "first_event_date": dates[0].isoformat() if dates else "",
        "last_event_date": dates[-1].isoformat() if dates else "",
        "seconds": round(report.seconds, 2),
    }


def build_ingest_assets(contract: TopicContract, what: str) -> dg.AssetsDefinition:
    """A bronze table and its quarantine, materialized together from one offset range."""
    bronze_key, quarantine_key = (
        table_key(contract.bronze_table),
        table_key(contract.quarantine_table),
    )

    @dg.multi_asset(
        name=contract.name,
        specs=[
            dg.AssetSpec(
                bronze_key,
                description=f"Every valid {what} from Kafka, with topic/partition/offset.",
                group_name=INGESTION_GROUP,
                kinds={"kafka", "delta"},
                metadata={"delta_path": contract.bronze_table},
            ),
            dg.AssetSpec(
                quarantine_key,
                description=f"Rejected {what} messages: raw payload, offset and reason.",
                group_name=INGESTION_GROUP,
                kinds={"kafka", "delta"},
                metadata={"delta_path": contract.quarantine_table},
                skippable=True,
            ),
        ],
    )
    def ingest(config: IngestConfig, kafka: KafkaResource, lake: LakeResource):
        """Read exactly the configured offset ranges and append them to bronze, exactly once."""
        ranges = {r.partition: (r.start, r.end) for r in config.ranges}
        report = ingest_range(kafka, lake, contract, config.topic, ranges, config.timeout_s)
        yield dg.MaterializeResult(asset_key=bronze_key, metadata=report_metadata(report))
        if report.quarantined:
            yield dg.MaterializeResult(
                asset_key=quarantine_key,
                metadata={"rows_quarantined": report.quarantined, "topic": report.topic},
            )

    return ingest


market_bars = build_ingest_assets(MARKET_BARS, "market bar")
BRONZE_BARS_KEY = table_key(MARKET_BARS.bronze_table)
