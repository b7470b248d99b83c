"""Refreshing the sales star schema in the DuckDB warehouse from PostgreSQL. No Dagster.

A refresh is one new version of the warehouse, built and published by the warehouse's one writer
(`versions.draft_version`: a copy of the current version for an incremental refresh, an empty file
for a full one; every view added; readers never blocked or disturbed).

Incremental: only transactions whose `updated_at` is at or after the previous refresh's watermark
are extracted (with all their lines) and replace their rows in fact_sales; the dimensions, dim_date,
the membership outcomes and the BI views are rebuilt every time (they are small). All extraction
happens in one REPEATABLE READ snapshot, so facts and dimensions agree.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime

import duckdb
import psycopg2
import psycopg2.extensions

from memberflow_assets import postgres
from memberflow_assets.membership.layout import SUCCESSFUL_PREFIX, UNSUCCESSFUL_PREFIX
from memberflow_assets.settings import read_sql
from memberflow_assets.warehouse import versions
from memberflow_assets.zones import Zones

# Column types of the CSV extracts (PostgreSQL COPY -> DuckDB read_csv).
EXTRACT_COLUMNS = {
    "members": {
        "member_key": "UUID",
        "first_name": "VARCHAR",
        "last_name": "VARCHAR",
        "birth_year": "INTEGER",
        "above_18": "BOOLEAN",
        "source_batch": "VARCHAR",
        "member_since": "TIMESTAMPTZ",
    },
    "items": {
        "item_id": "INTEGER",
        "item_name": "VARCHAR",
        "manufacturer_id": "INTEGER",
        "manufacturer_name": "VARCHAR",
        "cost": "DECIMAL(12,2)",
        "weight_kg": "DECIMAL(10,3)",
        "on_sale": "BOOLEAN",
        "discontinued_at": "TIMESTAMPTZ",
    },
    "transactions": {
        "transaction_id": "BIGINT",
        "member_key": "UUID",
        "status": "VARCHAR",
        "created_at": "TIMESTAMPTZ",
        "sale_date": "DATE",
        "completed_at": "TIMESTAMPTZ",
        "updated_at": "TIMESTAMPTZ",
        "total_price": "DECIMAL(14,2)",
        "total_weight_kg": "DECIMAL(14,3)",
    },
    "lines": {
        "transaction_id": "BIGINT",
        "line_number": "SMALLINT",
        "item_id": "INTEGER",
        "quantity": "INTEGER",
        "unit_price": "DECIMAL(12,2)",
        "unit_weight_kg": "DECIMAL(10,3)",
        "line_price": "DECIMAL(14,2)",
        "line_weight_kg": "DECIMAL(14,3)",
    },
}


@dataclass(frozen=True)
class RefreshResult:
    path: str
    mode: str  # "full" or "incremental"
    changed_since: datetime | None
    watermark: datetime
    transactions_loaded: int
    lines_loaded: int
    fact_rows: int
    fact_transaction_rows: int
    members: int
    items: int
    dates: int
    applications: int
    seconds: float


def last_watermark(connection: duckdb.DuckDBPyConnection) -> datetime | None:
    """Where the next incremental refresh starts reading changes (None: never refreshed)."""
    return connection.execute("SELECT max(watermark) FROM meta.refreshes").fetchall()[0][0]


EXTRACT_LOCK_TIMEOUT_SECONDS = 60.0


class ExtractLockTimeout(RuntimeError):
    """The extract gave up waiting for a lock on the sales tables (someone holds one)."""


def extract(pg_dsn: str, since: datetime | None, folder: str) -> tuple[datetime, dict[str, str]]:
    """CSV files of every extract (in `folder`) from one consistent snapshot, and the next watermark.

    A lock on the sales tables (a team user's LOCK TABLE, a long ALTER) is waited for at most
    EXTRACT_LOCK_TIMEOUT_SECONDS: a refresh then fails naming who holds it, instead of hanging every later one.
    """
    os.makedirs(folder, exist_ok=True)
    lock_timeout = f"-c lock_timeout={EXTRACT_LOCK_TIMEOUT_SECONDS * 1000:.0f}"
    connection = postgres.connect(pg_dsn, "memberflow-warehouse", options=lock_timeout)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(read_sql("warehouse/watermark.sql"))
            watermark = cursor.fetchone()[0]
        connection.autocommit = False
        connection.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        paths = {}
        with connection, connection.cursor() as cursor:
            cursor.execute("SET LOCAL TimeZone = 'UTC'")
            params = {"since": since or "-infinity"}
            for name in EXTRACT_COLUMNS:
                query = cursor.mogrify(read_sql(f"warehouse/extract_{name}.sql"), params).decode()
                paths[name] = os.path.join(folder, f"{name}.csv")
                with open(paths[name], "wb") as handle:
                    cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)", handle)
    except psycopg2.errors.LockNotAvailable as error:
        connection.close()  # before listing the holders: this session's own locks are not the story
        then = "the published warehouse is unchanged and the next refresh tries again."
        raise ExtractLockTimeout(
            postgres.lock_wait_message(pg_dsn, "the warehouse extract", EXTRACT_LOCK_TIMEOUT_SECONDS, then)
        ) from error
    finally:
        connection.close()
    return watermark, paths


def _stage(connection: duckdb.DuckDBPyConnection, paths: dict[str, str]) -> None:
    for name, columns in EXTRACT_COLUMNS.items():
        connection.execute(
            f"CREATE OR REPLACE TEMP TABLE stage_{name} AS "
            "SELECT * FROM read_csv($path, header = true, columns = $columns, auto_detect = false)",
            {"path": paths[name], "columns": columns},
        )


def _application_files(zones: Zones | None) -> list[str]:
    if zones is None:
        return []
    return sorted(
        zones.url(info.relpath)
        for prefix in (SUCCESSFUL_PREFIX, UNSUCCESSFUL_PREFIX)
        for info in zones.list_files(prefix)
        if info.name.endswith(".parquet")
    )


def _load(connection: duckdb.DuckDBPyConnection, application_files: list[str]) -> None:
    connection.execute("DELETE FROM dim_member; INSERT INTO dim_member BY NAME SELECT * FROM stage_members")
    connection.execute("DELETE FROM dim_item; INSERT INTO dim_item SELECT * FROM stage_items")
    connection.execute(read_sql("warehouse/load_facts.sql"))
    connection.execute(read_sql("warehouse/dim_date.sql"))
    connection.execute("DELETE FROM application_outcomes")
    if application_files:
        connection.execute(
            "INSERT INTO application_outcomes "
            "SELECT batch, row_number, is_successful, coalesce(rejection_reasons, '') "
            "FROM read_parquet($files, union_by_name = true)",
            {"files": application_files},
        )


def _build(
    connection: duckdb.DuckDBPyConnection, pg_dsn: str, zones: Zones | None, incremental: bool, folder: str
) -> tuple[datetime | None, datetime, int, int]:
    """Bring an open warehouse file up to date. Returns (changed_since, watermark, transactions, lines)."""
    since = last_watermark(connection) if incremental else None
    watermark, paths = extract(pg_dsn, since, folder)
    _stage(connection, paths)
    transactions, lines = connection.execute(
        "SELECT (SELECT count(*) FROM stage_transactions), (SELECT count(*) FROM stage_lines)"
    ).fetchall()[0]
    # One transaction: no intermediate checkpoints while millions of rows are written.
    connection.execute("BEGIN")
    _load(connection, _application_files(zones))
    connection.execute(
        "INSERT INTO meta.refreshes VALUES (now(), $mode, $since, $watermark, $transactions, $lines)",
        {
            "mode": "incremental" if since else "full",
            "since": since,
            "watermark": watermark,
            "transactions": transactions,
            "lines": lines,
        },
    )
    connection.execute("COMMIT")
    return since, watermark, transactions, lines


def refresh_warehouse(
    pg_dsn: str, warehouse_path: str, zones: Zones | None = None, full: bool = False
) -> RefreshResult:
    """Bring the warehouse up to date with PostgreSQL (and the membership outputs and image metadata in
    `zones`) by publishing a new version of it.

    Incremental unless `full` is set or there is no warehouse yet (or none this release can copy).
    Returns what was done.
    """
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="memberflow-wh-") as extracts,
        versions.draft_version(warehouse_path, zones, fresh=full) as draft,
    ):
        connection = draft.connection
        since, watermark, transactions, lines = _build(connection, pg_dsn, zones, draft.based_on is not None, extracts)
        counts = connection.execute(
            "SELECT (SELECT count(*) FROM fact_sales), (SELECT count(*) FROM fact_transactions), "
            "(SELECT count(*) FROM dim_member), "
            "(SELECT count(*) FROM dim_item), (SELECT count(*) FROM dim_date), "
            "(SELECT count(*) FROM application_outcomes)"
        ).fetchall()[0]
    return RefreshResult(
        draft.published,
        "incremental" if since else "full",
        since,
        watermark,
        transactions,
        lines,
        *counts,
        seconds=time.monotonic() - started,
    )
