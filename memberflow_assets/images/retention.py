"""The 7-day image retention purge. No Dagster: Dagster's own records come in through `PartitionRecords`.

An hourly partition (hour of `received_at`, UTC) is expired when its hour ended more than 7 days
before `as_of`: hour `2026-11-20-09` (09:00-10:00) goes at the first `as_of` after 2026-11-27 10:00:00,
and not one second earlier. An image therefore lives 7 days and at most one hour plus the schedule's
interval more — never less than 7 days.

For each expired hour, oldest first, everything the platform keeps about it goes:

    images/metadata/<hour>.parquet        (first: the BI views stop showing the hour)
    images/processed/<hour>/              thumbnails
    landing/images/<yyyy>/<mm>/<dd>/<hh>/ images and sidecars
    quarantine/images/<hour>/             rejected uploads and their reasons
    Dagster: the runs that materialised the partition (with their events and logs), the partition key
    images.registry rows of the hour      -> tombstones, in one transaction with the audit row

The warehouse holds views over the metadata files only (sql/images/bi_views.sql), never copies, so
deleting the files removes the hour from BI. Expired hours are found in every one of those places, so a
purge interrupted half-way is finished by the next run; a run with nothing expired deletes nothing but
still records itself in `images.retention_runs`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from psycopg2.extensions import connection as PgConnection

from memberflow_assets.images.hours import landing_hours, parse_hour_key
from memberflow_assets.images.layout import (
    LANDING_PREFIX,
    METADATA_PREFIX,
    PROCESSED_PREFIX,
    QUARANTINE_PREFIX,
    hour_key,
    hour_start,
    landing_dir_for_hour,
    metadata_relpath,
    processed_dir,
)
from memberflow_assets.settings import read_sql
from memberflow_assets.zones import Zones

RETENTION = timedelta(days=7)
HOUR = timedelta(hours=1)
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)  # as_of may not be later than now plus this


class PartitionRecords(Protocol):
    """What the orchestrator keeps per hourly partition (Dagster runs, partition keys)."""

    def expired_keys(self, first_kept_key: str) -> set[str]:
        """Partition keys before `first_kept_key` that still have records."""
        ...

    def forget(self, key: str) -> int:
        """Delete every record of one partition; returns how many runs were deleted."""
        ...


def first_kept_hour(as_of: datetime) -> datetime:
    """Start of the oldest hour that must be kept at `as_of`: the first whose end is >= as_of - 7 days."""
    boundary = as_of.astimezone(UTC) - RETENTION - HOUR
    floor = boundary.replace(minute=0, second=0, microsecond=0)
    return floor if floor == boundary else floor + HOUR


def is_expired(key: str, as_of: datetime) -> bool:
    return hour_start(key) < first_kept_hour(as_of)


@dataclass
class HourPurge:
    hour_key: str
    objects_by_zone: dict[str, int] = field(default_factory=dict)
    bytes_deleted: int = 0
    registry_rows_purged: int = 0
    dagster_runs_deleted: int = 0

    @property
    def objects_deleted(self) -> int:
        return sum(self.objects_by_zone.values())


@dataclass
class RetentionResult:
    retention_run_id: str
    as_of: datetime
    first_kept_key: str
    purges: list[HourPurge]

    @property
    def totals(self) -> dict[str, int]:
        return {
            "partitions_purged": len(self.purges),
            "objects_deleted": sum(purge.objects_deleted for purge in self.purges),
            "bytes_deleted": sum(purge.bytes_deleted for purge in self.purges),
            "registry_rows_purged": sum(purge.registry_rows_purged for purge in self.purges),
            "dagster_runs_deleted": sum(purge.dagster_runs_deleted for purge in self.purges),
        }


# -- finding expired hours --------------------------------------------------------------------------
def _registry_hours(connection: PgConnection, first_kept: datetime) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            read_sql("images/expired_registry_hours.sql"),
            {"first_kept": first_kept, "first_kept_key": hour_key(first_kept)},
        )
        return {key for (key,) in cursor.fetchall()}


def find_expired_hours(
    zones: Zones, connection: PgConnection, as_of: datetime, records: PartitionRecords | None = None
) -> list[str]:
    """Every hour before the first kept one that still has data anywhere, oldest first."""
    first_kept = first_kept_hour(as_of)
    first_kept_key = hour_key(first_kept)
    keys = landing_hours(zones, before=first_kept)
    keys |= {name.rsplit("/", 1)[-1] for name in zones.list_dirs(PROCESSED_PREFIX)}
    keys |= {name.rsplit("/", 1)[-1] for name in zones.list_dirs(QUARANTINE_PREFIX)}
    keys |= {info.name.removesuffix(".parquet") for info in zones.list_files(METADATA_PREFIX)}
    keys |= _registry_hours(connection, first_kept)
    if records is not None:
        keys |= records.expired_keys(first_kept_key)
    return sorted(key for key in keys if parse_hour_key(key) is not None and key < first_kept_key)


# -- purging ----------------------------------------------------------------------------------------
def _delete_folder(zones: Zones, prefix: str) -> tuple[int, int]:
    files = zones.list_files(prefix, recursive=True)
    if files:
        zones.delete_tree(prefix)
    return len(files), sum(info.size for info in files)


def _delete_file(zones: Zones, relpath: str) -> tuple[int, int]:
    files = [info for info in zones.list_files(relpath.rsplit("/", 1)[0]) if info.relpath == relpath]
    for info in files:
        zones.delete(info.relpath)
    return len(files), sum(info.size for info in files)


def purge_hour(
    zones: Zones,
    connection: PgConnection,
    key: str,
    retention_run_id: str,
    purged_at: datetime,
    records: PartitionRecords | None = None,
) -> HourPurge:
    """Delete one hourly partition everywhere; commits its registry tombstones with its audit row."""
    purge = HourPurge(key)
    for zone, (count, size) in (
        ("metadata", _delete_file(zones, metadata_relpath(key))),
        ("processed", _delete_folder(zones, processed_dir(key))),
        ("landing", _delete_folder(zones, landing_dir_for_hour(key))),
        ("quarantine", _delete_folder(zones, f"{QUARANTINE_PREFIX}/{key}")),
    ):
        purge.objects_by_zone[zone] = count
        purge.bytes_deleted += size
    zones.remove_empty_parents(landing_dir_for_hour(key), LANDING_PREFIX)  # the day, month, year folders
    if records is not None:
        purge.dagster_runs_deleted = records.forget(key)
    start = hour_start(key)
    with connection.cursor() as cursor:
        cursor.execute(
            read_sql("images/tombstone_hour.sql"),
            {"purged_at": purged_at, "hour_key": key, "hour_start": start, "hour_end": start + HOUR},
        )
        purge.registry_rows_purged = cursor.rowcount
        cursor.execute(
            read_sql("images/retention_hour_purged.sql"),
            {
                "retention_run_id": retention_run_id,
                "hour_key": key,
                "purged_at": purged_at,
                "objects_deleted": purge.objects_deleted,
                "bytes_deleted": purge.bytes_deleted,
                "objects_by_zone": json.dumps(purge.objects_by_zone),
                "registry_rows_purged": purge.registry_rows_purged,
                "dagster_runs_deleted": purge.dagster_runs_deleted,
            },
        )
    connection.commit()
    return purge


def check_as_of(as_of: datetime, now: datetime | None = None) -> datetime:
    """`as_of` as an aware UTC time; refuses a future one (it would purge data younger than 7 days)."""
    if as_of.tzinfo is None:
        raise ValueError(f"as_of {as_of.isoformat()} has no time zone; give one (e.g. +00:00)")
    now = now or datetime.now(UTC)
    if as_of > now + CLOCK_SKEW_ALLOWANCE:
        raise ValueError(f"as_of {as_of.isoformat()} is in the future (now {now.isoformat()}): refusing to purge")
    return as_of.astimezone(UTC)


def run_retention(
    zones: Zones,
    connection: PgConnection,
    as_of: datetime,
    retention_run_id: str,
    trigger: str,
    records: PartitionRecords | None = None,
    log: Callable[[str], None] | None = None,
) -> RetentionResult:
    """Purge every hourly partition expired at `as_of`; idempotent. Commits as it goes."""
    as_of = check_as_of(as_of)
    first_kept_key = hour_key(first_kept_hour(as_of))
    with connection.cursor() as cursor:
        cursor.execute(
            read_sql("images/retention_run_started.sql"),
            {
                "retention_run_id": retention_run_id,
                "trigger": trigger,
                "as_of": as_of,
                "first_kept_hour": first_kept_key,
                "started_at": datetime.now(UTC),
            },
        )
    connection.commit()

    result = RetentionResult(retention_run_id, as_of, first_kept_key, [])
    for key in find_expired_hours(zones, connection, as_of, records):
        purge = purge_hour(zones, connection, key, retention_run_id, datetime.now(UTC), records)
        result.purges.append(purge)
        if log is not None:
            log(
                f"purged {key}: {purge.objects_deleted} objects, {purge.bytes_deleted} bytes, "
                f"{purge.registry_rows_purged} registry rows, {purge.dagster_runs_deleted} Dagster runs"
            )

    with connection.cursor() as cursor:
        cursor.execute(
            read_sql("images/retention_run_finished.sql"),
            {**result.totals, "finished_at": datetime.now(UTC), "retention_run_id": retention_run_id},
        )
    connection.commit()
    return result
