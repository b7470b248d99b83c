"""Landing an image: the one code path the upload API and the Kafka consumer share. No Dagster.

    validate (by content) -> sha256 -> image id -> claim the id in images.registry
        -> write the image -> write the sidecar (the moment readers can see it)

The image id is derived from (client, sha256), so the same bytes from the same client always get the
same id. The registry row is claimed *before* the files are written, in one INSERT ... ON CONFLICT:

- two concurrent uploads of the same bytes cannot both claim it, and a landing can never be written
  twice under two different hours;
- a crash after the claim leaves a row whose sidecar does not exist yet; the retry (a client retrying,
  or Kafka redelivering an uncommitted message) finds the row, sees the sidecar missing and writes the
  files at the row's recorded place — no duplicate, nothing lost;
- a crash before the sidecar's rename leaves nothing a reader looks at: readers go by sidecars
  (layout.py), and every file is written under a temporary name and renamed (one PUT on S3).

Bytes that are not an acceptable image go to quarantine/images/<hour>/ with a reason file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as PgConnection

from memberflow_assets.images import layout
from memberflow_assets.images.validation import ImageFacts, ImageRejected, inspect_image
from memberflow_assets.settings import read_sql
from memberflow_assets.zones import Zones

log = logging.getLogger(__name__)

SOURCES = ("api", "kafka")
SOURCE_KEY_CONSTRAINT = "registry_client_source_key"
_REGISTRY_COLUMNS = (
    "status, source, client, sha256, size_bytes, content_type, received_at, landing_path, source_key,"
    " error, processed_at, purged_at"
)


def image_id_for(client: str, sha256: str) -> str:
    """The id of `client`'s image with content `sha256`: 32 hex characters, stable across uploads."""
    return hashlib.sha256(f"{client}\n{sha256}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Landed:
    image_id: str
    sha256: str
    size_bytes: int
    content_type: str
    received_at: datetime
    status: str  # registry status: 'landed' for a new image; whatever it reached for a duplicate
    duplicate: bool  # the image was already registered; nothing new was stored
    landing_path: str | None  # zone-relative path of the image (None: already processed away)


@dataclass(frozen=True)
class RegistryRow:
    status: str
    source: str | None
    client: str | None
    sha256: str | None
    size_bytes: int | None
    content_type: str | None
    received_at: datetime | None
    landing_path: str | None
    source_key: str | None
    error: str | None
    processed_at: datetime | None
    purged_at: datetime | None


class ConnectionPool:
    """A small blocking pool of autocommit psycopg2 connections (psycopg2's own pools raise when empty)."""

    def __init__(self, dsn: str, size: int):
        self.dsn = dsn
        self._idle: queue.LifoQueue[PgConnection] = queue.LifoQueue()
        self._tokens: queue.Queue[None] = queue.Queue()
        for _ in range(size):
            self._tokens.put(None)

    @contextmanager
    def connection(self) -> Iterator[PgConnection]:
        self._tokens.get()
        try:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                connection = psycopg2.connect(self.dsn, application_name="memberflow-ingest")
                connection.autocommit = True
            try:
                yield connection
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                connection.close()  # a broken connection is not handed out again
                raise
            self._idle.put(connection)
        finally:
            self._tokens.put(None)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()


class Lander:
    """Lands images into the zones and the registry; thread-safe (the pool hands one connection per call)."""

    def __init__(self, zones: Zones, pool: ConnectionPool, max_pixels: int, fsync: bool = True):
        self.zones = zones
        self.pool = pool
        self.max_pixels = max_pixels
        self.fsync = fsync and not zones.is_s3  # an S3 PUT is durable when it returns
        self._claim_sql = read_sql("images/ingest_claim.sql")
        self._release_sql = read_sql("images/ingest_release.sql")

    # -- landing ---------------------------------------------------------------------------------
    def land(
        self,
        data: bytes,
        *,
        source: str,
        client: str,
        event_time: str | None = None,
        kafka: dict | None = None,
        source_key: str | None = None,
    ) -> Landed:
        """Store `data` as `client`'s image, once. Raises ImageRejected when it is not an acceptable image."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        facts = inspect_image(data, self.max_pixels)
        sha256 = hashlib.sha256(data).hexdigest()
        image_id = image_id_for(client, sha256)
        received_at = datetime.now(UTC)
        sidecar = layout.Sidecar(
            image_id=image_id,
            source=source,
            client=client,
            received_at=received_at.isoformat(),
            sha256=sha256,
            size_bytes=len(data),
            content_type=facts.content_type,
            format=facts.format,
            ext=facts.ext,
            width=facts.width,
            height=facts.height,
            event_time=event_time,
            kafka=kafka,
        )
        inserted = self._claim(sidecar, source_key)
        if inserted is None:
            return self._existing(image_id, data, facts, sidecar)
        try:
            self._write(sidecar, data)
        except BaseException:
            self._release(image_id, received_at, inserted)
            raise
        return Landed(
            image_id=image_id,
            sha256=sha256,
            size_bytes=len(data),
            content_type=facts.content_type,
            received_at=received_at,
            status="landed",
            duplicate=False,
            landing_path=sidecar.image_relpath,
        )

    def _claim(self, sidecar: layout.Sidecar, source_key: str | None) -> bool | None:
        """True: a new row; False: a revived tombstone; None: already registered."""
        parameters = {
            "image_id": sidecar.image_id,
            "source": sidecar.source,
            "client": sidecar.client,
            "sha256": sidecar.sha256,
            "size_bytes": sidecar.size_bytes,
            "content_type": sidecar.content_type,
            "received_at": sidecar.received_datetime,
            "hour_key": layout.hour_key(sidecar.received_datetime),
            "landing_path": sidecar.image_relpath,
            "source_key": source_key,
        }
        with self.pool.connection() as connection, connection.cursor() as cursor:
            try:
                cursor.execute(self._claim_sql, parameters)
            except psycopg2.errors.UniqueViolation as error:
                if error.diag.constraint_name != SOURCE_KEY_CONSTRAINT:
                    raise
                raise ImageRejected(
                    409, "key_conflict", f"{sidecar.client!r} already sent a different image under key {source_key!r}"
                ) from error
            row = cursor.fetchone()
        return None if row is None else bool(row[0])

    def _release(self, image_id: str, received_at: datetime, inserted: bool) -> None:
        try:
            with self.pool.connection() as connection, connection.cursor() as cursor:
                cursor.execute(
                    self._release_sql, {"image_id": image_id, "received_at": received_at, "inserted": inserted}
                )
        except psycopg2.Error:
            log.exception("could not release the registry claim of %s; a retry will complete it", image_id)

    def _write(self, sidecar: layout.Sidecar, data: bytes) -> None:
        self.zones.write_bytes(sidecar.image_relpath, data, fsync=self.fsync)
        self.zones.write_bytes(sidecar.relpath, sidecar.to_json(), fsync=self.fsync)  # visible from here on

    def _existing(self, image_id: str, data: bytes, facts: ImageFacts, attempt: layout.Sidecar) -> Landed:
        """A duplicate: report the registered image, finishing its landing if a crash interrupted it."""
        row = self.lookup(image_id)
        if row is None or row.received_at is None:  # purged and released between our claim and now
            raise RuntimeError(f"image {image_id} changed while landing; retry")
        if row.status == "landed" and row.landing_path:
            registered = layout.Sidecar(
                **{
                    **asdict(attempt),
                    "source": row.source or attempt.source,
                    "received_at": row.received_at.astimezone(UTC).isoformat(),
                }
            )
            if registered.image_relpath != row.landing_path:
                raise RuntimeError(f"image {image_id}: registry path {row.landing_path} is not the layout's")
            if not self.zones.exists(registered.relpath):
                log.warning("image %s: finishing a landing interrupted after its registry claim", image_id)
                self._write(registered, data)
        return Landed(
            image_id=image_id,
            sha256=attempt.sha256,
            size_bytes=len(data),
            content_type=row.content_type or facts.content_type,
            received_at=row.received_at.astimezone(UTC),
            status=row.status,
            duplicate=True,
            landing_path=row.landing_path,
        )

    # -- reading the registry -------------------------------------------------------------------
    def lookup(self, image_id: str) -> RegistryRow | None:
        with self.pool.connection() as connection, connection.cursor() as cursor:
            cursor.execute(f"SELECT {_REGISTRY_COLUMNS} FROM images.registry WHERE image_id = %s", (image_id,))
            row = cursor.fetchone()
        return None if row is None else RegistryRow(*row)

    def check_health(self) -> None:
        """Raises when the registry or the zones do not answer."""
        with self.pool.connection() as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if self.zones.is_s3:
            self.zones.fs.ls(self.zones.root.split("/", 1)[0])  # the bucket answers

    # -- quarantine ------------------------------------------------------------------------------
    def quarantine(
        self,
        data: bytes,
        rejection: ImageRejected,
        *,
        source: str,
        client: str,
        quarantine_id: str | None = None,
        details: dict | None = None,
    ) -> str:
        """Keep bytes that are not an acceptable image, with the reason; returns the reason file's path.

        `quarantine_id` should be stable for a redelivered input (Kafka: topic-partition-offset) so a
        retry overwrites rather than adds; it defaults to a random id.
        """
        now = datetime.now(UTC)
        quarantine_id = quarantine_id or f"{source}-{uuid.uuid4().hex}"
        folder = f"{layout.QUARANTINE_PREFIX}/{layout.hour_key(now)}"
        reason = {
            "quarantine_id": quarantine_id,
            "source": source,
            "client": client,
            "reason": rejection.code,
            "detail": rejection.detail,
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "quarantined_at": now.isoformat(),
            **(details or {}),
        }
        self.zones.write_bytes(f"{folder}/{quarantine_id}.bin", data, fsync=self.fsync)
        reason_path = f"{folder}/{quarantine_id}.reason.json"
        self.zones.write_bytes(reason_path, (json.dumps(reason, indent=2) + "\n").encode(), fsync=self.fsync)
        return reason_path
