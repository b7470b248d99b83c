"""The 7-day promise, checked from the outside: does any store still hold image data that retention
should have purged? No Dagster; the `images_purged_within_7_days` asset check calls `audit_stores`.

Retention purges an hour once it ended more than 7 days ago, at its hourly run (minute 1), so an hour
may rightly be there for up to 7 days plus one purge interval after its end. Anything older is
overdue: the purge failed, stopped, or missed a place.

The stores are every place the platform keeps image data: the landing, processed, metadata and
quarantine zones, the images registry (status rows and the hourly partitions of personal fields),
Dagster's partition keys of the image assets, and any table in the published warehouse holding image
rows (the warehouse's image BI views read the metadata files, never copies, so normally none).

The report names hours (`yyyy-mm-dd-hh`) and counts only: no image ids, clients or paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg2.extensions import connection as PgConnection

from memberflow_assets.images.layout import HOUR_KEY_FORMAT, hour_key
from memberflow_assets.images.retention.expiry import PartitionRecords, first_kept_hour, hours_before_by_store
from memberflow_assets.warehouse import versions
from memberflow_assets.zones import Zones

PURGE_INTERVAL = timedelta(hours=1)  # image_retention_schedule: hourly
LISTED_HOURS = 20  # per store, the oldest overdue hours named in the report


@dataclass(frozen=True)
class ComplianceReport:
    checked_at: datetime
    overdue_before: str  # the first hour that may still be kept; every hour before it is overdue
    overdue: dict[str, list[str]]  # store -> its overdue hours, oldest first (every store checked is a key)

    @property
    def passed(self) -> bool:
        return not any(self.overdue.values())

    def failing_stores(self) -> list[str]:
        return [store for store, keys in self.overdue.items() if keys]

    def summary(self) -> dict:
        """For the check's metadata: counts per store and the oldest hours (bounded)."""
        return {
            "checked_at": self.checked_at.isoformat(),
            "overdue_before_hour": self.overdue_before,
            "stores_checked": sorted(self.overdue),
            "stores_with_overdue_data": self.failing_stores(),
            **{f"overdue_hours_{store}": len(keys) for store, keys in self.overdue.items()},
            **{f"oldest_overdue_{store}": keys[:LISTED_HOURS] for store, keys in self.overdue.items() if keys},
        }


def overdue_before(now: datetime) -> datetime:
    """Start of the oldest hour that may still exist at `now`: retention's first kept hour one purge earlier."""
    return first_kept_hour(now - PURGE_INTERVAL)


def warehouse_hours(warehouse_path: str, before: datetime) -> set[str]:
    """Hours before `before` of image rows held in tables of the published warehouse (not in views:
    those read the metadata files, which the metadata store covers). Asks DuckDB's catalogue first, so
    a warehouse without such tables costs one small query."""
    if versions.current_version(warehouse_path) is None:
        return set()
    with versions.open_published(warehouse_path) as connection:
        tables = connection.execute(
            "SELECT table_schema, table_name FROM information_schema.columns"
            " WHERE column_name = 'received_at' AND (table_schema, table_name) IN"
            " (SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE')"
        ).fetchall()
        keys: set[str] = set()
        for schema, table in tables:
            name = f'"{schema.replace(chr(34), chr(34) * 2)}"."{table.replace(chr(34), chr(34) * 2)}"'
            rows = connection.execute(
                f"SELECT DISTINCT strftime(CAST(received_at AS TIMESTAMPTZ), ?) FROM {name} "
                "WHERE CAST(received_at AS TIMESTAMPTZ) < ?",
                [HOUR_KEY_FORMAT, before],
            ).fetchall()
            keys |= {key for (key,) in rows if key is not None}
    return keys


def audit_stores(
    zones: Zones,
    connection: PgConnection,
    warehouse_path: str,
    now: datetime,
    records: PartitionRecords | None = None,
) -> ComplianceReport:
    """Every store's image hours older than 7 days plus the purge interval at `now`."""
    cutoff = overdue_before(now)
    found = hours_before_by_store(zones, connection, cutoff, records)
    found["warehouse"] = warehouse_hours(os.fspath(warehouse_path), cutoff)
    return ComplianceReport(
        checked_at=now, overdue_before=hour_key(cutoff), overdue={store: sorted(keys) for store, keys in found.items()}
    )
