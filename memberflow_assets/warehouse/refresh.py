"""Refreshing the sales star schema in the DuckDB warehouse from PostgreSQL. No Dagster.

Readers are never blocked: the refresh never opens the published file for writing. It builds the
next version in a temporary file beside it (a copy of the current one for an incremental refresh,
an empty one for a full refresh) and publishes it as a new version: the warehouse path is a
symbolic link that one rename switches to the new version. A reader that has the warehouse open
keeps reading the version it opened (kept for REPLACED_VERSION_GRACE_SECONDS after it was
replaced); the next connection sees the new one. (DuckDB lets one process write a file or many read
it, never both at once, so writing in place would lock analysts out for the whole refresh, and an
analyst's open session would make the refresh fail.)

Incremental: only transactions whose `updated_at` is at or after the previous refresh's watermark
are extracted (with all their lines) and replace their rows in fact_sales; the dimensions, dim_date,
the membership outcomes and the BI views are rebuilt every time (they are small). All extraction
happens in one REPEATABLE READ snapshot, so facts and dimensions agree.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import duckdb
import psycopg2
import psycopg2.extensions

from memberflow_assets.membership.batches import SUCCESSFUL_PREFIX, UNSUCCESSFUL_PREFIX
from memberflow_assets.settings import read_sql
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


# How long a replaced version stays on disk. A reader keeps the version it opened; over a network
# filesystem (EFS in production) a deleted file cannot be read further even while open, so old
# versions are kept this long rather than deleted by the next refresh.
REPLACED_VERSION_GRACE_SECONDS = 3600.0


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


@contextmanager
def refresh_lock(warehouse_path: str) -> Iterator[None]:
    """One refresh at a time per warehouse file (a second one waits), across processes."""
    folder, name = os.path.split(warehouse_path)
    with open(os.path.join(folder, f".{name}.refresh-lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def versions_folder(warehouse_path: str) -> str:
    folder, name = os.path.split(warehouse_path)
    return os.path.join(folder, f".{name}.versions")


def publish(temp_path: str, warehouse_path: str, grace_seconds: float = REPLACED_VERSION_GRACE_SECONDS) -> str:
    """Make a finished (closed, checkpointed) database file the current warehouse, atomically and durably.

    The file becomes a new version in the versions folder and `warehouse_path`, a symbolic link, is
    switched to it with one rename. Versions replaced more than `grace_seconds` ago are deleted.
    Returns the new version's path.
    """
    folder = os.path.dirname(warehouse_path)
    versions = versions_folder(warehouse_path)
    os.makedirs(versions, exist_ok=True)
    version = os.path.join(versions, f"{time.time_ns() // 1000:017d}-{uuid.uuid4().hex[:8]}.duckdb")
    _fsync(temp_path)
    os.replace(temp_path, version)
    link = os.path.join(folder, f".{os.path.basename(warehouse_path)}.{uuid.uuid4().hex}.link")
    os.symlink(os.path.relpath(version, folder), link)
    os.replace(link, warehouse_path)
    _fsync(versions)
    _fsync(folder)
    _prune(versions, grace_seconds)
    return version


def _prune(versions: str, grace_seconds: float) -> None:
    """Delete the versions that were replaced (by the next one) more than grace_seconds ago."""
    names = sorted(name for name in os.listdir(versions) if name.endswith(".duckdb"))
    now_us = time.time_ns() // 1000
    for replaced, successor in zip(names, names[1:], strict=False):
        published_us = int(successor.split("-", 1)[0])  # when `replaced` stopped being current
        if now_us - published_us >= grace_seconds * 1_000_000:
            os.remove(os.path.join(versions, replaced))


def connect(path: str, zones: Zones | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to a warehouse file, in UTC (and with the zones' filesystem when given)."""
    connection = zones.duckdb_connect(path, read_only=read_only) if zones else duckdb.connect(path, read_only=read_only)
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def last_watermark(connection: duckdb.DuckDBPyConnection) -> datetime | None:
    """Where the next incremental refresh starts reading changes (None: never refreshed)."""
    return connection.execute("SELECT max(watermark) FROM meta.refreshes").fetchall()[0][0]


def extract(pg_dsn: str, since: datetime | None, folder: str) -> tuple[datetime, dict[str, str]]:
    """CSV files of every extract (in `folder`) from one consistent snapshot, and the next watermark."""
    os.makedirs(folder, exist_ok=True)
    connection = psycopg2.connect(pg_dsn, application_name="memberflow-warehouse")
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
    connection.execute(read_sql("warehouse/bi_views.sql"))


def _build(
    connection: duckdb.DuckDBPyConnection, pg_dsn: str, zones: Zones | None, incremental: bool, folder: str
) -> tuple[datetime | None, datetime, int, int]:
    """Bring an open warehouse file up to date. Returns (changed_since, watermark, transactions, lines)."""
    connection.execute(read_sql("warehouse/schema.sql"))
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
    """Bring the warehouse up to date with PostgreSQL (and the membership outputs in `zones`).

    Incremental unless `full` is set or there is no warehouse yet. Returns what was done.
    """
    started = time.monotonic()
    warehouse_path = os.path.abspath(warehouse_path)
    folder, name = os.path.split(warehouse_path)
    os.makedirs(folder, exist_ok=True)
    temp_path = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    with refresh_lock(warehouse_path), tempfile.TemporaryDirectory(prefix="memberflow-wh-") as extracts:
        try:
            incremental = not full and os.path.exists(warehouse_path)
            if incremental:
                shutil.copyfile(warehouse_path, temp_path)
            with connect(temp_path, zones) as connection:
                since, watermark, transactions, lines = _build(connection, pg_dsn, zones, incremental, extracts)
                counts = connection.execute(
                    "SELECT (SELECT count(*) FROM fact_sales), (SELECT count(*) FROM fact_transactions), "
                    "(SELECT count(*) FROM dim_member), "
                    "(SELECT count(*) FROM dim_item), (SELECT count(*) FROM dim_date), "
                    "(SELECT count(*) FROM application_outcomes)"
                ).fetchall()[0]
                connection.execute("CHECKPOINT")
            publish(temp_path, warehouse_path)
        finally:
            for leftover in (temp_path, f"{temp_path}.wal"):
                if os.path.exists(leftover):
                    os.remove(leftover)
    return RefreshResult(
        warehouse_path,
        "incremental" if since else "full",
        since,
        watermark,
        transactions,
        lines,
        *counts,
        seconds=time.monotonic() - started,
    )
