"""The 7-day image retention purge. No Dagster: Dagster's own records come in through `PartitionRecords`.

An hourly partition (hour of `received_at`, UTC) is expired when its hour ended more than 7 days
before `as_of`: hour `2026-11-20-09` (09:00-10:00) goes at the first `as_of` after 2026-11-27 10:00:00,
and not one second earlier. An image therefore lives 7 days and at most one hour plus the schedule's
interval more — never less than 7 days.

Everything the platform keeps about an expired hour goes:

    Dagster: the runs that materialised the partition (with their events and logs), the partition key
             (first, for all expired hours at once: a few queries instead of a few per hour)
    images/metadata/<hour>.parquet        (first of the files: the BI views stop showing the hour)
    images/processed/<hour>/              thumbnails
    landing/images/<yyyy>/<mm>/<dd>/<hh>/ images and sidecars
    quarantine/images/<hour>/             rejected uploads and their reasons
    images.registry rows of the hour      -> tombstones, and the hour's partition of registry_details
                                          (client, sha256, paths) dropped, in one transaction with the
                                          hour's audit row

Also, anywhere in the zones: temporary files of writes killed before they finished, once older than
zones.TEMPORARY_SAFE_AGE (counted in `retention_runs.temporary_files_removed`).

Files of several hours are deleted at once (DELETE_THREADS): deleting is waiting for the disk or
S3, not computing. Each hour's registry and audit transaction follows, oldest hour first.

The warehouse holds views over the metadata files only (sql/images/bi_views.sql), never copies, so
deleting the files removes the hour from BI. Expired hours are found in every one of those places, so a
purge interrupted half-way is finished by the next run; a run with nothing expired deletes nothing but
still records itself in `images.retention_runs`.

Accounting (migration 0061): one run at a time (a table lock held on a connection of its own). Before
deleting anything, a run records per hour what is there — objects and bytes per zone, the Dagster runs
it will delete — as `unaccounted` in the hour's `retention_purges` row (state 'deleting'), and moves
the counts into the row as it deletes. A killed run leaves rows in 'deleting'; the next run first looks
at what is left of each such hour, credits the dead run with the difference (state 'reconciled'),
fills in that run's totals, and only then deletes the rest under its own name. So the audit adds up to
what was deleted, however often runs are killed. (Files that appear in an expired hour meanwhile are
counted by the run that deletes them.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as PgConnection

from memberflow_assets import postgres
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
from memberflow_assets.images.processing.hour_partition import landing_hours, parse_hour_key
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

    def runs_of(self, keys: list[str]) -> dict[str, set[str]]:
        """The ids of the runs that `forget` would delete, per key."""
        ...

    def forget(self, runs: dict[str, set[str]]) -> dict[str, int]:
        """Delete these runs and then the partition keys; returns the number of runs deleted per key."""
        ...

    def existing(self, run_ids: list[str]) -> set[str]:
        """Those of the run ids whose runs still exist."""
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
    reconciled_runs: list[str] = field(default_factory=list)  # killed runs whose deletions this one accounted for
    temporary_files_removed: int = 0  # left anywhere in the zones by writes killed before they finished

    @property
    def totals(self) -> dict[str, int]:
        return {
            "partitions_purged": len(self.purges),
            "objects_deleted": sum(purge.objects_deleted for purge in self.purges),
            "bytes_deleted": sum(purge.bytes_deleted for purge in self.purges),
            "registry_rows_purged": sum(purge.registry_rows_purged for purge in self.purges),
            "dagster_runs_deleted": sum(purge.dagster_runs_deleted for purge in self.purges),
        }

    def summary(self) -> dict:
        """What the run did, for its Dagster metadata and the CLI's output: counts, no ids."""
        return {
            "as_of": self.as_of.isoformat(),
            "first_kept_hour": self.first_kept_key,
            **self.totals,
            "interrupted_runs_accounted_for": len(self.reconciled_runs),
            "temporary_files_removed": self.temporary_files_removed,
        }


# -- finding expired hours --------------------------------------------------------------------------
def _registry_hours(connection: PgConnection, first_kept: datetime) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            read_sql("images/expired_registry_hours.sql"),
            {"first_kept": first_kept, "first_kept_key": hour_key(first_kept)},
        )
        return {key for (key,) in cursor.fetchall()}


def hours_before_by_store(
    zones: Zones, connection: PgConnection, first_kept: datetime, records: PartitionRecords | None = None
) -> dict[str, set[str]]:
    """Per store, the hours before `first_kept` it still holds something of. Each store is asked through
    its own index: one folder listing per zone (landing: only the days before `first_kept`), the
    registry's partial indexes and PostgreSQL's catalogue, Dagster's partition keys."""
    first_kept_key = hour_key(first_kept)
    found = {
        "landing": landing_hours(zones, before=first_kept),
        "processed": {name.rsplit("/", 1)[-1] for name in zones.list_dirs(PROCESSED_PREFIX)},
        "quarantine": {name.rsplit("/", 1)[-1] for name in zones.list_dirs(QUARANTINE_PREFIX)},
        "metadata": {info.name.removesuffix(".parquet") for info in zones.list_files(METADATA_PREFIX)},
        "registry": _registry_hours(connection, first_kept),
    }
    if records is not None:
        found["dagster"] = records.expired_keys(first_kept_key)
    return {
        store: {key for key in keys if parse_hour_key(key) is not None and key < first_kept_key}
        for store, keys in found.items()
    }


def find_expired_hours(
    zones: Zones, connection: PgConnection, as_of: datetime, records: PartitionRecords | None = None
) -> list[str]:
    """Every hour before the first kept one that still has data anywhere, oldest first."""
    return sorted(set().union(*hours_before_by_store(zones, connection, first_kept_hour(as_of), records).values()))


# -- purging ----------------------------------------------------------------------------------------
DELETE_THREADS = 4  # unlink/DeleteObjects wait on the disk or the network, not the CPU: overlap hours
LOCK_WAIT = "5min"  # for a run in progress to finish


def hour_places(key: str) -> list[tuple[str, str]]:
    """(zone, path) of everything one hour has in the zones, metadata first (BI stops showing the hour)."""
    return [
        ("metadata", metadata_relpath(key)),
        ("processed", processed_dir(key)),
        ("landing", landing_dir_for_hour(key)),
        ("quarantine", f"{QUARANTINE_PREFIX}/{key}"),
    ]


def hour_inventory(zones: Zones, key: str) -> dict[str, list[int]]:
    """{zone: [objects, bytes]} of what the hour has now."""
    return {zone: list(zones.tree_size(relpath)) for zone, relpath in hour_places(key)}


def delete_hour_files(zones: Zones, key: str) -> HourPurge:
    """Delete one hour's files in every zone (metadata first: BI stops showing the hour)."""
    purge = HourPurge(key)
    for zone, relpath in hour_places(key):
        purge.objects_by_zone[zone], size = zones.delete_tree(relpath)
        purge.bytes_deleted += size
    zones.remove_empty_parents(landing_dir_for_hour(key), LANDING_PREFIX)  # the day, month, year folders
    return purge


def tombstone_hour(connection: PgConnection, purge: HourPurge, retention_run_id: str, purged_at: datetime) -> None:
    """The hour's registry rows become tombstones and its partition of personal fields is dropped;
    committed together with the hour's audit row."""
    start = hour_start(purge.hour_key)
    with connection.cursor() as cursor:
        # Dropping a partition locks its parent for a moment: wait at most this long behind landings,
        # then fail (everything of this hour rolls back; the next run does it again).
        cursor.execute("SET LOCAL lock_timeout = '10s'")
        cursor.execute(
            read_sql("images/tombstone_hour.sql"),
            {"purged_at": purged_at, "hour_key": purge.hour_key, "hour_start": start, "hour_end": start + HOUR},
        )
        purge.registry_rows_purged = cursor.rowcount
        cursor.execute("SELECT images.drop_registry_details_partition(%s)", (purge.hour_key,))
        cursor.execute("DELETE FROM images.hour_locks WHERE hour_key = %s", (purge.hour_key,))
        cursor.execute(
            read_sql("images/retention_hour_purged.sql"),
            {
                "retention_run_id": retention_run_id,
                "hour_key": purge.hour_key,
                "purged_at": purged_at,
                "objects_deleted": purge.objects_deleted,
                "bytes_deleted": purge.bytes_deleted,
                "objects_by_zone": json.dumps(purge.objects_by_zone),
                "registry_rows_purged": purge.registry_rows_purged,
                "dagster_runs_deleted": purge.dagster_runs_deleted,
            },
        )
    connection.commit()


def check_as_of(as_of: datetime, now: datetime | None = None) -> datetime:
    """`as_of` as an aware UTC time; refuses a future one (it would purge data younger than 7 days)."""
    if as_of.tzinfo is None:
        raise ValueError(f"as_of {as_of.isoformat()} has no time zone; give one (e.g. +00:00)")
    now = now or datetime.now(UTC)
    if as_of > now + CLOCK_SKEW_ALLOWANCE:
        raise ValueError(f"as_of {as_of.isoformat()} is in the future (now {now.isoformat()}): refusing to purge")
    return as_of.astimezone(UTC)


@contextmanager
def exclusive_run(dsn: str) -> Iterator[None]:
    """Hold the retention lock for the block, on a connection of its own (its transaction stays open;
    a killed run's connection closes and the lock goes with it)."""
    with closing(postgres.connect(dsn, "memberflow-retention-lock")) as connection:
        with connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = '{LOCK_WAIT}'")
            try:
                cursor.execute("LOCK TABLE images.retention_lock IN EXCLUSIVE MODE")
            except psycopg2.errors.LockNotAvailable:
                raise RuntimeError(
                    f"another retention run has held the lock for over {LOCK_WAIT}: not starting"
                ) from None
        yield


def _update_totals(
    connection: PgConnection, run_ids: list[str], finished: bool = False, reconciled_by: str | None = None
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            read_sql("images/retention_run_totals.sql"),
            {
                "retention_run_ids": run_ids,
                "finished_at": datetime.now(UTC) if finished else None,
                "reconciled_by": reconciled_by,
            },
        )


def reconcile_interrupted(
    zones: Zones, connection: PgConnection, records: PartitionRecords | None, retention_run_id: str
) -> list[str]:
    """Account for what killed runs deleted (see the module docstring) and fill in their totals;
    returns their run ids.

    Files are always accounted for here, before anything more of their hours is deleted. The Dagster
    runs a killed run had planned to delete need Dagster's records to check: without them (`records`
    None) that part stays unaccounted until a run that has them.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT retention_run_id, hour_key, objects_by_zone, bytes_deleted, dagster_runs_deleted, unaccounted"
            " FROM images.retention_purges WHERE state = 'deleting' ORDER BY retention_run_id, hour_key"
        )
        rows = cursor.fetchall()
    for run_id, key, objects_by_zone, bytes_deleted, dagster_runs_deleted, unaccounted in rows:
        if "files" in unaccounted:
            now = hour_inventory(zones, key)
            for zone, (objects, size) in unaccounted.pop("files").items():
                left_objects, left_bytes = now.get(zone, (0, 0))
                objects_by_zone[zone] = objects_by_zone.get(zone, 0) + max(0, objects - left_objects)
                bytes_deleted += max(0, size - left_bytes)
        if "dagster_run_ids" in unaccounted and records is not None:
            planned = unaccounted.pop("dagster_run_ids")
            dagster_runs_deleted += len(set(planned) - records.existing(planned))
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE images.retention_purges SET objects_by_zone = %s, objects_deleted = %s, bytes_deleted = %s,"
                " dagster_runs_deleted = %s, unaccounted = %s, state = %s"
                " WHERE retention_run_id = %s AND hour_key = %s",
                (
                    json.dumps(objects_by_zone),
                    sum(objects_by_zone.values()),
                    bytes_deleted,
                    dagster_runs_deleted,
                    json.dumps(unaccounted) if unaccounted else None,
                    "deleting" if unaccounted else "reconciled",
                    run_id,
                    key,
                ),
            )
    with connection.cursor() as cursor:  # every run that stopped without finishing, whatever it got to
        cursor.execute(
            "SELECT retention_run_id FROM images.retention_runs"
            " WHERE finished_at IS NULL AND reconciled_at IS NULL AND retention_run_id <> %s",
            (retention_run_id,),
        )
        runs = sorted({run_id for run_id, *_ in rows} | {run_id for (run_id,) in cursor.fetchall()})
    if runs:
        _update_totals(connection, runs, reconciled_by=retention_run_id)
    connection.commit()
    return runs


def _record_plan(
    zones: Zones, connection: PgConnection, keys: list[str], runs: dict[str, set[str]], retention_run_id: str
) -> None:
    """Before deleting: what each hour has (see the module docstring), committed."""
    with ThreadPoolExecutor(DELETE_THREADS) as pool:
        inventories = list(pool.map(lambda key: hour_inventory(zones, key), keys))
    planned_at = datetime.now(UTC)
    with connection.cursor() as cursor:
        for key, files in zip(keys, inventories, strict=True):
            unaccounted = {"files": files} | ({"dagster_run_ids": sorted(runs[key])} if runs.get(key) else {})
            cursor.execute(
                read_sql("images/retention_hour_planned.sql"),
                {
                    "retention_run_id": retention_run_id,
                    "hour_key": key,
                    "planned_at": planned_at,
                    "unaccounted": json.dumps(unaccounted),
                },
            )
    connection.commit()


def _record_dagster_deletions(connection: PgConnection, deleted: dict[str, int], retention_run_id: str) -> None:
    with connection.cursor() as cursor:
        for key, count in deleted.items():
            cursor.execute(
                "UPDATE images.retention_purges SET dagster_runs_deleted = %s,"
                " unaccounted = unaccounted - 'dagster_run_ids' WHERE retention_run_id = %s AND hour_key = %s",
                (count, retention_run_id, key),
            )
    connection.commit()


def run_retention(
    zones: Zones,
    dsn: str,
    as_of: datetime,
    retention_run_id: str,
    trigger: str,
    records: PartitionRecords | None = None,
    log: Callable[[str], None] | None = None,
) -> RetentionResult:
    """Purge every hourly partition expired at `as_of`; idempotent. Commits as it goes. Raises, before
    anything is recorded, when the zones' root is missing: a wrong bucket or folder would have looked
    empty, and the registry rows of images still stored elsewhere would have become tombstones."""
    as_of = check_as_of(as_of)
    zones.require_root()
    first_kept_key = hour_key(first_kept_hour(as_of))
    with exclusive_run(dsn), closing(postgres.connect(dsn, "memberflow-retention")) as connection:
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
        result.temporary_files_removed, _ = zones.sweep_temporaries()
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE images.retention_runs SET temporary_files_removed = %s WHERE retention_run_id = %s",
                (result.temporary_files_removed, retention_run_id),
            )
        connection.commit()
        result.reconciled_runs = reconcile_interrupted(zones, connection, records, retention_run_id)
        if result.reconciled_runs and log is not None:
            log(f"accounted for what {len(result.reconciled_runs)} interrupted run(s) deleted")
        keys = find_expired_hours(zones, connection, as_of, records)
        runs = records.runs_of(keys) if records is not None and keys else {}
        _record_plan(zones, connection, keys, runs, retention_run_id)
        runs_deleted = records.forget(runs) if runs else {}
        _record_dagster_deletions(connection, runs_deleted, retention_run_id)
        with ThreadPoolExecutor(DELETE_THREADS) as pool:
            for purge in pool.map(lambda key: delete_hour_files(zones, key), keys):  # in order, as each is done
                purge.dagster_runs_deleted = runs_deleted.get(purge.hour_key, 0)
                tombstone_hour(connection, purge, retention_run_id, datetime.now(UTC))
                result.purges.append(purge)
                if log is not None:
                    log(
                        f"purged {purge.hour_key}: {purge.objects_deleted} objects, {purge.bytes_deleted} bytes, "
                        f"{purge.registry_rows_purged} registry rows, {purge.dagster_runs_deleted} Dagster runs"
                    )
        _update_totals(connection, [retention_run_id], finished=True)
        connection.commit()
    return result
