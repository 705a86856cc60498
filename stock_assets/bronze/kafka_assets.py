"""The Dagster face of the exactly-once Kafka ingest: one bronze + quarantine pair per contract."""

import dagster as dg
from pydantic import Field

from stock_assets.bronze.contract import TopicContract
from stock_assets.bronze.ingest import IngestReport, ingest_range
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


def ingest_pool(contract: TopicContract) -> str:
    """The concurrency pool of a stream's ingest: dagster.yaml limits each pool to one at a time.

    The fenced commit already makes concurrent ingests safe; the pool keeps them from doing the
    same work twice when runs come from the sensor, a retry and the UI at once.
    """
    return f"kafka_ingest_{contract.name}"


def report_metadata(report: IngestReport) -> dict:
    dates = report.event_dates
    return {
        "topic": report.topic,
        "offset_ranges": {str(p): f"{s}..{e}" for p, (s, e) in sorted(report.requested.items())},
        "last_offsets": {str(p): o for p, o in sorted(report.last_offsets.items())},
        "rows_stored": report.stored,
        "rows_quarantined": report.quarantined,
        "rows_skipped_already_stored": report.skipped_already_stored,
        "rows_stored_by_another_writer": report.stored_by_another_writer,
        "delta_version": report.bronze_version if report.bronze_version is not None else -1,
        "event_dates": dg.MetadataValue.json([d.isoformat() for d in dates]),
        "first_event_date": dates[0].isoformat() if dates else "",
        "last_event_date": dates[-1].isoformat() if dates else "",
        "seconds": round(report.seconds, 2),
    }


def build_ingest_assets(contract: TopicContract, stream_module: str) -> dg.AssetsDefinition:
    """A bronze table and its quarantine, materialized together from one offset range.

    ``stream_module`` (the calling module's ``__file__``) is where the UI's code link points
    first: the stream's contract, not this factory.
    """
    bronze_key = dg.AssetKey(contract.bronze.key_path)
    quarantine_key = dg.AssetKey(contract.quarantine.key_path)
    source = {
        "dagster/code_references": dg.CodeReferencesMetadataValue(
            code_references=[dg.LocalFileCodeReference(file_path=stream_module, line_number=1)]
        )
    }

    @dg.multi_asset(
        name=contract.name,
        specs=[
            dg.AssetSpec(
                bronze_key,
                description=contract.bronze.description,
                group_name=INGESTION_GROUP,
                kinds={"kafka", "delta"},
                metadata={"delta_path": contract.bronze.path, **source},
            ),
            dg.AssetSpec(
                quarantine_key,
                description=contract.quarantine.description,
                group_name=INGESTION_GROUP,
                kinds={"kafka", "delta"},
                metadata={"delta_path": contract.quarantine.path, **source},
                skippable=True,
            ),
        ],
        pool=ingest_pool(contract),
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
