"""Membership applications: landed file -> raw rows -> classified rows -> output files -> members table.

The assets are thin: reading is `reader`, the rules are `rules`, the checks' second opinion is
`validation`; this module moves data between zones and reports what happened to Dagster.
"""

import hashlib
import json
from datetime import UTC, date, datetime

import dagster as dg
import pandas as pd
import pyarrow as pa

from memberflow_assets.membership import batches
from memberflow_assets.membership.members_sync import stage_members, sync_members
from memberflow_assets.membership.partitions import application_files
from memberflow_assets.membership.reader import ApplicationFileError, read_applications
from memberflow_assets.membership.rules import DEFAULT_AS_OF, REJECTION_REASONS, classify_applications
from memberflow_assets.membership.validation import membership_id_problems, successful_rule_violations
from memberflow_assets.resources import SalesDatabase, ZonesResource
from memberflow_assets.settings import read_sql
from memberflow_assets.zones import FileInfo, Zones

GROUP = "membership"
PREVIEW_ROWS = 5


class ClassificationConfig(dg.Config):
    reference_date: str = DEFAULT_AS_OF.isoformat()  # applicants must be 18 or older on this date

    @property
    def as_of(self) -> date:
        return date.fromisoformat(self.reference_date)


def _markdown_row(values) -> str:
    return "| " + " | ".join(str(value).replace("|", "\\|") for value in values) + " |"


def _preview(frame: pd.DataFrame) -> dg.MetadataValue:
    """The first rows as a Markdown table for the Dagster UI."""
    head = frame.head(PREVIEW_ROWS).astype("str")
    lines = [_markdown_row(head.columns), _markdown_row("---" for _ in head.columns)]
    lines += [_markdown_row(row) for row in head.itertuples(index=False)]
    return dg.MetadataValue.md("\n".join(lines))


def find_landed_file(zones: Zones, batch: str) -> FileInfo:
    for info in zones.list_files(batches.LANDING_PREFIX):
        if batches.is_batch_file(info.name) and batches.batch_key(info.name) == batch:
            return info
    raise dg.Failure(
        description=f"batch {batch!r}: no file for it in {zones.url(batches.LANDING_PREFIX)} any more",
        allow_retries=False,
    )


def quarantine(zones: Zones, landed: FileInfo, error: ApplicationFileError, sha256: str, run_id: str) -> str:
    """Copy a file that cannot be read to the quarantine zone, with a reason file beside it."""
    target = f"{batches.QUARANTINE_PREFIX}/{landed.name}"
    zones.copy(landed.relpath, target)
    reason = {
        "file": landed.name,
        "problem": error.problem,
        "detail": error.detail,
        "sha256": sha256,
        "size_bytes": landed.size,
        "quarantined_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dagster_run_id": run_id,
    }
    zones.write_bytes(f"{target}.reason.txt", (json.dumps(reason, indent=2) + "\n").encode())
    return target


@dg.asset(
    partitions_def=application_files,
    group_name=GROUP,
    io_manager_key="dataframe_io_manager",
    kinds={"csv", "pandas"},
    description="Applications exactly as read from the landed file: every field as text, plus "
    "source_file and row_number. An unreadable file is quarantined and fails its partition.",
)
def raw_applications(context: dg.AssetExecutionContext, zones: ZonesResource) -> pd.DataFrame:
    zone = zones.get_zones()
    landed = find_landed_file(zone, context.partition_key)
    with zone.local_file(landed.relpath) as local_path:
        with open(local_path, "rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        try:
            frame = read_applications(local_path, landed.name)
        except ApplicationFileError as error:
            target = quarantine(zone, landed, error, sha256, context.run_id)
            context.log.error(f"{error} -> quarantined to {zone.url(target)}")
            raise dg.Failure(
                description=str(error),
                metadata={
                    "file": landed.name,
                    "problem": error.problem,
                    "quarantined_to": dg.MetadataValue.path(zone.url(target)),
                },
                allow_retries=False,
            ) from error
    context.log.info(f"read {len(frame)} applications from {zone.url(landed.relpath)}")
    context.add_output_metadata(
        {
            "source": dg.MetadataValue.path(zone.url(landed.relpath)),
            "sha256": sha256,
            "size_bytes": landed.size,
            "rows": len(frame),
            "columns": ", ".join(map(str, frame.columns)),
        }
    )
    return frame


@dg.asset(
    partitions_def=application_files,
    group_name=GROUP,
    io_manager_key="dataframe_io_manager",
    kinds={"duckdb", "pandas"},
    description="Every application with the rules applied (classify_applications) and its batch.",
)
def classified_applications(
    context: dg.AssetExecutionContext, config: ClassificationConfig, raw_applications: pd.DataFrame
) -> pd.DataFrame:
    classified = classify_applications(raw_applications, as_of=config.as_of)
    classified.insert(0, "batch", context.partition_key)
    classified["source_file"] = raw_applications["source_file"].to_numpy()
    classified["row_number"] = raw_applications["row_number"].to_numpy()

    successful = int(classified["is_successful"].sum())
    reasons = classified["rejection_reasons"].str.split(";").explode()
    reason_counts = {reason: int((reasons == reason).sum()) for reason in REJECTION_REASONS}
    context.add_output_metadata(
        {
            "rows": len(classified),
            "successful": successful,
            "unsuccessful": len(classified) - successful,
            "success_rate": round(successful / len(classified), 4) if len(classified) else 0.0,
            "rejections_by_reason": dg.MetadataValue.json(reason_counts),
            "reference_date": config.reference_date,
        }
    )
    return classified


@dg.multi_asset(
    partitions_def=application_files,
    group_name=GROUP,
    specs=[
        dg.AssetSpec(
            "successful_applications",
            deps=["raw_applications", "classified_applications"],
            kinds={"parquet"},
            description="members/successful/<batch>.parquet: applicants that passed every rule.",
        ),
        dg.AssetSpec(
            "unsuccessful_applications",
            deps=["raw_applications", "classified_applications"],
            kinds={"parquet"},
            description="members/unsuccessful/<batch>.parquet: the others, with rejection_reasons.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "rows_conserved",
            asset="unsuccessful_applications",
            blocking=True,
            description="Rows read = rows in the successful file + rows in the unsuccessful file.",
        ),
        dg.AssetCheckSpec(
            "membership_id_valid",
            asset="successful_applications",
            blocking=True,
            description="Every membership_id has the format <last_name>_<5 hex>; an id shared by two "
            "different applicants is a warning.",
        ),
        dg.AssetCheckSpec(
            "successful_rows_satisfy_rules",
            asset="successful_applications",
            blocking=True,
            description="Each successful row re-checked against every rule, independently of the SQL.",
        ),
    ],
    ins={
        "raw_applications": dg.AssetIn(),
        "classified_applications": dg.AssetIn(),
    },
)
def application_outputs(
    context: dg.AssetExecutionContext,
    config: ClassificationConfig,
    zones: ZonesResource,
    raw_applications: pd.DataFrame,
    classified_applications: pd.DataFrame,
):
    zone = zones.get_zones()
    batch = context.partition_key
    mask = classified_applications["is_successful"].to_numpy(dtype=bool)
    outputs = {
        "successful_applications": (f"{batches.SUCCESSFUL_PREFIX}/{batch}.parquet", classified_applications[mask]),
        "unsuccessful_applications": (
            f"{batches.UNSUCCESSFUL_PREFIX}/{batch}.parquet",
            classified_applications[~mask],
        ),
    }
    written_rows = {}
    for asset_name, (relpath, frame) in outputs.items():
        zone.write_parquet(relpath, pa.Table.from_pandas(frame, preserve_index=False))
        written_rows[asset_name] = zone.parquet_num_rows(relpath)  # what is really on storage
        yield dg.MaterializeResult(
            asset_key=asset_name,
            metadata={
                "path": dg.MetadataValue.path(zone.url(relpath)),
                "rows": written_rows[asset_name],
                "preview": _preview(frame),
            },
        )

    read = len(raw_applications)
    stored = sum(written_rows.values())
    yield dg.AssetCheckResult(
        check_name="rows_conserved",
        asset_key="unsuccessful_applications",
        passed=read == stored,
        metadata={"rows_read": read, "rows_stored": stored, **written_rows},
    )

    successful = outputs["successful_applications"][1]
    malformed, shared = membership_id_problems(successful)
    yield dg.AssetCheckResult(
        check_name="membership_id_valid",
        asset_key="successful_applications",
        passed=malformed == 0 and not shared,
        severity=dg.AssetCheckSeverity.ERROR if malformed else dg.AssetCheckSeverity.WARN,
        metadata={
            "malformed_ids": malformed,
            "ids_shared_by_different_applicants": len(shared),
            "shared_ids_sample": ", ".join(shared[:20]),
        },
    )

    violations = successful_rule_violations(successful, config.as_of)
    yield dg.AssetCheckResult(
        check_name="successful_rows_satisfy_rules",
        asset_key="successful_applications",
        passed=not any(violations.values()),
        metadata={"rows_checked": len(successful), "violations": dg.MetadataValue.json(violations)},
    )


@dg.asset(
    deps=["successful_applications"],
    group_name=GROUP,
    kinds={"postgres"},
    description="sales.members: every successful applicant of every batch, one row per membership_id.",
)
def members(context: dg.AssetExecutionContext, zones: ZonesResource, sales_db: SalesDatabase) -> dg.MaterializeResult:
    zone = zones.get_zones()
    with sales_db.connect() as connection:
        result = sync_members(zone, connection)
    context.log.info(
        f"members: {result.inserted} inserted, {result.updated} updated, {result.total} in total "
        f"from {result.batches} batch file(s)"
    )
    return dg.MaterializeResult(
        metadata={
            "members_total": result.total,
            "inserted": result.inserted,
            "updated": result.updated,
            "batch_files": result.batches,
        }
    )


@dg.asset_check(
    asset=members,
    blocking=True,
    description="Every member in the successful files is in sales.members with the same values.",
)
def members_match_successful_files(zones: ZonesResource, sales_db: SalesDatabase) -> dg.AssetCheckResult:
    zone = zones.get_zones()
    with sales_db.connect() as connection:
        files, staged = stage_members(zone, connection)
        with connection.cursor() as cursor:
            cursor.execute(read_sql("membership/members_mismatches.sql"))
            missing, different = cursor.fetchone()
    return dg.AssetCheckResult(
        passed=missing == 0 and different == 0,
        metadata={
            "batch_files": files,
            "members_in_files": staged,
            "missing_in_table": missing,
            "different_in_table": different,
        },
    )
