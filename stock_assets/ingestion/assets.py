"""Bronze market bars: the Dagster face of the exactly-once Kafka ingest."""

import dagster as dg
from pydantic import Field

from stock_assets import config
from stock_assets.ingestion.ingest import BRONZE_BARS, QUARANTINE_BARS, IngestReport, ingest_range
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource

INGESTION_GROUP = "ingestion"
BRONZE_BARS_KEY = dg.AssetKey(["bronze", "market_bars"])
QUARANTINE_KEY = dg.AssetKey(["bronze", "market_bars_quarantine"])


class OffsetRange(dg.Config):
    partition: int
    start: int = Field(description="first offset to read (inclusive)")
    end: int = Field(description="offset to stop before (exclusive)")


class IngestConfig(dg.Config):
    topic: str = Field(default_factory=config.market_bars_topic)
    ranges: list[OffsetRange] = Field(description="offset ranges, usually set by the sensor")
    timeout_s: float = 300.0


def report_metadata(report: IngestReport) -> dict:
    dates = report.bar_dates
    return {
        "topic": report.topic,
        "offset_ranges": {str(p): f"{s}..{e}" for p, (s, e) in sorted(report.requested.items())},
        "last_offsets": {str(p): o for p, o in sorted(report.last_offsets.items())},
        "rows_stored": report.stored,
        "rows_quarantined": report.quarantined,
        "rows_skipped_already_stored": report.skipped_already_stored,
        "delta_version": report.bronze_version if report.bronze_version is not None else -1,
        "bar_dates": dg.MetadataValue.json([d.isoformat() for d in dates]),
        "first_bar_date": dates[0].isoformat() if dates else "",
        "last_bar_date": dates[-1].isoformat() if dates else "",
        "seconds": round(report.seconds, 2),
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            BRONZE_BARS_KEY,
            description=f"Every valid bar from Kafka with topic/partition/offset ({BRONZE_BARS}).",
            group_name=INGESTION_GROUP,
            kinds={"kafka", "delta"},
            metadata={"delta_path": BRONZE_BARS},
        ),
        dg.AssetSpec(
            QUARANTINE_KEY,
            description=f"Rejected messages: raw payload, offset and reason ({QUARANTINE_BARS}).",
            group_name=INGESTION_GROUP,
            kinds={"kafka", "delta"},
            metadata={"delta_path": QUARANTINE_BARS},
            skippable=True,
        ),
    ],
)
def market_bars(config: IngestConfig, kafka: KafkaResource, lake: LakeResource):
    """Read exactly the configured offset ranges and append them to bronze, exactly once."""
    ranges = {r.partition: (r.start, r.end) for r in config.ranges}
    report = ingest_range(kafka, lake, config.topic, ranges, timeout_s=config.timeout_s)
    yield dg.MaterializeResult(asset_key=BRONZE_BARS_KEY, metadata=report_metadata(report))
    if report.quarantined:
        yield dg.MaterializeResult(
            asset_key=QUARANTINE_KEY,
            metadata={"rows_quarantined": report.quarantined, "topic": report.topic},
        )
