"""Landing images: the one code path the upload API and the Kafka consumer share. No Dagster.

    validate (by content) -> sha256 -> image id -> claim the id in images.registry
        -> write the image -> write the sidecar (the moment readers can see it)

The image id is derived from (client, sha256), so the same bytes from the same client always get the
same id. Registry rows are claimed *before* the files are written, in one INSERT ... ON CONFLICT:

- two concurrent landings of the same bytes cannot both claim it, and an image can never be written
  twice under two different hours;
- a crash after the claim leaves a row whose sidecar does not exist yet; the retry (a client retrying,
  or Kafka redelivering an uncommitted message) finds the row, sees the sidecar missing and writes the
  files at the row's recorded place — no duplicate, nothing lost;
- a crash before the sidecar's rename leaves nothing a reader looks at: readers go by sidecars
  (layout.py), and every file is written under a temporary name and renamed (one PUT on S3).

`land_many` lands a batch with one registry statement and one durability barrier for all its files:
Kafka lands each fetched batch this way, and the API lands concurrent requests in groups (GroupLander).
Bytes that are not an acceptable image go to quarantine/images/<hour>/ with a reason file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import queue
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as PgConnection

from memberflow_assets import postgres
from memberflow_assets.images import layout
from memberflow_assets.images.ingest_config import IngestSettings
from memberflow_assets.images.validation import ImageFacts, ImageRejected, inspect_image
from memberflow_assets.settings import read_sql
from memberflow_assets.zones import Zones

log = logging.getLogger(__name__)

SOURCES = ("api", "kafka")
SOURCE_KEY_CONSTRAINT = "registry_key_digest"
_CLAIM_COLUMNS = (
    "image_id",
    "source",
    "client",
    "sha256",
    "size_bytes",
    "content_type",
    "received_at",
    "hour_key",
    "landing_path",
    "source_key",
    "key_digest",
)
_REGISTRY_COLUMNS = (
    "status, source, client, sha256, size_bytes, content_type, received_at, landing_path, source_key,"
    " error, processed_at, purged_at"
)


def image_id_for(client: str, sha256: str) -> str:
    """The id of `client`'s image with content `sha256`: 32 hex characters, stable across uploads."""
    return hashlib.sha256(f"{client}\n{sha256}".encode()).hexdigest()[:32]


def key_digest(client: str, source_key: str) -> str:
    """How images.registry_status stores a producer key: SHA-256 of client and key (SQL images.key_digest)."""
    return hashlib.sha256(f"{client}\n{source_key}".encode()).hexdigest()


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
    """A small blocking pool of autocommit psycopg2 connections (psycopg2's own pools raise when empty).

    `synchronous_commit=False` lets a commit return before the database flushed it: faster, but a
    database or OS crash may lose the last fraction of a second of commits.
    """

    def __init__(self, dsn: str, size: int, synchronous_commit: bool = True):
        self.dsn = dsn
        self._options = "" if synchronous_commit else "-c synchronous_commit=off"
        self._idle: queue.LifoQueue[PgConnection] = queue.LifoQueue()
        self._tokens: queue.Queue[None] = queue.Queue()
        for _ in range(size):
            self._tokens.put(None)

    @contextmanager
    def connection(self) -> Iterator[PgConnection]:
        self._tokens.get()
        broken = False
        try:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                connection = psycopg2.connect(self.dsn, application_name="memberflow-ingest", options=self._options)
                connection.autocommit = True
            try:
                yield connection
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                broken = True  # a broken connection is not handed out again
                raise
            finally:
                if broken or connection.closed:
                    connection.close()
                else:
                    self._idle.put(connection)
        finally:
            self._tokens.put(None)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()


@dataclass(frozen=True)
class Upload:
    """One image to land, as received."""

    data: bytes
    source: str  # "api" or "kafka"
    client: str  # the API client, or the Kafka source application
    event_time: str | None = None
    kafka: dict | None = None  # {"topic", "partition", "offset", "key"}
    source_key: str | None = None  # the producer's own id for the image (Kafka key)
    # Already established by the caller (the API validates on the request's thread, not a landing worker's):
    facts: ImageFacts | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class _Attempt:
    index: int  # position in the batch
    upload: Upload
    sidecar: layout.Sidecar


def _key_conflict(upload: Upload) -> ImageRejected:
    return ImageRejected(
        409, "key_conflict", f"{upload.client!r} already sent a different image under key {upload.source_key!r}"
    )


class Lander:
    """Lands images into the zones and the registry; thread-safe (the pool hands one connection per call)."""

    def __init__(self, zones: Zones, pool: ConnectionPool, max_pixels: int, durable: bool = True):
        self.zones = zones
        self.pool = pool
        self.max_pixels = max_pixels
        self.fsync = durable and not zones.is_s3  # an S3 PUT is durable when it returns
        self._claim_sql = read_sql("images/ingest_claim.sql")
        self._release_sql = read_sql("images/ingest_release.sql")
        self._hours_with_partition: set[str] = set()  # registry_details partitions known to exist
        self.temporaries_removed = 0  # files of writes killed before they finished, removed by open_lander

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
        [result] = self.land_many([Upload(data, source, client, event_time, kafka, source_key)])
        if isinstance(result, ImageRejected):
            raise result
        return result

    def land_many(self, uploads: Sequence[Upload]) -> list[Landed | ImageRejected]:
        """Land a batch; per upload, what became of it. When this returns, every landed file is durable."""
        received_at = datetime.now(UTC)
        results: list[Landed | ImageRejected | None] = [None] * len(uploads)
        attempts: dict[str, _Attempt] = {}  # image id -> its first upload in the batch
        repeats: list[tuple[int, int]] = []  # (index, index of the first upload of the same image)
        for index, upload in enumerate(uploads):
            if upload.source not in SOURCES:
                raise ValueError(f"unknown source {upload.source!r}")
            try:
                facts = upload.facts or inspect_image(upload.data, self.max_pixels)
            except ImageRejected as rejection:
                results[index] = rejection
                continue
            sha256 = upload.sha256 or hashlib.sha256(upload.data).hexdigest()
            image_id = image_id_for(upload.client, sha256)
            if image_id in attempts:
                repeats.append((index, attempts[image_id].index))
            else:
                attempts[image_id] = _Attempt(index, upload, _sidecar(upload, facts, image_id, sha256, received_at))
        for image_id in self._losing_keys(attempts):
            attempt = attempts.pop(image_id)
            results[attempt.index] = _key_conflict(attempt.upload)

        claimed = self._claim(list(attempts.values()))
        registered = self.lookup_many([image_id for image_id in attempts if image_id not in claimed])
        to_write: list[tuple[layout.Sidecar, bytes]] = []  # new landings and interrupted ones to finish
        for image_id, attempt in attempts.items():
            row = registered.get(image_id)
            if image_id in claimed:
                to_write.append((attempt.sidecar, attempt.upload.data))
                results[attempt.index] = _landed(attempt.sidecar, "landed", duplicate=False)
            elif row is None or row.status == "purged":  # not claimed, yet not registered: the key is taken
                results[attempt.index] = _key_conflict(attempt.upload)
            else:
                unfinished, results[attempt.index] = self._registered(attempt, row)
                if unfinished is not None:
                    to_write.append((unfinished, attempt.upload.data))
        images = [(sidecar.image_relpath, data) for sidecar, data in to_write]
        sidecars = [(sidecar.relpath, sidecar.to_json()) for sidecar, _ in to_write]
        try:
            self.zones.write_all(images + sidecars, fsync=self.fsync)  # a sidecar never before its image
        except BaseException:
            self._release(claimed, received_at)
            raise
        for index, first_index in repeats:
            first = results[first_index]
            results[index] = dataclasses.replace(first, duplicate=True) if isinstance(first, Landed) else first
        return results

    def _losing_keys(self, attempts: dict[str, _Attempt]) -> list[str]:
        """Ids of the batch's images that lose their producer key to an earlier image of the batch.

        One statement cannot claim two images under one key, so a key several new images share goes to
        the first. An image registered before is not a contender: it is a duplicate whatever key it
        comes with, wherever it stands in the batch (the registry is asked only when keys are shared).
        """
        by_key: dict[tuple[str, str], list[str]] = {}
        for image_id, attempt in attempts.items():  # in batch order
            if attempt.upload.source_key is not None:
                by_key.setdefault((attempt.upload.client, attempt.upload.source_key), []).append(image_id)
        shared = [ids for ids in by_key.values() if len(ids) > 1]
        if not shared:
            return []
        rows = self.lookup_many([image_id for ids in shared for image_id in ids])
        registered = {image_id for image_id, row in rows.items() if row.status != "purged"}
        return [loser for ids in shared for loser in [i for i in ids if i not in registered][1:]]

    def _claim(self, attempts: list[_Attempt]) -> dict[str, bool]:
        """Claim the attempts' ids: {image id: True for a new row, False for a revived tombstone}."""
        if not attempts:
            return {}
        rows = [
            (
                a.sidecar.image_id,
                a.sidecar.source,
                a.sidecar.client,
                a.sidecar.sha256,
                a.sidecar.size_bytes,
                a.sidecar.content_type,
                a.sidecar.received_datetime,
                layout.hour_key(a.sidecar.received_datetime),
                a.sidecar.image_relpath,
                a.upload.source_key,
                None if a.upload.source_key is None else key_digest(a.sidecar.client, a.upload.source_key),
            )
            for a in attempts
        ]
        columns = {name: list(values) for name, values in zip(_CLAIM_COLUMNS, zip(*rows, strict=True), strict=True)}
        with self.pool.connection() as connection, connection.cursor() as cursor:
            for key in set(columns["hour_key"]) - self._hours_with_partition:  # once an hour per process
                cursor.execute("SELECT images.create_registry_details_partition(%s)", (key,))
                self._hours_with_partition.add(key)
            try:
                cursor.execute(self._claim_sql, columns)
            except psycopg2.errors.UniqueViolation as error:
                if error.diag.constraint_name != SOURCE_KEY_CONSTRAINT:
                    raise
                # A concurrent landing took a producer key between our check and our insert (ON CONFLICT
                # only arbitrates image_id); now that it is committed, the statement's own checks see it.
                cursor.execute(self._claim_sql, columns)
            return dict(cursor.fetchall())

    def _release(self, claimed: dict[str, bool], received_at: datetime) -> None:
        if not claimed:
            return
        parameters = {
            "inserted": [image_id for image_id, inserted in claimed.items() if inserted],
            "revived": [image_id for image_id, inserted in claimed.items() if not inserted],
            "received_at": received_at,
        }
        try:
            with self.pool.connection() as connection, connection.cursor() as cursor:
                cursor.execute(self._release_sql, parameters)
        except psycopg2.Error:
            log.exception("could not release registry claims %s; a retry will complete them", sorted(claimed))

    def _registered(self, attempt: _Attempt, row: RegistryRow) -> tuple[layout.Sidecar | None, Landed]:
        """An image registered before: the result, and its sidecar if a crash interrupted its landing."""
        registered = dataclasses.replace(
            attempt.sidecar,
            source=row.source or attempt.sidecar.source,
            received_at=row.received_at.astimezone(UTC).isoformat(),
        )
        landed = dataclasses.replace(
            _landed(registered, row.status, duplicate=True),
            content_type=row.content_type or registered.content_type,
            landing_path=row.landing_path,
        )
        if row.status != "landed" or self.zones.exists(registered.relpath):
            return None, landed
        if registered.image_relpath != row.landing_path:
            raise RuntimeError(f"image {registered.image_id}: registry path {row.landing_path} is not the layout's")
        log.warning("image %s: finishing a landing interrupted after its registry claim", registered.image_id)
        return registered, landed

    # -- reading the registry -------------------------------------------------------------------
    def lookup(self, image_id: str) -> RegistryRow | None:
        return self.lookup_many([image_id]).get(image_id)

    def lookup_many(self, image_ids: list[str]) -> dict[str, RegistryRow]:
        if not image_ids:
            return {}
        with self.pool.connection() as connection, connection.cursor() as cursor:
            cursor.execute(f"SELECT image_id, {_REGISTRY_COLUMNS} FROM images.registry_rows(%s)", (image_ids,))
            return {image_id: RegistryRow(*values) for image_id, *values in cursor.fetchall()}

    def check_health(self) -> None:
        """Raises when the registry or the zones do not answer."""
        with self.pool.connection() as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if self.zones.is_s3:
            self.zones.fs.ls(self.zones.root.split("/", 1)[0])  # the bucket answers

    # -- quarantine ------------------------------------------------------------------------------
    def quarantine_files(
        self,
        data: bytes,
        rejection: ImageRejected,
        *,
        source: str,
        client: str,
        quarantine_id: str | None = None,
        details: dict | None = None,
    ) -> list[tuple[str, bytes]]:
        """The quarantine record of bytes that are not an acceptable image: the bytes and a reason file.

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
        return [
            (f"{folder}/{quarantine_id}.bin", data),
            (f"{folder}/{quarantine_id}.reason.json", (json.dumps(reason, indent=2) + "\n").encode()),
        ]

    def store(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Write files (e.g. quarantine records) with the landing's durability."""
        self.zones.write_all(files, fsync=self.fsync)

    def quarantine(self, data: bytes, rejection: ImageRejected, **record) -> str:
        """Quarantine one input now (see quarantine_files); returns the reason file's path."""
        files = self.quarantine_files(data, rejection, **record)
        self.store(files)
        return files[-1][0]


class GroupLander:
    """Lands uploads that arrive concurrently (API requests) together, a group at a time.

    Each group costs one registry statement and one durability barrier (fsync, commit flush) however
    many images it holds, the group-commit idea of databases: under load, requests share the waits
    instead of queueing behind each other's. Alone, a request is a group of one.

    Groups are formed fairly: one upload per waiting client in turn, up to `max_group` uploads or
    `max_group_bytes`, so a client with many uploads queued delays another's by at most one group.
    """

    def __init__(self, lander: Lander, workers: int = 2, max_group: int = 32, max_group_bytes: int = 64 << 20):
        self.lander = lander
        self.max_group = max_group
        self.max_group_bytes = max_group_bytes
        self._waiting: dict[str, deque[tuple[Upload, Future]]] = {}  # per client, in turn order
        self._ready = threading.Condition()
        self._closing = False
        self._workers = [threading.Thread(target=self._run, name=f"landing-{n}", daemon=True) for n in range(workers)]
        for worker in self._workers:
            worker.start()

    def submit(self, upload: Upload) -> Future:
        """A future of `Landed`, or of the ImageRejected / error the landing raised."""
        future: Future = Future()
        with self._ready:
            self._waiting.setdefault(upload.client, deque()).append((upload, future))
            self._ready.notify()
        return future

    def close(self) -> None:
        """Land what was submitted, then stop the workers."""
        with self._ready:
            self._closing = True
            self._ready.notify_all()
        for worker in self._workers:
            worker.join()

    def _next_group(self) -> list[tuple[Upload, Future]] | None:
        with self._ready:
            while not self._waiting and not self._closing:
                self._ready.wait()
            group: list[tuple[Upload, Future]] = []
            size = 0
            while self._waiting and len(group) < self.max_group and size < self.max_group_bytes:
                client, queued = next(iter(self._waiting.items()))
                group.append(queued.popleft())
                size += len(group[-1][0].data)
                del self._waiting[client]
                if queued:
                    self._waiting[client] = queued  # to the back of the turn order
            return group or None  # None: closing, nothing left

    def _run(self) -> None:
        while (group := self._next_group()) is not None:
            try:
                results = self.lander.land_many([upload for upload, _ in group])
            except BaseException as error:
                for _, future in group:
                    future.set_exception(error)
                continue
            for (_, future), result in zip(group, results, strict=True):
                if isinstance(result, ImageRejected):
                    future.set_exception(result)
                else:
                    future.set_result(result)


@contextmanager
def open_lander(zones: Zones, dsn: str, settings: IngestSettings, pool_size: int) -> Iterator[Lander]:
    """A Lander on the registry at `dsn` (migrated first), with `pool_size` connections; closed after.

    Opening it first removes what landings killed mid-write left behind (zones.sweep_temporaries).
    """
    postgres.apply_migrations(dsn)
    removed, size = zones.sweep_temporaries()
    if removed:
        log.warning("removed %d temporary file(s), %d bytes, left by writes that never finished", removed, size)
    pool = ConnectionPool(dsn, pool_size, synchronous_commit=settings.durable)
    try:
        lander = Lander(zones, pool, settings.max_pixels, settings.durable)
        lander.temporaries_removed = removed
        yield lander
    finally:
        pool.close()


def _sidecar(upload: Upload, facts: ImageFacts, image_id: str, sha256: str, received_at: datetime) -> layout.Sidecar:
    return layout.Sidecar(
        image_id=image_id,
        source=upload.source,
        client=upload.client,
        received_at=received_at.isoformat(),
        sha256=sha256,
        size_bytes=len(upload.data),
        content_type=facts.content_type,
        format=facts.format,
        ext=facts.ext,
        width=facts.width,
        height=facts.height,
        event_time=upload.event_time,
        kafka=upload.kafka,
    )


def _landed(sidecar: layout.Sidecar, status: str, duplicate: bool) -> Landed:
    return Landed(
        image_id=sidecar.image_id,
        sha256=sidecar.sha256,
        size_bytes=sidecar.size_bytes,
        content_type=sidecar.content_type,
        received_at=sidecar.received_datetime,
        status=status,
        duplicate=duplicate,
        landing_path=sidecar.image_relpath,
    )
