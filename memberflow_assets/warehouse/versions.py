"""The warehouse's one writer: every change to the DuckDB warehouse is a new, whole version. No Dagster.

DuckDB lets one process write a file or many processes read it, never both at once. So nothing ever
opens a published version for writing: a sales refresh (incremental or full) and a change of the
views alike go through `draft_version`, which, under one lock per warehouse,

1. starts a private file beside the warehouse: a copy of the current version, or a new file;
2. hands it to the caller to load;
3. creates every view of the warehouse in it (the sales views and the image views: no kind of
   refresh can publish a version without one), records their versions in `meta.views`;
4. checkpoints and closes it, and publishes it: the warehouse path is a symbolic link that one
   rename switches to the new version.

A reader that has a version open keeps reading it (replaced versions stay on disk for
REPLACED_VERSION_GRACE_SECONDS: over EFS a deleted file cannot be read further even while open), the
next connection sees the new one, and no reader is ever refused or makes a refresh fail.

Files are written with DuckDB's storage compatibility version v1.5.0, so the DuckDB shell the project
installs (duckdb-cli 1.5) opens them read-only; a current version in another format (an older
deployment's) is not copied but rebuilt from scratch.

A published version is read-only on disk (mode 0444): an analyst who opens it without `-readonly` is
refused instead of getting a read-write session that locks every other reader out and changes the
published file. Its name carries the SHA-256 of its content, checked while the next draft copies it:
a version changed after publishing (by root, whom no file mode stops) or unreadable is not carried
forward; that draft starts from an empty file, so the refresh becomes a full one.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb

from memberflow_assets.images.processing import bi as image_bi
from memberflow_assets.settings import read_sql
from memberflow_assets.zones import Zones, fsync_path

STORAGE_COMPATIBILITY_VERSION = "v1.5.0"
# How long a replaced version stays on disk for the readers that still have it open.
REPLACED_VERSION_GRACE_SECONDS = 3600.0
SALES_VIEWS_SQL = "warehouse/bi_views.sql"
# <publish time, µs>-<SHA-256 of the content, 32 hex>.duckdb; 8 random hex: an older release's version
VERSION_NAME = re.compile(r"^(\d{17})-([0-9a-f]{32}|[0-9a-f]{8})\.duckdb$")
PUBLISHED_MODE = 0o444
log = logging.getLogger("memberflow.warehouse")


def versions_folder(warehouse_path: str) -> str:
    folder, name = os.path.split(os.path.abspath(warehouse_path))
    return os.path.join(folder, f".{name}.versions")


def current_version(warehouse_path: str) -> str | None:
    """The file the warehouse path points at now (None: nothing published yet)."""
    path = os.path.realpath(warehouse_path)
    return path if os.path.isfile(path) else None


def open_published(warehouse_path: str, zones: Zones | None = None, config: dict | None = None):
    """A read-only connection, in UTC, to the version published now (with the zones' filesystem when given).

    The version file is opened by its own name, not through the link: DuckDB keeps one database
    instance per path and process, so a long-lived process that opened the link once would otherwise
    be handed the old version again after a newer one was published.
    """
    version = current_version(warehouse_path)
    if version is None:
        raise FileNotFoundError(f"no warehouse published at {warehouse_path} yet (run a warehouse refresh)")
    connection = (zones.duckdb_connect if zones else duckdb.connect)(version, read_only=True, config=config or {})
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def _open_for_writing(path: str, zones: Zones | None) -> duckdb.DuckDBPyConnection:
    config = {"storage_compatibility_version": STORAGE_COMPATIBILITY_VERSION}
    connection = (zones.duckdb_connect if zones else duckdb.connect)(path, config=config)
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def _storage_version(connection: duckdb.DuckDBPyConnection) -> str | None:
    return connection.execute(
        "SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()[0][0]


@contextmanager
def writer_lock(warehouse_path: str) -> Iterator[None]:
    """One writer at a time per warehouse (a second one waits), across processes and hosts sharing the folder."""
    folder, name = os.path.split(os.path.abspath(warehouse_path))
    with open(os.path.join(folder, f".{name}.refresh-lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def views_sql(zones: Zones | None) -> dict[str, str]:
    """Every view of the warehouse, per domain: the SQL each published version runs."""
    return {"sales": read_sql(SALES_VIEWS_SQL), "images": image_bi.views_sql(zones)}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _create_views(connection: duckdb.DuckDBPyConnection, zones: Zones | None) -> None:
    sql = views_sql(zones)
    connection.execute("BEGIN")
    for statements in sql.values():
        connection.execute(statements)
    connection.execute(
        "CREATE OR REPLACE TABLE meta.views AS SELECT * FROM (VALUES "
        + ", ".join("(?, ?)" for _ in sql)
        + ") AS views(domain, version)",
        [value for domain, text in sql.items() for value in (domain, _digest(text))],
    )
    connection.execute("COMMIT")


def views_version(zones: Zones | None, domain: str) -> str:
    """The version of one domain's views a version built now gets (compare with `published_views`)."""
    return _digest(views_sql(zones)[domain])


def published_views(warehouse_path: str) -> dict[str, str]:
    """domain -> version of the views in the published warehouse ({} when none is published, or it predates
    the record)."""
    if current_version(warehouse_path) is None:
        return {}
    with open_published(warehouse_path) as connection:
        recorded = connection.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'meta' AND table_name = 'views'"
        ).fetchall()[0][0]
        return dict(connection.execute("FROM meta.views").fetchall()) if recorded else {}


def image_views_current(warehouse_path: str, zones: Zones | None) -> bool:
    """Whether the published warehouse has the image views a version built now would get (with no metadata
    file at all, no published views count as current: a deployment without images needs none)."""
    published = published_views(warehouse_path).get("images")
    return published == views_version(zones, "images") or (
        published is None and not image_bi.metadata_files_exist(zones)
    )


@dataclass
class Draft:
    """The version being built: its connection (read-write, private to the writer) and where it came from."""

    connection: duckdb.DuckDBPyConnection
    based_on: str | None  # the version it is a copy of; None: a new file
    published: str | None = None  # its path once published


def _remove_leftovers(warehouse_path: str) -> None:
    """Drafts and links of writers that died (only the lock holder calls this, so none is in progress)."""
    folder, name = os.path.split(warehouse_path)
    prefix = os.path.join(glob.escape(folder), f".{glob.escape(name)}.")
    for leftover in glob.glob(f"{prefix}*.tmp*") + glob.glob(f"{prefix}*.link"):
        if os.path.isdir(leftover) and not os.path.islink(leftover):  # DuckDB's spill folder of a draft
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)


def _digest_file(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:32]


def _copy_digesting(source: str, target: str) -> str:
    """Copy source to a new (writable) file target; returns the digest of what was copied."""
    digest = hashlib.sha256()
    with open(source, "rb") as reading, open(target, "wb") as writing:
        while chunk := reading.read(1 << 20):
            digest.update(chunk)
            writing.write(chunk)
    return digest.hexdigest()[:32]


def _copy_current(current: str, draft_path: str) -> bool:
    """Copy the current version into the draft; False when it must not be carried forward."""
    recorded = VERSION_NAME.match(os.path.basename(current))
    recorded = recorded.group(2) if recorded and len(recorded.group(2)) == 32 else None
    try:
        copied = _copy_digesting(current, draft_path)
    except OSError as error:
        log.warning("warehouse version %s cannot be read (%s): building the next version from scratch", current, error)
        return False
    if recorded is None:  # an older release's version, maybe written in place: its WAL holds its last writes
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(f"{current}.wal", f"{draft_path}.wal")
    elif copied != recorded:
        log.warning(
            "warehouse version %s changed after it was published (opened for writing by hand?): "
            "not copied, building the next version from scratch",
            current,
        )
        return False
    return True


def _start_from_current(warehouse_path: str, draft_path: str, zones: Zones | None) -> Draft:
    current = current_version(warehouse_path)
    if current is not None:
        if _copy_current(current, draft_path):
            try:
                connection = _open_for_writing(draft_path, zones)
            except duckdb.Error as error:  # damaged: start afresh rather than fail every refresh
                log.warning(
                    "warehouse version %s cannot be opened (%s): building the next one from scratch", current, error
                )
            else:
                if _storage_version(connection) == f"{STORAGE_COMPATIBILITY_VERSION}+":
                    return Draft(connection, current)
                connection.close()  # another storage format: start afresh rather than keep a file the shell cannot read
        for path in (draft_path, f"{draft_path}.wal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    return Draft(_open_for_writing(draft_path, zones), None)


@contextmanager
def draft_version(warehouse_path: str, zones: Zones | None = None, fresh: bool = False) -> Iterator[Draft]:
    """Build the next version of the warehouse and publish it when the block succeeds (see the module doc).

    `fresh`: start from an empty file instead of a copy of the current version. The schema
    (sql/warehouse/schema.sql) exists in the draft before the block runs; the views are created after it.
    If the block fails, nothing is published and the draft is deleted.
    """
    warehouse_path = os.path.abspath(warehouse_path)
    folder, name = os.path.split(warehouse_path)
    os.makedirs(folder, exist_ok=True)
    draft_path = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    with writer_lock(warehouse_path):
        _remove_leftovers(warehouse_path)
        draft = Draft(_open_for_writing(draft_path, zones), None) if fresh else None
        try:
            draft = draft or _start_from_current(warehouse_path, draft_path, zones)
            draft.connection.execute(read_sql("warehouse/schema.sql"))
            yield draft
            _create_views(draft.connection, zones)
            draft.connection.execute("CHECKPOINT")
            draft.connection.close()
            draft.published = publish(draft_path, warehouse_path)
        finally:
            if draft is not None:
                draft.connection.close()
            for leftover in (draft_path, f"{draft_path}.wal"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(leftover)


def republish_views(warehouse_path: str, zones: Zones | None) -> str:
    """Publish a version with every view created anew (the data as it is; a new, empty warehouse when none
    exists yet). Returns the new version's path."""
    with draft_version(warehouse_path, zones) as draft:
        pass
    return draft.published


def publish(draft_path: str, warehouse_path: str, grace_seconds: float = REPLACED_VERSION_GRACE_SECONDS) -> str:
    """Make a finished (closed, checkpointed) database file the current warehouse, atomically and durably.

    The file becomes a new version in the versions folder, read-only and named with its digest, and
    `warehouse_path`, a symbolic link, is switched to it with one rename. Versions replaced more than
    `grace_seconds` ago are deleted. Returns the new version's path.
    """
    warehouse_path = os.path.abspath(warehouse_path)
    folder = os.path.dirname(warehouse_path)
    versions = versions_folder(warehouse_path)
    os.makedirs(versions, exist_ok=True)
    version = os.path.join(versions, f"{time.time_ns() // 1000:017d}-{_digest_file(draft_path)}.duckdb")
    fsync_path(draft_path)
    os.chmod(draft_path, PUBLISHED_MODE)  # before it is visible: no reader ever sees it writable
    os.replace(draft_path, version)
    link = os.path.join(folder, f".{os.path.basename(warehouse_path)}.{uuid.uuid4().hex}.link")
    os.symlink(os.path.relpath(version, folder), link)
    os.replace(link, warehouse_path)
    fsync_path(versions)
    fsync_path(folder)
    _prune(versions, version, grace_seconds)
    return version


def _prune(versions: str, current: str, grace_seconds: float) -> None:
    """Delete the versions replaced (by their successor) more than grace_seconds ago; never the current one,
    nor a file this module did not name."""
    names = sorted(name for name in os.listdir(versions) if VERSION_NAME.match(name))
    now_us = time.time_ns() // 1000
    for replaced, successor in zip(names, names[1:], strict=False):
        published_us = int(VERSION_NAME.match(successor).group(1))  # when `replaced` stopped being current
        path = os.path.join(versions, replaced)
        if path != current and now_us - published_us >= grace_seconds * 1_000_000:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
