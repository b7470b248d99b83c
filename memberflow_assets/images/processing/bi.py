"""The image BI views of the warehouse (`bi` schema): sql/images/bi_views.sql over the metadata Parquet
files where they are (a local path, or s3:// through the zones' fsspec filesystem). No Dagster; the
warehouse's writer (memberflow_assets/warehouse/versions.py) creates them in every version it publishes.

The views read the files themselves, so a new hour shows up and a purged one disappears without a
new version. Only whether there are any files at all is fixed when a version is built (DuckDB 1.5, the
analysts' shell, fails on a glob that matches nothing): when that changes, the `image_bi_views` asset,
run by its automation condition after each processed hour and each purge, publishes a new version.

DuckDB's httpfs extension cannot be installed here (no downloads at run time), so with zones in S3 the
views name `s3://...` URLs and are readable from connections that have the zones' filesystem
registered (`Zones.duckdb_connect(...)`, as every memberflow reader does). Where httpfs is installed,
plain DuckDB reads the same views with its own S3 credentials.
"""

from __future__ import annotations

import hashlib

from memberflow_assets.images.layout import METADATA_PREFIX
from memberflow_assets.settings import read_sql
from memberflow_assets.zones import Zones

VIEWS_SQL = "images/bi_views.sql"
IMAGE_VIEWS = ("image_metadata", "images_per_hour", "image_rejections", "image_formats", "image_sizes")


def views_code_version() -> str:
    """The views' code version (shown in the UI): a digest of their SQL file, so it changes with it."""
    return hashlib.sha256(read_sql(VIEWS_SQL).encode()).hexdigest()[:16]


def metadata_glob(zones: Zones) -> str:
    return zones.url(f"{METADATA_PREFIX}/*.parquet")


def metadata_files_exist(zones: Zones | None) -> bool:
    return zones is not None and any(info.name.endswith(".parquet") for info in zones.list_files(METADATA_PREFIX))


def views_sql(zones: Zones | None) -> str:
    """The views over the zones' metadata files (no zones, or no file yet: the same views, empty)."""
    union = ""
    if metadata_files_exist(zones):
        literal = "'" + metadata_glob(zones).replace("'", "''") + "'"
        union = f"UNION ALL BY NAME SELECT * FROM read_parquet({literal})"
    return read_sql(VIEWS_SQL).replace("{union_metadata_files}", union)
