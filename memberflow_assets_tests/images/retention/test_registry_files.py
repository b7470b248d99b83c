"""Purged images leave nothing personal in PostgreSQL's files: after retention and a CHECKPOINT, no file of
the database (tables, indexes, TOAST, catalogs such as pg_statistic) holds an expired image's client,
sha256, landing path or producer key, while a kept image's are found the same way."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2

from memberflow_assets import postgres
from memberflow_assets.images import registry
from memberflow_assets.images.ingestion.landing import Lander
from memberflow_assets.images.retention import expiry
from memberflow_assets.postgres import ConnectionPool
from memberflow_assets.testing.images import jpeg, small_image
from memberflow_assets.zones import Zones
from memberflow_assets_tests.images.helpers import land_image


def database_files(dsn: str) -> dict[str, bytes]:
    """Every file of the database's folder, after a CHECKPOINT wrote all changed pages to them."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
        cursor.execute(
            "SELECT current_setting('data_directory'), oid FROM pg_database WHERE datname = current_database()"
        )
        data_dir, oid = cursor.fetchone()
    connection.close()
    return {path.name: path.read_bytes() for path in (Path(data_dir) / "base" / str(oid)).iterdir() if path.is_file()}


def files_holding(files: dict[str, bytes], text: str) -> list[str]:
    return sorted(name for name, data in files.items() if text.encode() in data)


def personal_values(sidecar, source_key: str | None = None) -> list[str]:
    return [sidecar.client, sidecar.sha256, sidecar.image_relpath] + ([source_key] if source_key else [])


def test_an_expired_hour_leaves_no_personal_field_in_the_database_files(memberflow_env, pg_dsn):
    postgres.apply_migrations(pg_dsn)
    zones = Zones.from_settings()
    now = datetime.now(UTC)
    old = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=8)
    expired, keys = [], []
    for number in range(30):  # landed 8 days ago, with producer keys, then processed (rows updated)
        client = f"expired-client-{uuid.uuid4().hex[:8]}"
        expired.append(
            land_image(zones, pg_dsn, jpeg(32, 24, seed=number), old + timedelta(minutes=number), client=client)
        )
        keys.append(f"expired-key-{uuid.uuid4().hex[:8]}")
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        for sidecar, key in zip(expired, keys, strict=True):
            cursor.execute("UPDATE images.registry SET source_key = %s WHERE image_id = %s", (key, sidecar.image_id))
    with psycopg2.connect(pg_dsn) as connection:
        rows = [{"image_id": s.image_id, "status": "processed", "processed_at": now, "error": None} for s in expired]
        registry.mark_processed(connection, rows)
    connection.close()
    pool = ConnectionPool(pg_dsn, size=1)
    try:  # a young image, landed by the ingestion code: kept
        kept = Lander(zones, pool, max_pixels=10_000_000).land(
            small_image("PNG", 7), source="kafka", client="kept-client-3b9e", source_key="kept-key-51c2"
        )
    finally:
        pool.close()
    before = database_files(pg_dsn)
    assert all(files_holding(before, value) for value in personal_values(expired[0], keys[0]))  # they were there

    result = expiry.run_retention(zones, pg_dsn, now, f"test-{uuid.uuid4()}", "test")
    assert result.totals["registry_rows_purged"] == 30

    files = database_files(pg_dsn)
    for sidecar, key in zip(expired, keys, strict=True):
        for value in personal_values(sidecar, key):
            assert files_holding(files, value) == [], f"{value!r} of a purged image is still in the database files"
    for value in ("kept-client-3b9e", kept.sha256, kept.landing_path, "kept-key-51c2"):
        assert files_holding(files, value), f"the kept image's {value!r} should be found the same way"


OLD_LAYOUT_PURGE = (
    "UPDATE images.registry SET status = 'purged', purged_at = now(), source = NULL, client = NULL, sha256 = NULL,"
    " size_bytes = NULL, content_type = NULL, received_at = NULL, hour_key = NULL, landing_path = NULL,"
    " source_key = NULL WHERE client = %s"
)


def test_upgrading_removes_what_purges_before_it_left_in_the_files(pg_dsn, monkeypatch):
    """A database purged by the earlier registry layout (tombstones by UPDATE, old row versions left in
    its pages) is rewritten by the migration: those versions leave the files."""
    newer = {path.name for path in postgres.migration_files() if path.name >= "0060"}
    all_files = postgres.migration_files
    monkeypatch.setattr(postgres, "migration_files", lambda: [p for p in all_files() if p.name not in newer])
    postgres.apply_migrations(pg_dsn)
    received = datetime.now(UTC) - timedelta(days=8)
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        for number, client in enumerate(["gone-client-a1", "kept-client-b2"]):
            cursor.execute(
                "INSERT INTO images.registry (image_id, source, client, sha256, received_at, hour_key, landing_path,"
                " source_key) VALUES (%s, 'kafka', %s, %s, %s, '2026-01-01-00', %s, %s)",
                (f"id-{number}", client, f"sha-of-{client}", received, f"path/of/{client}.jpg", f"key-of-{client}"),
            )
        cursor.execute(OLD_LAYOUT_PURGE, ("gone-client-a1",))
    connection.close()
    assert files_holding(database_files(pg_dsn), "sha-of-gone-client-a1")  # the old layout left it behind

    monkeypatch.setattr(postgres, "migration_files", all_files)
    assert sorted(postgres.apply_migrations(pg_dsn)) == sorted(newer)

    files = database_files(pg_dsn)
    for value in ("gone-client-a1", "sha-of-gone-client-a1", "path/of/gone-client-a1", "key-of-gone-client-a1"):
        assert files_holding(files, value) == [], value
    assert files_holding(files, "sha-of-kept-client-b2")  # the live image's fields moved, they did not vanish
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT image_id, status, client, landing_path, source_key FROM images.registry ORDER BY 1")
        assert cursor.fetchall() == [
            ("id-0", "purged", None, None, None),
            ("id-1", "landed", "kept-client-b2", "path/of/kept-client-b2.jpg", "key-of-kept-client-b2"),
        ]
    connection.close()
