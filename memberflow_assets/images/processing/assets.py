"""Images: the hourly processing partition (thumbnails + metadata, with their checks) and the BI views.

Thin: one image is `one_image`, the incremental hour is `hour_partition`, the registry writes are
`registry`, the views are `bi` (refreshed by their automation condition). Materialisation and check
metadata hold counts and bytes only — no image ids, clients, hashes or anything else about an image or a
person: check results outlive the runs that retention deletes (Dagster keeps them in a table of their
own). Offending ids go to the run's log, which is deleted with the run.
"""

import dagster as dg

from memberflow_assets import column_schemas
from memberflow_assets.automation import AFTER_UPSTREAM_OR_CODE_UPDATES
from memberflow_assets.images import GROUP, registry
from memberflow_assets.images.ingestion.landing import SidecarRepair
from memberflow_assets.images.layout import METADATA_PREFIX, metadata_relpath, processed_dir
from memberflow_assets.images.processing import bi, hour_partition
from memberflow_assets.images.processing.partitions import image_hours
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.warehouse import versions
from memberflow_assets.warehouse.resources import Warehouse
from memberflow_assets.zones import Zones

SAMPLE_SIZE = 20  # offending image ids/paths logged when a check fails


class ImageProcessingConfig(dg.Config):
    workers: int = 0  # processes decoding images; 0 = one per available CPU core
    reprocess: bool = False  # process every landed image of the hour again, not only new ones


@dg.multi_asset(
    partitions_def=image_hours,
    group_name=GROUP,
    specs=[
        dg.AssetSpec(
            "image_thumbnails",
            kinds={"jpeg"},
            description="`images/processed/<hour>/<image_id>.jpg`: upright thumbnails (256 px long side) "
            "without EXIF or XMP, one per processed image of the hour.",
        ),
        dg.AssetSpec(
            "image_metadata",
            deps=["image_thumbnails"],
            kinds={"parquet"},
            description="`images/metadata/<hour>.parquet`: one row per landed image of the hour (processed "
            "or rejected with its error); also updates images.registry.",
            metadata={column_schemas.COLUMN_SCHEMA: column_schemas.from_arrow(hour_partition.METADATA_SCHEMA)},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "one_row_per_landed_image",
            asset="image_metadata",
            blocking=True,
            description="Every image landed in the hour (with its sidecar) has exactly one metadata row, "
            "and every row belongs to a landed image.",
        ),
        dg.AssetCheckSpec(
            "no_location_in_outputs",
            asset="image_thumbnails",
            blocking=True,
            description="No file under `images/processed/<hour>/` carries GPS (EXIF or XMP) or any EXIF at all.",
        ),
        dg.AssetCheckSpec(
            "thumbnails_decode",
            asset="image_thumbnails",
            blocking=True,
            description="Every processed image has its thumbnail, and every thumbnail decodes and is "
            "at most 256 px on its long side.",
        ),
    ],
)
def hourly_images(
    context: dg.AssetExecutionContext,
    config: ImageProcessingConfig,
    zones: dg.ResourceParam[Zones],
    sales_db: SalesDatabase,
):
    key = context.partition_key
    with sales_db.connect() as connection:
        registry.lock_hour(connection, key)  # one run per hour at a time; released at commit
        repair = SidecarRepair(connection, zones)
        update = hour_partition.update_hour(
            zones, key, workers=config.workers or None, reprocess=config.reprocess, repair=repair
        )
        registry_updated, registry_missing = registry.mark_processed(connection, update.table.to_pylist())
    summary = update.summary()
    if registry_missing:
        context.log.warning(f"{len(registry_missing)} image(s) have no images.registry row (yet)")
    context.log.info(
        f"{key}: {summary['new_images']} new image(s) ({summary['new_rejected']} rejected); "
        f"{summary['images']} in the partition"
    )

    yield dg.MaterializeResult(
        asset_key="image_thumbnails",
        metadata={
            "path": dg.MetadataValue.path(zones.url(processed_dir(key))),
            "thumbnails": summary["processed"],
            "new_thumbnails": summary["new_processed"],
            "thumbnail_bytes": summary["thumbnail_bytes"],
        },
    )
    yield dg.MaterializeResult(
        asset_key="image_metadata",
        metadata={
            "path": dg.MetadataValue.path(zones.url(metadata_relpath(key))),
            **{name: value for name, value in summary.items() if name != "rejections_by_error"},
            "rejections_by_error": dg.MetadataValue.json(summary["rejections_by_error"]),
            "registry_rows_updated": registry_updated,
            "registry_rows_missing": len(registry_missing),
        },
    )

    coverage = hour_partition.row_coverage(zones, key, update.landed_at_start)
    _log_sample(
        context, "without a row, duplicated or orphaned", coverage.missing + coverage.duplicates + coverage.orphans
    )
    yield dg.AssetCheckResult(
        check_name="one_row_per_landed_image",
        asset_key="image_metadata",
        passed=coverage.passed,
        metadata={
            "landed": coverage.landed,
            "rows": coverage.rows,
            "missing": len(coverage.missing),
            "duplicates": len(coverage.duplicates),
            "orphans": len(coverage.orphans),
            "arrived_during_run": coverage.arrived_during_run,
        },
    )
    audit = hour_partition.audit_thumbnails(zones, key, update.table)
    _log_sample(context, "carrying GPS or EXIF", audit.with_location + audit.with_exif)
    yield dg.AssetCheckResult(
        check_name="no_location_in_outputs",
        asset_key="image_thumbnails",
        passed=not (audit.with_location or audit.with_exif),
        metadata={
            "files_inspected": audit.files,
            "with_gps": len(audit.with_location),
            "with_exif": len(audit.with_exif),
        },
    )
    _log_sample(context, "undecodable, missing or oversized", audit.undecodable + audit.missing + audit.oversized)
    yield dg.AssetCheckResult(
        check_name="thumbnails_decode",
        asset_key="image_thumbnails",
        passed=not (audit.undecodable or audit.missing or audit.oversized),
        metadata={
            "files_inspected": audit.files,
            "undecodable": len(audit.undecodable),
            "missing": len(audit.missing),
            "oversized": len(audit.oversized),
        },
    )


def _log_sample(context: dg.AssetExecutionContext, problem: str, items: list[str]) -> None:
    if items:
        context.log.error(f"{len(items)} {problem}, e.g.: {', '.join(items[:SAMPLE_SIZE])}")


@dg.asset(
    # what the views read: the hours' metadata files, which processing writes and the retention purge deletes
    deps=["image_metadata", "image_retention_audit"],
    group_name=GROUP,
    kinds={"duckdb"},
    code_version=bi.views_code_version(),
    automation_condition=AFTER_UPSTREAM_OR_CODE_UPDATES,
    description="Views in the warehouse's bi schema over images/metadata/*.parquet (not copies): "
    + ", ".join(f"bi.{view}" for view in bi.IMAGE_VIEWS)
    + ". Purged hours disappear with their files. Every published warehouse version has them; materialised "
    "by its automation condition when its SQL (code version) changes and after each processed hour or purge, "
    "it publishes a new version only when the published one's views are not the current ones (the first or "
    "the last metadata file, another SQL, another place the files are read from).",
)
def image_bi_views(
    context: dg.AssetExecutionContext, zones: dg.ResourceParam[Zones], warehouse: Warehouse
) -> dg.MaterializeResult:
    path = warehouse.path
    republished = not versions.image_views_current(path, zones)
    if republished:
        versions.republish_views(path, zones)
    else:
        context.log.info("the published warehouse has the current image views: no new version")
    metadata = {
        "republished": republished,
        "reads": dg.MetadataValue.path(zones.url(METADATA_PREFIX)),
        "views_version": versions.views_version(zones, "images"),
    }
    published = versions.current_version(path)
    if published is None:  # nothing to show yet: no warehouse and no image
        return dg.MaterializeResult(metadata=metadata)
    with warehouse.open_read_only(zones) as connection:
        counts = {view: connection.execute(f"SELECT count(*) FROM bi.{view}").fetchone()[0] for view in bi.IMAGE_VIEWS}
    return dg.MaterializeResult(
        metadata={
            "warehouse_version": dg.MetadataValue.path(published),
            **metadata,
            **{f"rows_{view}": rows for view, rows in counts.items()},
        }
    )
