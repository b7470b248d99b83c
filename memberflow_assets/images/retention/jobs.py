"""Images retention in Dagster: the purge op, job and hourly schedule, its audit asset, Dagster's records of
image hours, and the hourly compliance check that nothing outlived the purge."""

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg

from memberflow_assets.domains import domain_tags
from memberflow_assets.images import GROUP
from memberflow_assets.images.processing.jobs import IMAGE_ASSET_KEYS, image_processing_job
from memberflow_assets.images.processing.partitions import image_hours
from memberflow_assets.images.retention import compliance, expiry
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.warehouse.resources import Warehouse
from memberflow_assets.zones import Zones

PARTITION_TAG = "dagster/partition"


class DagsterPartitionRecords:
    """Dagster's records of image hours, for retention: the runs that materialised (or tried to
    materialise) a partition, their events and compute logs, and the dynamic partition key.

    OSS Dagster cannot wipe single partitions of an asset; deleting the runs that materialised them
    is what removes the materialisations (then the partition shows as never materialised).
    """

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance

    def expired_keys(self, first_kept_key: str) -> set[str]:
        return {key for key in self.instance.get_dynamic_partitions(image_hours.name) if key < first_kept_key}

    def runs_of(self, keys: list[str]) -> dict[str, set[str]]:
        """Run ids per partition key: runs that materialised it, and image runs tagged with it."""
        runs: dict[str, set[str]] = {key: set() for key in keys}
        for asset_key in IMAGE_ASSET_KEYS:
            cursor = None
            while True:
                page = self.instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=keys), limit=1000, cursor=cursor
                )
                for record in page.records:
                    runs[record.partition_key].add(record.run_id)
                if not page.has_more:
                    break
                cursor = page.cursor
        for record in self.instance.get_run_records(dg.RunsFilter(tags={PARTITION_TAG: keys})):
            run = record.dagster_run
            # the same key string could be another domain's partition: only image runs go
            if run.job_name == image_processing_job.name or set(run.asset_selection or ()) & set(IMAGE_ASSET_KEYS):
                runs[run.tags[PARTITION_TAG]].add(run.run_id)
        return runs

    def forget(self, runs: dict[str, set[str]]) -> dict[str, int]:
        deleted: dict[str, int] = {}
        for key, run_ids in runs.items():
            deleted[key], unfinished = 0, 0
            for run_id in sorted(run_ids):
                run = self.instance.get_run_by_id(run_id)
                if run is not None and not run.is_finished:
                    unfinished += 1  # never pull a run out from under itself; the next purge gets it
                    continue
                self.instance.delete_run(run_id)
                # the run's captured stdout/stderr; a log manager that cannot delete keeps its own retention
                with contextlib.suppress(NotImplementedError):
                    self.instance.compute_log_manager.delete_logs(prefix=[run_id])
                deleted[key] += 1
            if not unfinished:
                self.instance.delete_dynamic_partition(image_hours.name, key)
        self.instance.wipe_asset_cached_status(list(IMAGE_ASSET_KEYS))
        return deleted

    def existing(self, run_ids: list[str]) -> set[str]:
        return {record.dagster_run.run_id for record in self.instance.get_run_records(dg.RunsFilter(run_ids=run_ids))}


# Written by the image_retention job (outside Dagster's asset graph: an op job with its config and
# schedule), which reports each run as a materialisation of it.
image_retention_audit = dg.AssetSpec(
    "image_retention_audit",
    group_name=GROUP,
    kinds={"postgres"},
    description="images.retention_runs (one row per image_retention run, also when nothing was due) and "
    "images.retention_purges (one row per purged hour): counts only. Each run of image_retention records "
    "a materialisation with its totals.",
    # hourly runs: two hours without one means the purge has stopped (the UI shows it overdue)
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2)),
)


class RetentionConfig(dg.Config):
    as_of: str | None = None  # ISO 8601 with a time zone; unset = now. The schedule passes its tick time.


@dg.op(
    description="Purges every image hour that ended more than 7 days before as_of: files in every zone, "
    "registry rows (-> tombstones), Dagster runs and partition keys; audit in images.retention_runs/_purges."
)
def purge_expired_images(
    context: dg.OpExecutionContext, config: RetentionConfig, zones: dg.ResourceParam[Zones], sales_db: SalesDatabase
) -> dg.Output[None]:
    as_of = datetime.fromisoformat(config.as_of) if config.as_of else datetime.now(UTC)
    trigger = "schedule" if context.run.tags.get("dagster/schedule_name") else "dagster"
    result = expiry.run_retention(
        zones,
        sales_db.get_dsn(),
        as_of,
        retention_run_id=context.run_id or f"dagster-{uuid.uuid4()}",
        trigger=trigger,
        records=DagsterPartitionRecords(context.instance),
        log=context.log.info,
    )
    context.log.info(f"as_of {result.as_of.isoformat()}: kept {result.first_kept_key} and later; {result.totals}")
    context.log_event(dg.AssetMaterialization(image_retention_audit.key, metadata=result.summary()))
    return dg.Output(None, metadata=result.summary())


@dg.job(
    name="image_retention",
    tags=domain_tags(GROUP),
    description="The 7-day image retention purge (config: as_of). Idempotent; never touches younger hours.",
)
def image_retention_job():
    purge_expired_images()


@dg.schedule(
    job=image_retention_job,
    cron_schedule="1 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly, one minute past the hour: an hour is purged within about an hour of turning 7 days old.",
)
def image_retention_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    as_of = context.scheduled_execution_time.astimezone(UTC).isoformat()
    return dg.RunRequest(run_config={"ops": {"purge_expired_images": {"config": {"as_of": as_of}}}})


@dg.asset_check(
    asset=image_retention_audit.key,
    description="The 7-day promise: no store holds image data of an hour that ended more than 7 days plus "
    "one purge interval (1 hour) ago - landing, processed, metadata and quarantine zones, the images "
    "registry, Dagster's image_hours partitions, tables of the published warehouse. Fails naming each "
    "store with its overdue hours (counts and the oldest hour keys; no image data).",
)
def images_purged_within_7_days(
    context: dg.AssetCheckExecutionContext,
    zones: dg.ResourceParam[Zones],
    sales_db: SalesDatabase,
    warehouse: Warehouse,
) -> dg.AssetCheckResult:
    with sales_db.connect() as connection:
        report = compliance.audit_stores(
            zones,
            connection,
            warehouse.path,
            datetime.now(UTC),
            records=DagsterPartitionRecords(context.instance),
        )
    if not report.passed:
        context.log.error(f"image data older than {report.overdue_before} in: {', '.join(report.failing_stores())}")
    return dg.AssetCheckResult(
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=report.summary(),
        description=None
        if report.passed
        else "Overdue image data in: "
        + ", ".join(f"{store} ({len(report.overdue[store])} hours)" for store in report.failing_stores()),
    )


image_retention_compliance_job = dg.define_asset_job(
    "image_retention_compliance",
    selection=dg.AssetSelection.checks(images_purged_within_7_days),
    tags=domain_tags(GROUP),
    description="Checks every store for image data that outlived the 7-day retention.",
)

image_retention_compliance_schedule = dg.ScheduleDefinition(
    job=image_retention_compliance_job,
    cron_schedule="31 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly, half-way between two purges: the 7-day compliance check over every image store.",
)
