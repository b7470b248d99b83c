"""The image BI views in the DuckDB warehouse (`bi` schema): created from sql/images/bi_views.sql over the
metadata Parquet files where they are (a local path, or s3:// through the zones' fsspec filesystem).
No Dagster.

DuckDB's httpfs extension cannot be installed here (no downloads at run time), so with zones in S3 the
views name `s3://...` URLs and are readable from connections that have the zones' filesystem
registered: `Zones.duckdb_connect(...)`, used by the assets and by `memberflow images-bi --sql`. Where
httpfs is installed (production analysts' machines), plain DuckDB reads the same views with its own
S3 credentials.
"""

from __future__ import annotations

import hashlib
import time

import duckdb

from memberflow_assets.images.layout import METADATA_PREFIX
from memberflow_assets.settings import read_sql
from memberflow_assets.zones import Zones

VIEWS_SQL = "images/bi_views.sql"
IMAGE_VIEWS = ("image_metadata", "images_per_hour", "image_rejections", "image_formats", "image_sizes")
LOCK_WAIT_SECONDS = 60.0


def metadata_glob(zones: Zones) -> str:
    return zones.url(f"{METADATA_PREFIX}/*.parquet")


def views_sql(zones: Zones) -> str:
    literal = "'" + metadata_glob(zones).replace("'", "''") + "'"
    return read_sql(VIEWS_SQL).replace("{metadata_glob}", literal)


def views_version(zones: Zones) -> str:
    """Changes when the view definitions or the place they read from change."""
    return hashlib.sha256(views_sql(zones).encode()).hexdigest()[:16]


def connect_warehouse(zones: Zones, warehouse: str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, waiting while another process holds its write lock (DuckDB allows one writer)."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return zones.duckdb_connect(warehouse, read_only=read_only)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def create_views(zones: Zones, warehouse: str) -> dict[str, int]:
    """Create or replace the image views; returns each view's row count as a smoke test."""
    connection = connect_warehouse(zones, warehouse)
    try:
        connection.execute(views_sql(zones))
        return {view: connection.execute(f"SELECT count(*) FROM bi.{view}").fetchone()[0] for view in IMAGE_VIEWS}
    finally:
        connection.close()
