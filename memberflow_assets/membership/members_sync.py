"""Loading the successful applicants of every batch into sales.members. No Dagster.

DuckDB reads all `members/successful/*.parquet` files and keeps one row per membership_id; the rows
go to PostgreSQL with COPY into a temporary table, then one upsert writes only what changed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from psycopg2.extensions import connection as PgConnection

from memberflow_assets.membership.batches import SUCCESSFUL_PREFIX
from memberflow_assets.settings import read_sql
from memberflow_assets.zones import Zones

_STAGE_COLUMNS = "membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18, source_batch"


@dataclass(frozen=True)
class SyncResult:
    batches: int
    total: int
    inserted: int
    updated: int


def stage_members(zones: Zones, connection: PgConnection) -> tuple[int, int]:
    """Fill the transaction's temp table `members_stage` from the successful files.

    Returns (files read, members staged)."""
    files = sorted(
        zones.url(info.relpath) for info in zones.list_files(SUCCESSFUL_PREFIX) if info.name.endswith(".parquet")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS members_stage "
            "(LIKE sales.members INCLUDING DEFAULTS) ON COMMIT DROP; TRUNCATE members_stage"
        )
        if not files:
            return 0, 0
        with tempfile.TemporaryDirectory(prefix="memberflow-") as folder:
            csv_path = os.path.join(folder, "members.csv")
            with zones.duckdb_connect() as duck:
                latest = duck.sql(read_sql("membership/latest_members.sql"), params={"files": files})
                latest.write_csv(csv_path, header=False)
            with open(csv_path, "rb") as handle:
                cursor.copy_expert(f"COPY members_stage ({_STAGE_COLUMNS}) FROM STDIN WITH (FORMAT csv)", handle)
        cursor.execute("SELECT count(*) FROM members_stage")
        return len(files), cursor.fetchone()[0]


def sync_members(zones: Zones, connection: PgConnection) -> SyncResult:
    """Upsert every successful applicant into sales.members within the caller's transaction."""
    files, _ = stage_members(zones, connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sales.members")
        before = cursor.fetchone()[0]
        cursor.execute(read_sql("membership/upsert_members.sql"))
        written = cursor.rowcount
        cursor.execute("SELECT count(*) FROM sales.members")
        after = cursor.fetchone()[0]
    return SyncResult(batches=files, total=after, inserted=after - before, updated=written - (after - before))
