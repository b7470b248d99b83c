"""Processing's and retention's writes to `images.registry` (PostgreSQL). No Dagster.

The caller owns the connection and its transaction; SQL lives in sql/images/.
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg2.extensions import connection as PgConnection
from psycopg2.extras import execute_values

from memberflow_assets.settings import read_sql


def lock_hour(connection: PgConnection, key: str) -> None:
    """Wait for, then hold until the transaction ends, the lock of one hourly partition: its row of
    images.hour_locks, which no team can read or lock (migration 0063).

    Two runs of the same hour (the sensor asks again while one is running) would otherwise both
    rewrite its metadata file, and the one that listed fewer images could finish last.
    """
    with connection.cursor() as cursor:  # the upsert row-locks the hour's row, new or not
        cursor.execute(
            "INSERT INTO images.hour_locks (hour_key) VALUES (%s)"
            " ON CONFLICT (hour_key) DO UPDATE SET hour_key = EXCLUDED.hour_key",
            (key,),
        )


def mark_processed(connection: PgConnection, rows: Iterable[dict]) -> tuple[int, list[str]]:
    """Bring status/processed_at/error in line with metadata rows (all of an hour's: a row missed by an
    earlier run, because its registry row came late, is fixed by the next). Returns (rows changed,
    ids without a registry row)."""
    values = [(row["image_id"], row["status"], row["processed_at"], row["error"]) for row in rows]
    if not values:
        return 0, []
    with connection.cursor() as cursor:
        pages = execute_values(cursor, read_sql("images/mark_processed.sql"), values, page_size=1000, fetch=True)
    return sum(changed for changed, _ in pages), sorted(image_id for _, missing in pages for image_id in missing)
