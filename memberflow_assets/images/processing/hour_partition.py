"""One hourly partition of image metadata, computed incrementally. No Dagster, no database.

An hour's landed images are the sidecars in `landing/images/<yyyy>/<mm>/<dd>/<hh>/` (an image without
its sidecar is an unfinished landing and is not looked at). `update_hour` processes the ones that have
no row in `images/metadata/<hour>.parquet` yet, writes their thumbnails to
`images/processed/<hour>/<image_id>.jpg`, and rewrites the hour's Parquet file from the rows it already
had plus the new ones: after every run the file is the whole partition, one row per landed image.

Images are processed in a pool of worker processes, forked from a fresh `forkserver` process (the
Dagster run process has threads, which plain fork does not mix with); each worker reads the image and
writes its thumbnail itself, so only paths and rows cross processes. As with any non-fork
multiprocessing, a script calling `update_hour` needs the `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import multiprocessing
import os
import posixpath
from collections import Counter
from collections.abc import Collection, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from memberflow_assets.images.layout import (
    LANDING_PREFIX,
    Sidecar,
    hour_of_landing_path,
    hour_start,
    landing_dir_for_hour,
    metadata_relpath,
    processed_dir,
)
from memberflow_assets.images.processing import one_image
from memberflow_assets.zones import Zones

SIDECAR_SUFFIX = ".json"
POOL_THRESHOLD = 16  # fewer new images than this are processed in-process: starting workers costs ~1 s

METADATA_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("hour_key", pa.string()),
        ("source", pa.string()),
        ("client", pa.string()),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("processed_at", pa.timestamp("us", tz="UTC")),
        ("status", pa.string()),
        ("error", pa.string()),
        ("error_detail", pa.string()),
        ("format", pa.string()),
        ("mode", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("orientation", pa.int16()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("phash", pa.string()),
        ("gps_removed", pa.bool_()),
        ("thumbnail_path", pa.string()),
        ("thumbnail_bytes", pa.int32()),
    ]
)


def thumbnail_relpath(key: str, image_id: str) -> str:
    return f"{processed_dir(key)}/{image_id}.{one_image.THUMBNAIL_EXT}"


def parse_hour_key(key: str) -> datetime | None:
    """The start of the hour a key names, or None when it is not a valid `yyyy-mm-dd-hh` key."""
    try:
        return hour_start(key) if len(key) == 13 else None
    except ValueError:
        return None


def landing_hours(zones: Zones, before: datetime | None = None) -> set[str]:
    """Hour keys of the folders in landing/images/ (only those starting before `before`, if given).

    Lists one folder level at a time and skips days that cannot hold a wanted hour.
    """
    keys = set()
    for year in zones.list_dirs(LANDING_PREFIX):
        for month in zones.list_dirs(year):
            for day in zones.list_dirs(month):
                try:
                    day_start = datetime(*map(int, day.split("/")[-3:]), tzinfo=UTC)
                except ValueError:
                    continue  # not a yyyy/mm/dd folder
                if before is not None and day_start >= before:
                    continue
                for hour in zones.list_dirs(day):
                    key = hour_of_landing_path(hour + "/")
                    start = parse_hour_key(key) if key else None
                    if start is not None and (before is None or start < before):
                        keys.add(key)
    return keys


def landed_sidecars(zones: Zones, key: str) -> dict[str, str]:
    """image_id -> sidecar path of every finished landing in the hour."""
    return {
        info.name.removesuffix(SIDECAR_SUFFIX): info.relpath
        for info in zones.list_files(landing_dir_for_hour(key))
        if info.name.endswith(SIDECAR_SUFFIX) and not info.name.startswith(".")
    }


def read_metadata(zones: Zones, key: str) -> pa.Table:
    """The hour's metadata rows so far (an empty table before its first run)."""
    relpath = metadata_relpath(key)
    if not zones.exists(relpath):
        return METADATA_SCHEMA.empty_table()
    return zones.read_parquet(relpath).select(METADATA_SCHEMA.names).cast(METADATA_SCHEMA)


def _unreadable_sidecar_row(image_id: str, key: str, processed_at: datetime, detail: str) -> dict:
    return {
        **dict.fromkeys(METADATA_SCHEMA.names),
        "image_id": image_id,
        "hour_key": key,
        "processed_at": processed_at,
        "status": one_image.REJECTED,
        "error": one_image.INVALID_SIDECAR,
        "error_detail": detail[:500],
        "gps_removed": False,
    }


def process_landed(zones: Zones, key: str, sidecar_relpath: str, processed_at: datetime) -> dict:
    """Process one landed image of hour `key`: its metadata row; its thumbnail is written to the zones."""
    image_id = posixpath.basename(sidecar_relpath).removesuffix(SIDECAR_SUFFIX)
    try:
        sidecar = Sidecar.from_json(zones.read_bytes(sidecar_relpath))
        sidecar.received_datetime  # noqa: B018 - validates the timestamp
    except (ValueError, TypeError) as error:
        return _unreadable_sidecar_row(image_id, key, processed_at, f"{type(error).__name__}: {error}")
    if sidecar.image_id != image_id:
        return _unreadable_sidecar_row(image_id, key, processed_at, f"sidecar names image {sidecar.image_id!r}")
    # The image sits beside its sidecar, whatever hour the sidecar's timestamp claims.
    image_relpath = posixpath.join(posixpath.dirname(sidecar_relpath), f"{image_id}.{sidecar.ext}")
    try:
        data = zones.read_bytes(image_relpath)
    except FileNotFoundError:
        result = one_image.rejected(one_image.base_row(sidecar, processed_at), one_image.MISSING_IMAGE, image_relpath)
    else:
        result = one_image.process_image(data, sidecar, processed_at)
    row = {**result.row, "hour_key": key, "thumbnail_path": None}
    if result.thumbnail is not None:
        row["thumbnail_path"] = thumbnail_relpath(key, image_id)
        zones.write_bytes(row["thumbnail_path"], result.thumbnail)
    return row


# -- the worker pool ------------------------------------------------------------------------------
_worker_zones: Zones | None = None


def _start_worker(root_url: str, s3_endpoint_url: str | None) -> None:
    global _worker_zones
    _worker_zones = Zones(root_url, s3_endpoint_url)


def _process_in_worker(task: tuple[str, str, datetime]) -> dict:
    assert _worker_zones is not None, "worker not initialised"
    return process_landed(_worker_zones, *task)


def process_many(zones: Zones, key: str, sidecar_relpaths: Iterable[str], processed_at: datetime, workers: int):
    """Rows for the given landed images, processed by `workers` processes (in-process for few images)."""
    tasks = [(key, relpath, processed_at) for relpath in sidecar_relpaths]
    workers = min(workers, len(tasks))
    if workers <= 1 or len(tasks) < POOL_THRESHOLD:
        return [process_landed(zones, *task) for task in tasks]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # workers fork from a server that imported this module once
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(zones.root_url, zones.s3_endpoint_url),
    ) as pool:
        return list(pool.map(_process_in_worker, tasks, chunksize=max(1, min(32, len(tasks) // (workers * 8)))))


# -- one hour ---------------------------------------------------------------------------------------
@dataclass
class HourUpdate:
    key: str
    table: pa.Table  # the whole partition as written
    new_rows: list[dict]
    landed_at_start: set[str]  # image ids with a sidecar when the run listed the hour

    def summary(self) -> dict:
        """Counts for Dagster's materialisation metadata: no ids, clients, hashes or paths."""
        statuses = Counter(self.table.column("status").to_pylist())
        new_statuses = Counter(row["status"] for row in self.new_rows)
        errors = Counter(error for error in self.table.column("error").to_pylist() if error)
        bytes_column = self.table.column("bytes").to_pylist()
        thumbnail_bytes = self.table.column("thumbnail_bytes").to_pylist()
        return {
            "images": self.table.num_rows,
            "processed": statuses[one_image.PROCESSED],
            "rejected": statuses[one_image.REJECTED],
            "new_images": len(self.new_rows),
            "new_processed": new_statuses[one_image.PROCESSED],
            "new_rejected": new_statuses[one_image.REJECTED],
            "bytes": sum(value or 0 for value in bytes_column),
            "new_bytes": sum(row["bytes"] or 0 for row in self.new_rows),
            "thumbnail_bytes": sum(value or 0 for value in thumbnail_bytes),
            "rejections_by_error": dict(sorted(errors.items())),
            "gps_removed": sum(bool(value) for value in self.table.column("gps_removed").to_pylist()),
        }


class SidecarRepairs(Protocol):
    """What `update_hour` asks of a repair (ingestion.landing.SidecarRepair, on the registry)."""

    def missing(self, key: str, listed: Collection[str]) -> Collection[str]:
        """Write the sidecars of the hour's registered images that have none; the ids written."""

    def unreadable(self, sidecars: dict[str, str]) -> Collection[str]:
        """Rewrite the unreadable sidecars {image id: relpath} it can; the ids rewritten."""


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def update_hour(
    zones: Zones,
    key: str,
    workers: int | None = None,
    reprocess: bool = False,
    now: datetime | None = None,
    repair: SidecarRepairs | None = None,
) -> HourUpdate:
    """Process the hour's images that have no metadata row yet and rewrite its metadata file.

    With `reprocess`, every landed image of the hour is processed again (after a change to the
    processing code); rows of images whose sidecar is gone are dropped either way. With `repair`,
    sidecars a power failure lost are rebuilt before the hour is listed for processing, and unreadable
    ones are rebuilt and processed again (an API landing's sidecar is not fsynced).
    """
    processed_at = now or datetime.now(UTC)
    landed = landed_sidecars(zones, key)
    if repair is not None and repair.missing(key, landed.keys()):
        landed = landed_sidecars(zones, key)
    existing = read_metadata(zones, key)
    done = set() if reprocess else set(existing.column("image_id").to_pylist())
    todo = sorted(image_id for image_id in landed if image_id not in done)
    workers = workers or default_workers()
    new_rows = process_many(zones, key, (landed[image_id] for image_id in todo), processed_at, workers)
    unreadable = {
        row["image_id"]: landed[row["image_id"]] for row in new_rows if row["error"] == one_image.INVALID_SIDECAR
    }
    if repair is not None and unreadable:
        repaired = sorted(repair.unreadable(unreadable))
        redone = {
            row["image_id"]: row for row in process_many(zones, key, (landed[i] for i in repaired), processed_at, 1)
        }
        new_rows = [redone.get(row["image_id"], row) for row in new_rows]

    kept = existing.filter(pc.is_in(existing.column("image_id"), pa.array(sorted(done & landed.keys()), pa.string())))
    table = pa.concat_tables([kept, pa.Table.from_pylist(new_rows, schema=METADATA_SCHEMA)])
    table = table.sort_by([("received_at", "ascending"), ("image_id", "ascending")])
    if new_rows or table.num_rows != existing.num_rows or not zones.exists(metadata_relpath(key)):
        zones.write_parquet(metadata_relpath(key), table)
    return HourUpdate(key, table, new_rows, set(landed))


# -- what the asset checks verify -------------------------------------------------------------------
@dataclass
class RowCoverage:
    """Does the hour's metadata file hold exactly one row per landed image?"""

    landed: int
    rows: int
    missing: list[str] = field(default_factory=list)  # landed when the run started, no row
    duplicates: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # rows without a landed image
    arrived_during_run: int = 0  # landed after the run listed the hour: the next run's work

    @property
    def passed(self) -> bool:
        return not (self.missing or self.duplicates or self.orphans)


def row_coverage(zones: Zones, key: str, landed_at_start: set[str]) -> RowCoverage:
    landed_now = set(landed_sidecars(zones, key))
    ids = (
        zones.read_parquet(metadata_relpath(key)).column("image_id").to_pylist()
        if zones.exists(metadata_relpath(key))
        else []
    )
    counts = Counter(ids)
    return RowCoverage(
        landed=len(landed_now),
        rows=len(ids),
        missing=sorted(image_id for image_id in landed_now & landed_at_start if image_id not in counts),
        duplicates=sorted(image_id for image_id, count in counts.items() if count > 1),
        orphans=sorted(image_id for image_id in counts if image_id not in landed_now),
        arrived_during_run=len({image_id for image_id in landed_now - landed_at_start if image_id not in counts}),
    )


@dataclass
class ThumbnailAudit:
    """Every file under images/processed/<hour>/ inspected, and each processed row's thumbnail."""

    files: int = 0
    with_location: list[str] = field(default_factory=list)
    with_exif: list[str] = field(default_factory=list)
    undecodable: list[str] = field(default_factory=list)
    oversized: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # processed rows whose thumbnail file is absent


def audit_thumbnails(zones: Zones, key: str, table: pa.Table) -> ThumbnailAudit:
    audit = ThumbnailAudit()
    present = set()
    for info in zones.list_files(processed_dir(key), recursive=True):
        audit.files += 1
        present.add(info.relpath)
        problems = one_image.inspect_thumbnail(zones.read_bytes(info.relpath))
        if problems.has_location:
            audit.with_location.append(info.relpath)
        if problems.has_exif:
            audit.with_exif.append(info.relpath)
        if problems.undecodable:
            audit.undecodable.append(info.relpath)
        elif max(problems.size) > one_image.THUMBNAIL_SIZE:
            audit.oversized.append(info.relpath)
    processed = table.filter(pc.equal(table.column("status"), one_image.PROCESSED))
    audit.missing = sorted(path for path in processed.column("thumbnail_path").to_pylist() if path not in present)
    return audit
