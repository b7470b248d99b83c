"""Loading one batch's successful applicants into sales.members. No Dagster.

Cost is O(the batch): its rows go to PostgreSQL with COPY into a temporary table, and three statements
(sql/membership/) settle each membership ID against the members table through its primary key:

1. `claim_member_ids.sql`: an ID nobody holds goes to the batch's first applicant with it.
2. `update_members.sql`: the same person again (same ID, same first name in any case) updates the
   member with their latest row, unless the member's values came from a file that landed later. So
   the values of the latest-landed file win, whatever order batches run in, and reruns write nothing.
3. `record_collisions.sql`: anyone else with a held ID is recorded in sales.membership_id_collisions
   and never overwrites the member.

`rebuild_members` replays every batch file in landing order: the explicit, O(history) disaster recovery.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from psycopg2.extensions import connection as PgConnection

from memberflow_assets.membership.layout import SUCCESSFUL_PREFIX
from memberflow_assets.settings import read_sql
from memberflow_assets.zones import Zones

COUNT_CAP = 10_000  # collision counts in the check's metadata stop here ("10000" means at least that many)
STAGE_COLUMNS = ("membership_id", "first_name", "last_name", "email", "date_of_birth", "mobile_no", "above_18")
_STAGE_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS members_stage (membership_id text, first_name text, last_name text, "
    "email text, date_of_birth date, mobile_no text, above_18 boolean, row_number bigint PRIMARY KEY) ON COMMIT DROP; "
    "TRUNCATE members_stage"
)
# A batch much smaller than the members table looks members up by key (index lookups, O(the batch)): left
# to itself the planner would rather scan the whole table for a hash join, which grows with history. A
# batch at least a tenth of the table's size may hash-join: then the table is O(the batch) too.
_LOOK_UP_BY_KEY = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
_BY_KEY_BELOW_SHARE = 0.1
# Members loaded before their file's landing time was recorded count as landed at -infinity.
_UNKNOWN_LANDING = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class BatchLoad:
    applicants: int  # successful rows of the batch
    inserted: int  # new members
    updated: int  # members whose values changed
    collisions: int  # applicants recorded in sales.membership_id_collisions (this batch)


@dataclass(frozen=True)
class BatchVerification:
    missing: int
    different: int
    unrecorded_collisions: int

    @property
    def passed(self) -> bool:
        return self.missing == self.different == self.unrecorded_collisions == 0


def stage_batch(connection: PgConnection, successful: pa.Table) -> None:
    """Fill the transaction's temp table members_stage with a batch's successful rows (and choose how the
    transaction's statements find their members)."""
    rows = successful.select([*STAGE_COLUMNS, "row_number"])
    buffer = io.BytesIO()
    pa_csv.write_csv(rows, buffer, pa_csv.WriteOptions(include_header=False))
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.execute(_STAGE_TABLE)
        # the planner's row count, or (never analysed yet) the table's size over a member's ~140 bytes
        cursor.execute(
            "SELECT greatest(reltuples, pg_relation_size(oid) / 140) FROM pg_class "
            "WHERE oid = 'sales.members'::regclass"
        )
        if rows.num_rows < _BY_KEY_BELOW_SHARE * cursor.fetchone()[0]:
            cursor.execute(_LOOK_UP_BY_KEY)
        cursor.copy_expert(
            f"COPY members_stage ({', '.join([*STAGE_COLUMNS, 'row_number'])}) FROM STDIN WITH (FORMAT csv)", buffer
        )
        # an index for the statements' lookups by key; statistics, which temporary tables never get by themselves
        cursor.execute("CREATE INDEX ON members_stage (membership_id); ANALYZE members_stage")


def landed_at(successful: pa.Table) -> datetime:
    """When the batch's file landed, as its rows record it."""
    if "landed_at" not in successful.column_names or successful.num_rows == 0:
        return _UNKNOWN_LANDING
    return pc.min(successful["landed_at"]).as_py() or _UNKNOWN_LANDING


def load_batch(connection: PgConnection, batch: str, successful: pa.Table, landed: datetime) -> BatchLoad:
    """Load one batch's successful rows into sales.members within the caller's transaction."""
    stage_batch(connection, successful)
    parameters = {"batch": batch, "landed_at": landed}
    counts = []
    with connection.cursor() as cursor:
        for statement in ("claim_member_ids", "update_members", "record_collisions"):
            cursor.execute(read_sql(f"membership/{statement}.sql"), parameters)
            counts.append(cursor.rowcount)
        cursor.execute("SELECT count(*) FROM sales.membership_id_collisions WHERE batch = %(batch)s", parameters)
        (collisions,) = cursor.fetchone()
    return BatchLoad(applicants=successful.num_rows, inserted=counts[0], updated=counts[1], collisions=collisions)


def verify_batch(connection: PgConnection, batch: str, landed: datetime) -> BatchVerification:
    """Check the staged batch (stage_batch) against sales.members and the collisions table."""
    with connection.cursor() as cursor:
        cursor.execute(read_sql("membership/verify_batch.sql"), {"batch": batch, "landed_at": landed})
        return BatchVerification(*cursor.fetchone())


def collision_summary(connection: PgConnection, sample: int = 50) -> tuple[int, int, list[str]]:
    """Across all batches: (applicants not loaded, membership IDs concerned, the first `sample` of those
    IDs). The counts stop at COUNT_CAP, so each batch's check costs the same however many there are."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM (SELECT FROM sales.membership_id_collisions LIMIT %(cap)s) AS a),"
            " (SELECT count(*) FROM (SELECT DISTINCT membership_id FROM sales.membership_id_collisions"
            " ORDER BY membership_id LIMIT %(cap)s) AS i)",
            {"cap": COUNT_CAP},
        )
        applicants, ids = cursor.fetchone()
        cursor.execute(
            "SELECT DISTINCT membership_id FROM sales.membership_id_collisions ORDER BY membership_id LIMIT %s",
            (sample,),
        )
        return applicants, ids, [membership_id for (membership_id,) in cursor.fetchall()]


def read_successful(zones: Zones, batch: str) -> pa.Table:
    return zones.read_parquet(f"{SUCCESSFUL_PREFIX}/{batch}.parquet")


def _file_landed_at(zones: Zones, batch: str) -> datetime:
    try:
        return landed_at(zones.read_parquet(f"{SUCCESSFUL_PREFIX}/{batch}.parquet", columns=["landed_at"]))
    except (KeyError, pa.ArrowInvalid):  # written before landing times were recorded
        return _UNKNOWN_LANDING


def rebuild_members(zones: Zones, connect: Callable[[], AbstractContextManager[PgConnection]], progress=print) -> int:
    """Replay every batch's successful file into sales.members in landing order, each batch in its own
    transaction (`connect()` gives a connection that commits when its block succeeds). Nothing is
    deleted: members are referenced by transactions. Returns the number of batches loaded. Raises when
    the zones' root is missing (a wrong setting is not an empty history)."""
    zones.require_root()
    names = [info.name for info in zones.list_files(SUCCESSFUL_PREFIX)]
    batch_names = [name.removesuffix(".parquet") for name in names if name.endswith(".parquet") and name[0] != "."]
    for landed, batch in sorted((_file_landed_at(zones, batch), batch) for batch in batch_names):
        with connect() as connection:
            result = load_batch(connection, batch, read_successful(zones, batch), landed)
        progress(f"{batch}: {result.inserted} inserted, {result.updated} updated, {result.collisions} collision(s)")
    return len(batch_names)
