"""Landing images: the one code path the upload API and the Kafka consumer share. No Dagster.

    validate (by content) -> sha256 -> image id -> claim the id in images.registry
        -> write the image -> write the sidecar (the moment readers can see it)

The image id is derived from (client, sha256), so the same bytes from the same client always get the
same id. Registry rows are claimed *before* the files are written, in one INSERT ... ON CONFLICT:

- two concurrent landings of the same bytes cannot both claim it, and an image can never be written
  twice under two different hours;
- a crash after the claim leaves a row whose sidecar does not exist yet; the retry (a client retrying,
  or Kafka redelivering an uncommitted message) finds the row, sees the sidecar missing and writes the
  files at the row's recorded place — no duplicate, nothing lost. A copy that arrives while this process
  is still landing the image waits for that landing instead (`LandingInProgress` if it failed): it is
  answered as a duplicate only once the image is in place for good, never while a failure could still
  withdraw it;
- a crash before the sidecar's rename leaves nothing a reader looks at: readers go by sidecars
  (layout.py), and every file is written under a temporary name and renamed (one PUT on S3).

`land_many` lands a batch with one registry statement and one durability barrier for all its files:
Kafka lands each fetched batch this way. The API lands the uploads that arrive together as a batch too
(upload_endpoint.UploadBatches): each validated and hashed (`prepare`), the batch's files written under
temporary names with their disk writes started (`stage_many`, harmless before the claim: nothing is
visible until the renames), then claimed while the disk writes, the images fsynced together and all
renamed (`land_prepared`; an API sidecar is not fsynced but rebuilt after a power failure, `SidecarRepair`).
Bytes that are not an acceptable image go to quarantine/images/<hour>/ with a reason file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import posixpath
import sys
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as PgConnection

from memberflow_assets import postgres
from memberflow_assets.images import layout
from memberflow_assets.images.ingestion.config import IngestSettings
from memberflow_assets.images.ingestion.content import ImageFacts, ImageRejected, inspect_image
from memberflow_assets.images.retention.expiry import is_expired
from memberflow_assets.settings import read_sql
from memberflow_assets.zones import Staged, Zones

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


@dataclass(frozen=True)
class Upload:
    """One image to land, as received."""

    data: bytes
    source: str  # "api" or "kafka"
    client: str  # the API client, or the Kafka source application
    event_time: str | None = None
    kafka: dict | None = None  # {"topic", "partition", "offset", "key"}
    source_key: str | None = None  # the producer's own id for the image (Kafka key)


@dataclass(frozen=True)
class Prepared:
    """An upload found acceptable and described (its id and sidecar), ready to claim and write; `staged`
    when its image and sidecar are already written under temporary names (`Lander.stage_many`)."""

    upload: Upload
    image_id: str
    sidecar: layout.Sidecar
    staged: Staged | None = None

    @property
    def client(self) -> str:
        return self.upload.client

    @property
    def data(self) -> bytes:
        return self.upload.data

    @property
    def sidecar_rebuildable(self) -> bool:
        """Whether the registry row and the image hold everything the sidecar says (`rebuilt_sidecar`):
        true of an API upload; a Kafka message's topic, offset and event time are only in its sidecar."""
        return self.upload.source == "api" and self.upload.kafka is None and self.upload.event_time is None

    def files(self) -> list[tuple[str, bytes]]:
        """The image, then its sidecar (which makes it visible, so it is written last)."""
        return [(self.sidecar.image_relpath, self.upload.data), (self.sidecar.relpath, self.sidecar.to_json())]


class LandingInProgress(Exception):
    """The upload is not landed, and a retry will land it: another landing of the same image by this
    process did not finish it (it failed, or still runs after IN_PROGRESS_WAIT_SECONDS), or retention is
    purging the image's earlier landing (its hour expired)."""

    def __init__(self, image_id: str):
        self.image_id = image_id
        super().__init__(f"image {image_id}: not landed yet (another landing of it is not over); retry")


IN_PROGRESS_WAIT_SECONDS = 30.0  # how long a copy waits for this process's landing of the same image


def _key_conflict(upload: Upload) -> ImageRejected:
    return ImageRejected(
        409, "key_conflict", f"{upload.client!r} already sent a different image under key {upload.source_key!r}"
    )


class Lander:
    """Lands images into the zones and the registry; thread-safe (the pool hands one connection per call)."""

    def __init__(self, zones: Zones, pool: postgres.ConnectionPool, max_pixels: int, durable: bool = True):
        self.zones = zones
        self.pool = pool
        self.max_pixels = max_pixels
        self.fsync = durable and not zones.is_s3  # an S3 PUT is durable when it returns
        self._claim_sql = read_sql("images/ingest_claim.sql")
        self._release_sql = read_sql("images/ingest_release.sql")
        self._hours_with_partition: set[str] = set()  # registry_details partitions known to exist
        self.temporaries_removed = 0  # files of writes killed before they finished, removed by open_lander
        # The ids each running land_prepared call of this process is landing (claimed, or about to be):
        # a copy of one of them in another call waits until it is placed or given up (`_after_others`).
        self._landing: dict[str, set[int]] = {}
        self._landing_changed = threading.Condition()
        self._calls = itertools.count()

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
        if isinstance(result, ImageRejected | LandingInProgress):
            raise result
        return result

    def prepare(self, upload: Upload, received_at: datetime | None = None) -> Prepared:
        """Validate `upload` by its content, hash it and describe it as received at `received_at` (now).
        Raises ImageRejected when it is not an acceptable image."""
        if upload.source not in SOURCES:
            raise ValueError(f"unknown source {upload.source!r}")
        facts = inspect_image(upload.data, self.max_pixels)
        sha256 = hashlib.sha256(upload.data).hexdigest()
        image_id = image_id_for(upload.client, sha256)
        return Prepared(upload, image_id, _sidecar(upload, facts, image_id, sha256, received_at or datetime.now(UTC)))

    def stage_many(self, batch: Sequence[Prepared]) -> list[Prepared]:
        """Write the batch's images and sidecars under temporary names before the claim, their disk writes
        started when durable, so that landing them only claims (while the disk writes), waits for the
        images' fsyncs and renames. On S3, where a file is one PUT, nothing to do here.

        A sidecar that can be rebuilt from its registry row and its image (`Prepared.sidecar_rebuildable`)
        is not fsynced: after a power failure that leaves it empty or truncated, processing rebuilds it
        (`rebuilt_sidecar`) — one durability wait fewer per upload; its name is made durable by the renames'
        folder fsync like the image's, so an acknowledged upload is still found after the crash."""
        if self.zones.is_s3 or not batch:
            return list(batch)
        rebuildable = [prepared.sidecar.relpath for prepared in batch if prepared.sidecar_rebuildable]
        groups = [prepared.files() for prepared in batch]
        staged = self.zones.stage_many(groups, fsync=self.fsync, rebuildable=rebuildable)
        return [dataclasses.replace(prepared, staged=each) for prepared, each in zip(batch, staged, strict=True)]

    def land_many(self, uploads: Sequence[Upload]) -> list[Landed | ImageRejected | LandingInProgress]:
        """Land a batch; per upload, what became of it. When this returns, every landed file is durable."""
        received_at = datetime.now(UTC)
        results: list[Landed | ImageRejected | LandingInProgress | None] = [None] * len(uploads)
        accepted: list[tuple[int, Prepared]] = []
        for index, upload in enumerate(uploads):
            try:
                accepted.append((index, self.prepare(upload, received_at)))
            except ImageRejected as rejection:
                results[index] = rejection
        for (index, _), result in zip(accepted, self.land_prepared([p for _, p in accepted]), strict=True):
            results[index] = result
        return results

    def land_prepared(self, batch: Sequence[Prepared]) -> list[Landed | ImageRejected | LandingInProgress]:
        """Land prepared uploads (one registry statement, one durability barrier); per upload, what became
        of it. Staged files that are not needed (a duplicate, a key conflict) are removed."""
        call = next(self._calls)
        results: list[Landed | ImageRejected | LandingInProgress | None] = [None] * len(batch)
        attempts: dict[str, tuple[int, Prepared]] = {}  # image id -> its first upload in the batch
        repeats: list[tuple[int, int]] = []  # (index, index of the first upload of the same image)
        unused: list[Staged] = []  # staged files of uploads that write nothing
        for index, prepared in enumerate(batch):
            if prepared.image_id in attempts:
                repeats.append((index, attempts[prepared.image_id][0]))
                unused.append(prepared.staged)
            else:
                attempts[prepared.image_id] = (index, prepared)
        for image_id in self._losing_keys(attempts):
            index, prepared = attempts.pop(image_id)
            results[index] = _key_conflict(prepared.upload)
            unused.append(prepared.staged)
        others: list[tuple[int, Prepared]] = []  # being landed by another call of this process
        self._begin_landing(call, attempts)
        try:
            claimed = self._claim([prepared for _, prepared in attempts.values()])
            registered = self.lookup_many([image_id for image_id in attempts if image_id not in claimed])
            staged: list[Prepared] = []  # new landings whose files are written already: only renamed
            to_write: list[Prepared] = []  # new landings to write, and interrupted ones to finish
            for image_id, (index, prepared) in attempts.items():
                row = registered.get(image_id)
                if image_id not in claimed and self._landed_by_another_call(call, image_id):
                    others.append((index, prepared))
                    unused.append(prepared.staged)
                    continue
                if image_id in claimed:
                    if prepared.staged is None:
                        to_write.append(prepared)
                    else:
                        staged.append(prepared)
                    results[index] = _landed(prepared.sidecar, "landed", duplicate=False)
                    continue
                unused.append(prepared.staged)
                if row is None or row.status == "purged":  # not claimed, yet not registered: the key is taken
                    results[index] = _key_conflict(prepared.upload)
                else:
                    unfinished, results[index] = self._registered(prepared, row)
                    if unfinished is not None:
                        to_write.append(unfinished)
            try:
                if to_write:
                    files = [prepared.files() for prepared in to_write]
                    self.zones.write_all([pair[0] for pair in files] + [pair[1] for pair in files], fsync=self.fsync)
                # a sidecar never before its image, in both
                self.zones.publish([prepared.staged for prepared in staged], fsync=self.fsync)
            except BaseException:
                self._withdraw(to_write + staged)
                self._release(claimed, [prepared for _, prepared in attempts.values()])
                raise
        except BaseException:
            unused = [prepared.staged for prepared in batch]  # what a failure did not rename goes
            raise
        finally:
            self._end_landing(call, attempts)
            self.zones.discard([each for each in unused if each is not None])
        for index, result in self._after_others(call, others):
            results[index] = result
        for index, first_index in repeats:
            first = results[first_index]
            results[index] = dataclasses.replace(first, duplicate=True) if isinstance(first, Landed) else first
        return results

    def _begin_landing(self, call: int, attempts: dict[str, tuple[int, Prepared]]) -> None:
        with self._landing_changed:
            for image_id in attempts:
                self._landing.setdefault(image_id, set()).add(call)

    def _end_landing(self, call: int, attempts: dict[str, tuple[int, Prepared]]) -> None:
        with self._landing_changed:
            for image_id in attempts:
                calls = self._landing.get(image_id, set())
                calls.discard(call)
                if not calls:
                    self._landing.pop(image_id, None)
            self._landing_changed.notify_all()

    def _landed_by_another_call(self, call: int, image_id: str) -> bool:
        with self._landing_changed:
            return bool(self._landing.get(image_id, set()) - {call})

    def _after_others(
        self, call: int, others: list[tuple[int, Prepared]]
    ) -> list[tuple[int, Landed | LandingInProgress]]:
        """The results of copies of images other calls were landing, once those calls are done (this call's
        own landings are over, so two calls never wait for each other): a duplicate when the image is in
        place, else LandingInProgress."""
        if not others:
            return []
        deadline = time.monotonic() + IN_PROGRESS_WAIT_SECONDS
        with self._landing_changed:
            self._landing_changed.wait_for(
                lambda: not any(self._landing.get(p.image_id, set()) - {call} for _, p in others),
                timeout=max(deadline - time.monotonic(), 0),
            )
        rows = self.lookup_many([prepared.image_id for _, prepared in others])
        results: list[tuple[int, Landed | LandingInProgress]] = []
        for index, prepared in others:
            row = rows.get(prepared.image_id)
            unfinished, landed = (None, None) if row is None else self._registered(prepared, row)
            finished = isinstance(landed, Landed) and unfinished is None and row.status != "purged"
            results.append((index, landed if finished else LandingInProgress(prepared.image_id)))
        return results

    def _losing_keys(self, attempts: dict[str, tuple[int, Prepared]]) -> list[str]:
        """Ids of the batch's images that lose their producer key to an earlier image of the batch.

        One statement cannot claim two images under one key, so a key several new images share goes to
        the first. An image registered before is not a contender: it is a duplicate whatever key it
        comes with, wherever it stands in the batch (the registry is asked only when keys are shared).
        """
        by_key: dict[tuple[str, str], list[str]] = {}
        for image_id, (_, prepared) in attempts.items():  # in batch order
            if prepared.upload.source_key is not None:
                by_key.setdefault((prepared.client, prepared.upload.source_key), []).append(image_id)
        shared = [ids for ids in by_key.values() if len(ids) > 1]
        if not shared:
            return []
        rows = self.lookup_many([image_id for ids in shared for image_id in ids])
        registered = {image_id for image_id, row in rows.items() if row.status != "purged"}
        return [loser for ids in shared for loser in [i for i in ids if i not in registered][1:]]

    def _claim(self, attempts: list[Prepared]) -> dict[str, bool]:
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

    def _withdraw(self, placed: list[Prepared]) -> None:
        """Remove what a failed write may have put in place (renamed, but perhaps not durable: the folder
        fsync failed), sidecars first, so that no reader sees an image the registry is about to forget."""
        for relpath in [p.sidecar.relpath for p in placed] + [p.sidecar.image_relpath for p in placed]:
            try:
                self.zones.delete(relpath)
            except OSError:
                log.exception("could not remove %s after a failed landing", relpath)

    def _release(self, claimed: dict[str, bool], attempts: list[Prepared]) -> None:
        """Undo the claims of a landing whose files could not be written."""
        released = [a for a in attempts if a.image_id in claimed]
        if not released:
            return
        parameters = {
            "image_id": [a.image_id for a in released],
            "inserted": [claimed[a.image_id] for a in released],
            "received_at": [a.sidecar.received_datetime for a in released],
        }
        try:
            with self.pool.connection() as connection, connection.cursor() as cursor:
                cursor.execute(self._release_sql, parameters)
        except psycopg2.Error:
            log.exception("could not release registry claims %s; a retry will complete them", sorted(claimed))

    def _registered(self, prepared: Prepared, row: RegistryRow) -> tuple[Prepared | None, Landed | LandingInProgress]:
        """An image registered before: the result, and what to write if a crash interrupted its landing.
        A row of an expired hour without its sidecar is being purged (retention deletes the hour's files
        before it makes its rows tombstones): it is not written back into the purged hour; the retry,
        once the row is a tombstone, lands the image anew."""
        registered = dataclasses.replace(
            prepared.sidecar,
            source=row.source or prepared.sidecar.source,
            received_at=row.received_at.astimezone(UTC).isoformat(),
        )
        landed = dataclasses.replace(
            _landed(registered, row.status, duplicate=True),
            content_type=row.content_type or registered.content_type,
            landing_path=row.landing_path,
        )
        if row.status != "landed" or self.zones.exists(registered.relpath):
            return None, landed
        if is_expired(layout.hour_key(row.received_at), datetime.now(UTC)):
            return None, LandingInProgress(registered.image_id)
        if registered.image_relpath != row.landing_path:
            raise RuntimeError(f"image {registered.image_id}: registry path {row.landing_path} is not the layout's")
        log.warning("image %s: finishing a landing interrupted after its registry claim", registered.image_id)
        return Prepared(prepared.upload, prepared.image_id, registered), landed

    # -- reading the registry -------------------------------------------------------------------
    def lookup(self, image_id: str) -> RegistryRow | None:
        return self.lookup_many([image_id]).get(image_id)

    def lookup_many(self, image_ids: list[str]) -> dict[str, RegistryRow]:
        if not image_ids:
            return {}
        with self.pool.connection() as connection:
            return registry_rows(connection, image_ids)

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


@contextmanager
def open_lander(zones: Zones, dsn: str, settings: IngestSettings, pool_size: int) -> Iterator[Lander]:
    """A Lander on the registry at `dsn` (its schema current), with `pool_size` connections; closed after.

    Opening it first removes what landings killed mid-write left behind (zones.sweep_temporaries).
    """
    postgres.require_migrated(dsn)
    removed, size = zones.sweep_temporaries()
    if removed:
        log.warning("removed %d temporary file(s), %d bytes, left by writes that never finished", removed, size)
    pool = postgres.ConnectionPool(
        dsn, pool_size, synchronous_commit=settings.durable, application_name="memberflow-ingest"
    )
    try:
        lander = Lander(zones, pool, settings.max_pixels, settings.durable)
        lander.temporaries_removed = removed
        yield lander
    finally:
        pool.close()


def registry_rows(connection: PgConnection, image_ids: list[str]) -> dict[str, RegistryRow]:
    """{image id: its registry row} of the ids that have one."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT image_id, {_REGISTRY_COLUMNS} FROM images.registry_rows(%s)", (image_ids,))
        return {image_id: RegistryRow(*values) for image_id, *values in cursor.fetchall()}


def rebuilt_sidecar(image_id: str, row: RegistryRow, data: bytes) -> layout.Sidecar:
    """The sidecar an API landing wrote, rebuilt from its registry row and its image's bytes (a power
    failure can leave the sidecar, which `Lander.stage_many` does not fsync, empty or truncated).
    Raises ValueError when they do not make one: another source, a purged row, bytes that are not the
    registered image."""
    if row.source != "api" or row.status == "purged" or row.client is None or row.received_at is None:
        raise ValueError(f"image {image_id}: its registry row ({row.source}, {row.status}) cannot rebuild a sidecar")
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 != row.sha256 or image_id_for(row.client, sha256) != image_id:
        raise ValueError(f"image {image_id}: the file is not the registered image (sha256 {sha256})")
    try:
        # the bytes are the registered ones, accepted when they landed: their format and size are read
        # again, the pixel limit (which may have changed since) is not judged again
        facts = inspect_image(data, max_pixels=sys.maxsize)
    except ImageRejected as rejection:
        raise ValueError(f"image {image_id}: the file is not an acceptable image: {rejection}") from None
    upload = Upload(data, "api", row.client)
    sidecar = _sidecar(upload, facts, image_id, sha256, row.received_at.astimezone(UTC))
    if sidecar.image_relpath != row.landing_path:
        raise ValueError(f"image {image_id}: registry path {row.landing_path} is not the layout's")
    return sidecar


class SidecarRepair:
    """Rebuilds the API sidecars a power failure lost or left unreadable (`Lander.stage_many` does not
    fsync them) from their registry rows and images, durably; for `hour_partition.update_hour`, which
    calls it on the connection holding the hour's lock. What cannot be rebuilt is left as it is, and logged."""

    def __init__(self, connection: PgConnection, zones: Zones):
        self.connection, self.zones = connection, zones

    def missing(self, key: str, listed: Collection[str]) -> list[str]:
        """Write the sidecar of each of hour `key`'s landed API images whose image is in place but whose
        sidecar is not among `listed` (image ids); returns the ids written."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT image_id FROM images.registry_details WHERE hour_key = %s", (key,))
            unlisted = sorted(image_id for (image_id,) in cursor.fetchall() if image_id not in listed)
        rows = registry_rows(self.connection, unlisted) if unlisted else {}
        sidecars = {
            image_id: posixpath.splitext(row.landing_path)[0] + ".json"
            for image_id, row in rows.items()
            if row.status == "landed" and row.source == "api" and row.landing_path is not None
        }
        # An image not in place yet belongs to a landing in progress, or to one a crash interrupted
        # before its 201, which the client's retry finishes.
        present = {
            image_id: relpath
            for image_id, relpath in sidecars.items()
            if self.zones.exists(rows[image_id].landing_path)
        }
        return self._rebuild(present, rows)

    def unreadable(self, sidecars: dict[str, str]) -> list[str]:
        """Rewrite the unreadable sidecars {image id: relpath} their rows and images can rebuild; returns
        the ids rewritten."""
        return self._rebuild(sidecars, registry_rows(self.connection, sorted(sidecars)) if sidecars else {})

    def _rebuild(self, sidecars: dict[str, str], rows: dict[str, RegistryRow]) -> list[str]:
        rebuilt = []
        for image_id, relpath in sidecars.items():
            row = rows.get(image_id)
            try:
                if row is None:
                    raise ValueError(f"image {image_id}: no registry row")
                if row.landing_path is None or posixpath.dirname(row.landing_path) != posixpath.dirname(relpath):
                    raise ValueError(f"image {image_id}: registry path {row.landing_path} is not beside {relpath}")
                sidecar = rebuilt_sidecar(image_id, row, self.zones.read_bytes(row.landing_path))
            except (ValueError, FileNotFoundError) as problem:
                log.warning("sidecar %s not rebuilt: %s", relpath, problem)
                continue
            self.zones.write_bytes(relpath, sidecar.to_json(), fsync=True)
            log.warning("sidecar %s rebuilt from the registry and the image (lost or damaged by a crash)", relpath)
            rebuilt.append(image_id)
        return rebuilt


LOST_SIDECAR_HOURS = 2  # the newest landing hours the API checks for lost sidecars when it starts


def newest_landing_hours(zones: Zones, count: int) -> list[str]:
    """The keys of the newest `count` hour folders under landing/images/, newest first (walks down
    the newest year, month and day folders only)."""
    keys: list[str] = []

    def walk(prefix: str, depth: int) -> None:
        for folder in reversed(zones.list_dirs(prefix)):
            if len(keys) == count:
                return
            if depth < 3:
                walk(folder, depth + 1)
            elif key := layout.hour_of_landing_path(folder + "/"):
                keys.append(key)

    walk(layout.LANDING_PREFIX, 0)
    return keys


def rebuild_lost_sidecars(lander: Lander, hours: int = LOST_SIDECAR_HOURS) -> list[str]:
    """When the API starts, perhaps after a power failure: the sidecars of the newest `hours` landing
    hours' API images that lost theirs (`SidecarRepair.missing`), so that the landing sensor counts them
    and requests their hour's run; returns the ids rebuilt. Nothing to do on S3, where a PUT is durable."""
    if lander.zones.is_s3:
        return []
    keys = newest_landing_hours(lander.zones, hours)
    if not keys:
        return []
    with lander.pool.connection() as connection:
        repair = SidecarRepair(connection, lander.zones)
        return [image_id for key in keys for image_id in repair.missing(key, _listed_sidecars(lander.zones, key))]


def _listed_sidecars(zones: Zones, key: str) -> set[str]:
    """Ids of the sidecars in hour `key`'s folder."""
    folder = layout.landing_dir_for_hour(key)
    return {
        info.name.removesuffix(".json")
        for info in zones.list_files(folder)
        if info.name.endswith(".json") and not info.name.startswith(".")
    }


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
