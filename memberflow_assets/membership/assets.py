"""Membership applications: landed file -> raw rows -> classified rows -> output files -> members table.

The assets are thin: reading is `reader`, the rules are `rules`, the checks' second opinion is
`validation`; this module moves data between zones and reports what happened to Dagster.
"""

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


def read_landed_file(context: dg.AssetExecutionContext, zone: Zones) -> tuple[FileInfo, str, pd.DataFrame]:
    """The landed file of this partition, its SHA-256 and its rows; quarantines an unreadable file."""
    landed = find_landed_file(zone, context.partition_key)
    with zone.local_file(landed.relpath) as local_path:
        with open(local_path, "rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        try:
            return landed, sha256, read_applications(local_path, landed.name)
        except ApplicationFileError as error:
            target = quarantine(zone, landed, error, sha256, context.run.run_id)
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


def rejection_counts(rejection_reasons: pa.Array) -> dict[str, int]:
    reasons = pc.list_flatten(pc.split_pattern(rejection_reasons, ";"))
    counted = {row["values"]: row["counts"] for row in pc.value_counts(reasons).to_pylist()}
    return {reason: counted.get(reason, 0) for reason in REJECTION_REASONS}


@dg.multi_asset(
    partitions_def=application_files,
    group_name=GROUP,
    specs=[
        dg.AssetSpec(
            "raw_applications",
            kinds={"csv"},
            description="The landed file's applications exactly as read: every field as text, plus source_file "
            "and row_number. Its stored form is the landed file itself (never modified; its SHA-256 is recorded). "
            "An unreadable file is quarantined and fails its partition.",
        ),
        dg.AssetSpec(
            "classified_applications",
            deps=["raw_applications"],
            kinds={"duckdb"},
            description="Every application with the rules applied (classify_applications) and its batch; "
            "stored as the union of the successful and unsuccessful files.",
        ),
        dg.AssetSpec(
            "successful_applications",
            deps=["classified_applications"],
            kinds={"parquet"},
            description="members/successful/<batch>.parquet: applicants that passed every rule.",
        ),
        dg.AssetSpec(
            "unsuccessful_applications",
            deps=["classified_applications"],
            kinds={"parquet"},
            description="members/unsuccessful/<batch>.parquet: the others, with rejection_reasons.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "rows_conserved",
            asset="classified_applications",
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
)
def application_batch(context: dg.AssetExecutionContext, config: ClassificationConfig, zones: ZonesResource):
    """One landed file, read -> classified -> stored, in one step: the intermediate data never needs a
    copy of its own (raw = the landed file, classified = the two output files)."""
    zone = zones.get_zones()
    batch = context.partition_key
    landed, sha256, raw = read_landed_file(context, zone)
    context.log.info(f"read {len(raw)} applications from {zone.url(landed.relpath)}")
    yield dg.MaterializeResult(
        asset_key="raw_applications",
        metadata={
            "source": dg.MetadataValue.path(zone.url(landed.relpath)),
            "sha256": sha256,
            "size_bytes": landed.size,
            "rows": len(raw),
            "columns": ", ".join(map(str, raw.columns)),
        },
    )

    classified = pa.Table.from_pandas(classify_applications(raw, as_of=config.as_of), preserve_index=False)
    classified = pa.table(
        {
            "batch": pa.repeat(pa.scalar(batch, pa.large_string()), classified.num_rows),
            **{name: classified[name] for name in classified.column_names},
            "source_file": pa.array(raw["source_file"]),
            "row_number": pa.array(raw["row_number"], pa.int64()),
        }
    )
    del raw
    is_successful = classified["is_successful"]
    selections = {
        "successful_applications": (f"{batches.SUCCESSFUL_PREFIX}/{batch}.parquet", is_successful),
        "unsuccessful_applications": (f"{batches.UNSUCCESSFUL_PREFIX}/{batch}.parquet", pc.invert(is_successful)),
    }

    def store(relpath: str, selection: pa.ChunkedArray) -> tuple[pa.Table, int]:
        table = classified.filter(selection)
        zone.write_parquet(relpath, table)
        return table, zone.parquet_num_rows(relpath)  # what is really on storage

    # Arrow and Parquet release the GIL: the two files are filtered and written on both cores at once.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(store, *selection) for name, selection in selections.items()}
    outputs = {name: (selections[name][0], future.result()[0]) for name, future in futures.items()}
    stored_rows = {name: future.result()[1] for name, future in futures.items()}

    rows, successful = classified.num_rows, stored_rows["successful_applications"]
    yield dg.MaterializeResult(
        asset_key="classified_applications",
        metadata={
            "rows": rows,
            "successful": successful,
            "unsuccessful": rows - successful,
            "success_rate": round(successful / rows, 4) if rows else 0.0,
            "rejections_by_reason": dg.MetadataValue.json(rejection_counts(classified["rejection_reasons"])),
            "reference_date": config.reference_date,
        },
    )
    for asset_name, (relpath, table) in outputs.items():
        yield dg.MaterializeResult(
            asset_key=asset_name,
            metadata={
                "path": dg.MetadataValue.path(zone.url(relpath)),
                "rows": stored_rows[asset_name],
                "preview": _preview(table.slice(0, PREVIEW_ROWS).to_pandas()),
            },
        )

    stored = sum(stored_rows.values())
    yield dg.AssetCheckResult(
        check_name="rows_conserved",
        asset_key="classified_applications",
        passed=rows == stored,
        metadata={"rows_read": rows, "rows_stored": stored, **stored_rows},
    )

    successful_rows = outputs["successful_applications"][1]
    malformed, shared = membership_id_problems(successful_rows)
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

    violations = successful_rule_violations(successful_rows, config.as_of)
    yield dg.AssetCheckResult(
        check_name="successful_rows_satisfy_rules",
        asset_key="successful_applications",
        passed=not any(violations.values()),
        metadata={"rows_checked": successful_rows.num_rows, "violations": dg.MetadataValue.json(violations)},
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
