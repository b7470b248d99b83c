"""Test helpers for images: landing them as the ingestion contract says, and reading the registry.

`land_image` writes the image bytes, then its `Sidecar` (layout.py), then the images.registry row, without
the ingestion's checks (landing.py), so that tests can land what ingestion would refuse.
"""

from datetime import datetime

import psycopg2

from memberflow_assets.images.layout import Sidecar, hour_key
from memberflow_assets.testing.images import land_files
from memberflow_assets.zones import Zones

CLIENT = "shop-frontend-7f3a"  # must never show up in Dagster metadata, BI views or the audit


def land_image(
    zones: Zones,
    dsn: str | None,
    data: bytes,
    received_at: datetime,
    *,
    fmt: str = "JPEG",
    image_id: str | None = None,
    source: str = "api",
    client: str = CLIENT,
    with_sidecar: bool = True,
) -> Sidecar:
    """Land one image: bytes, then sidecar, then (when `dsn` is given) its images.registry row."""
    sidecar = land_files(
        zones, data, received_at, client=client, fmt=fmt, image_id=image_id, source=source, with_sidecar=with_sidecar
    )
    if not with_sidecar:
        return sidecar
    if dsn is not None:
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO images.registry (image_id, status, source, client, sha256, size_bytes, content_type,"
                " received_at, hour_key, landing_path) VALUES (%s, 'landed', %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    sidecar.image_id,
                    source,
                    client,
                    sidecar.sha256,
                    len(data),
                    sidecar.content_type,
                    received_at,
                    hour_key(received_at),
                    sidecar.image_relpath,
                ),
            )
        connection.close()
    return sidecar


def registry_rows(dsn: str) -> dict[str, tuple]:
    """image_id -> (status, error, client, hour_key, processed_at is set, purged_at is set)."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT image_id, status, error, client, hour_key, processed_at IS NOT NULL, purged_at IS NOT NULL"
            " FROM images.registry"
        )
        rows = {row[0]: row[1:] for row in cursor.fetchall()}
    connection.close()
    return rows
