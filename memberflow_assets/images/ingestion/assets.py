"""Kafka ingestion in Dagster: one run lands one bounded batch of explicit offset ranges.

Each run materialises `kafka_image_uploads` with what it did (messages, landed, duplicates,
quarantined by reason, bytes, the offset ranges, the committed offsets), so the asset's history in
the UI is the ingestion's progress. The sensor (sensors.py) decides the ranges; the work is
`kafka_ingest.KafkaIngestor`. Why this design: docs/images_ingestion.md, "Kafka in Dagster".
"""

import json

import dagster as dg

from memberflow_assets.images import GROUP
from memberflow_assets.images.ingestion.kafka_ingest import IngestStats, OffsetRange
from memberflow_assets.images.ingestion.resources import KafkaImagesResource
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.zones import Zones


class OffsetRangeConfig(dg.Config):
    partition: int
    start: int
    end: int  # exclusive


class KafkaBatchConfig(dg.Config):
    # Empty: every partition from its committed offset (a manual materialisation from the UI).
    ranges: list[OffsetRangeConfig] = []


def _metadata(ranges: list[OffsetRange], stats: IngestStats, temporaries_removed: int) -> dict:
    return {
        "messages": stats.messages,
        "landed": stats.landed,
        "duplicates": stats.duplicates,
        "quarantined": stats.quarantined,
        "quarantine_reasons": dg.MetadataValue.json(dict(stats.reasons)),
        "bytes_landed": stats.bytes_landed,
        "offset_ranges": dg.MetadataValue.json([[r.partition, r.start, r.end] for r in ranges]),
        "committed_offsets": dg.MetadataValue.json({str(p): offset for p, offset in sorted(stats.committed.items())}),
        "caught_up": stats.caught_up,  # False: a range stopped at its bound; the sensor asks for the next batch
        "complete": stats.complete,
        "temporary_files_removed": temporaries_removed,  # left by writes killed before they finished
    }


@dg.asset(
    group_name=GROUP,
    kinds={"kafka"},
    description="Images landed from the Kafka image topic into landing/images/ (one batch of offset ranges per run).",
)
def kafka_image_uploads(
    context: dg.AssetExecutionContext,
    config: KafkaBatchConfig,
    kafka_images: KafkaImagesResource,
    zones: dg.ResourceParam[Zones],
    sales_db: SalesDatabase,
) -> dg.MaterializeResult:
    ranges = [OffsetRange(r.partition, r.start, r.end) for r in config.ranges]
    ranges = ranges or kafka_images.plan()
    context.log.info(f"offset ranges (partition, start, end): {[(r.partition, r.start, r.end) for r in ranges]}")
    with kafka_images.ingestor(zones, sales_db.get_dsn()) as ingestor:
        stats = ingestor.ingest(ranges)
    metadata = _metadata(ranges, stats, ingestor.lander.temporaries_removed)
    if not stats.complete:
        # What was handled is committed; the next run starts from there.
        raise dg.Failure(description="the batch stopped before the end of its ranges", metadata=metadata)
    context.log.info(json.dumps({k: v for k, v in metadata.items() if isinstance(v, int | bool)}))
    return dg.MaterializeResult(metadata=metadata)
