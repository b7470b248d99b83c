"""Test helpers for images: landing them as the ingestion contract says, and reading the registry.

`land_image` writes the image bytes, then its `Sidecar` (layout.py), then the images.registry row — what
the ingestion helper's landing function (images/ingestion/landing.py, issue 4) does. Once that is on main, this
should call it instead.
"""

import uuid
from datetime import datetime

import psycopg2

from memberflow_assets.images.layout import Sidecar, hour_key
from memberflow_assets.images.processing.one_image import sha256_hex
from memberflow_assets.zones import Zones

FORMAT_INFO = {  # Pillow format -> (content type, extension), as the ingestion API records them
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
    "TIFF": ("image/tiff", "tif"),
    "BMP": ("image/bmp", "bmp"),
}
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
    content_type, ext = FORMAT_INFO[fmt]
    sidecar = Sidecar(
        image_id=image_id or uuid.uuid4().hex,
        source=source,
        client=client,
        received_at=received_at.isoformat(),
        sha256=sha256_hex(data),
        size_bytes=len(data),
        content_type=content_type,
        format=fmt,
        ext=ext,
    )
    zones.write_bytes(sidecar.image_relpath, data)
    if not with_sidecar:
        return sidecar
    zones.write_bytes(sidecar.relpath, sidecar.to_json())
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
                    content_type,
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
