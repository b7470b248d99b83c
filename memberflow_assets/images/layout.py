"""Where images live in the zones, and the landing sidecar: the contract between ingestion (API,
Kafka), processing and retention. No Dagster.

    landing/images/<yyyy>/<mm>/<dd>/<hh>/<image_id>.<ext>    the image as received (hour of received_at, UTC)
    landing/images/<yyyy>/<mm>/<dd>/<hh>/<image_id>.json     its sidecar (`Sidecar`), written after the image
    quarantine/images/<yyyy-mm-dd-hh>/<quarantine_id>.bin    + .reason.json: uploads/messages that are not images
    images/processed/<yyyy-mm-dd-hh>/<image_id>...           processing outputs (e.g. thumbnails)
    images/metadata/<yyyy-mm-dd-hh>.parquet                  one row per image of that hour

The sidecar is written last: an image without its sidecar is an unfinished landing and is ignored
by readers. PostgreSQL's `images.registry` (sql/migrations/0002_image_registry.sql; since 0060 a view
over a status table and hourly partitions of personal fields) records each image's id, status and
location so the API can answer status queries and duplicates are detected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

# What may land, checked by ingestion from the header and by processing on the full decode:
# at most MAX_PIXELS (width x height; ~400 MB decoded as RGBA) in one of these formats.
MAX_PIXELS = 100_000_000
# Pillow format name -> (MIME type, landing file extension)
ACCEPTED_FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
    "TIFF": ("image/tiff", "tif"),
}

LANDING_PREFIX = "landing/images"
QUARANTINE_PREFIX = "quarantine/images"
PROCESSED_PREFIX = "images/processed"
METADATA_PREFIX = "images/metadata"

HOUR_KEY_FORMAT = "%Y-%m-%d-%H"  # also the hourly partition key format of the images assets
_LANDING_HOUR = re.compile(r"^landing/images/(\d{4})/(\d{2})/(\d{2})/(\d{2})/")


def hour_key(moment: datetime) -> str:
    """The UTC hour a moment belongs to, e.g. '2026-11-28-16'."""
    return moment.astimezone(UTC).strftime(HOUR_KEY_FORMAT)


def hour_start(key: str) -> datetime:
    return datetime.strptime(key, HOUR_KEY_FORMAT).replace(tzinfo=UTC)


def landing_dir(received_at: datetime) -> str:
    return f"{LANDING_PREFIX}/{received_at.astimezone(UTC).strftime('%Y/%m/%d/%H')}"


def landing_dir_for_hour(key: str) -> str:
    return landing_dir(hour_start(key))


def image_relpath(received_at: datetime, image_id: str, ext: str) -> str:
    return f"{landing_dir(received_at)}/{image_id}.{ext}"


def sidecar_relpath(received_at: datetime, image_id: str) -> str:
    return f"{landing_dir(received_at)}/{image_id}.json"


def hour_of_landing_path(relpath: str) -> str | None:
    """The hour key of a path under landing/images/, or None for any other path."""
    match = _LANDING_HOUR.match(relpath)
    return "-".join(match.groups()) if match else None


def metadata_relpath(key: str) -> str:
    return f"{METADATA_PREFIX}/{key}.parquet"


def processed_dir(key: str) -> str:
    return f"{PROCESSED_PREFIX}/{key}"


@dataclass
class Sidecar:
    """What the platform knows about a landed image, stored as <image_id>.json beside it.

    Never holds image content; `client` is the API client name (or the Kafka source application).
    """

    image_id: str
    source: str  # "api" or "kafka"
    client: str
    received_at: str  # ISO 8601, UTC
    sha256: str
    size_bytes: int
    content_type: str  # detected from the content, not the request's header
    format: str  # Pillow format name: JPEG, PNG, WEBP, GIF, TIFF
    ext: str  # file extension used in the landing path
    width: int | None = None
    height: int | None = None
    event_time: str | None = None  # producer's event time (Kafka header), ISO 8601
    kafka: dict | None = field(default=None)  # {"topic", "partition", "offset", "key"} for Kafka

    @property
    def received_datetime(self) -> datetime:
        return datetime.fromisoformat(self.received_at)

    @property
    def image_relpath(self) -> str:
        return image_relpath(self.received_datetime, self.image_id, self.ext)

    @property
    def relpath(self) -> str:
        return sidecar_relpath(self.received_datetime, self.image_id)

    def to_json(self) -> bytes:
        # The fields are JSON values already: no deep copy (dataclasses.asdict costs ~40 µs per sidecar).
        return (json.dumps({name: getattr(self, name) for name in _SIDECAR_FIELDS}, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Sidecar:
        return cls(**json.loads(data))


_SIDECAR_FIELDS = tuple(f.name for f in fields(Sidecar))
