"""The images landing sensor: requests a processing run for each hour that received new images.

An hour's landed images are counted by their sidecars (an image without one is still landing). Images
land in the hour of their `received_at`, which is the platform's own clock, so only recent hours can
receive any: each tick lists the hour folders from the previous tick's hour (minus LOOKBACK_HOURS, for
clock skew between machines) to the next hour — a handful of listings however much history is kept.
The first tick (no cursor) lists the whole landing tree once and compares each hour with the row count
of its metadata file, so hours processed before the cursor existed are not requested again.

While an hour is still open, a run is requested at most every MEMBERFLOW_IMAGES_RUN_INTERVAL_SECONDS
(each run processes everything new by then); once the hour has ended, new images are requested at the
next tick.

Cursor (JSON): `scanned_to`, the hour of the last tick; `hours`, per recent hour the sidecar count
already requested and when. (The BI views follow by their automation condition, not from here.)
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

from memberflow_assets.images.layout import hour_key, landing_dir_for_hour, metadata_relpath
from memberflow_assets.images.processing.hour_partition import SIDECAR_SUFFIX, landing_hours, parse_hour_key
from memberflow_assets.images.processing.jobs import image_processing_job
from memberflow_assets.images.processing.partitions import image_hours
from memberflow_assets.settings import Settings
from memberflow_assets.zones import Zones

LOOKBACK_HOURS = 2
CLOSE_GRACE = timedelta(minutes=1)  # an hour counts as ended this long after its end (clock skew)
HOUR = timedelta(hours=1)


@dataclass
class ImageCursor:
    scanned_to: str | None = None
    hours: dict[str, list[float]] = field(default_factory=dict)  # key -> [sidecars requested, requested_at]

    @classmethod
    def parse(cls, text: str | None) -> "ImageCursor":
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps({"scanned_to": self.scanned_to, "hours": self.hours}, sort_keys=True)


@dataclass
class HourRequest:
    key: str
    sidecars: int


def _count_sidecars(zones: Zones, key: str) -> int:
    return sum(
        1
        for info in zones.list_files(landing_dir_for_hour(key))
        if info.name.endswith(SIDECAR_SUFFIX) and not info.name.startswith(".")
    )


def _hours_to_scan(zones: Zones, cursor: ImageCursor, now: datetime) -> list[str]:
    current = now.replace(minute=0, second=0, microsecond=0)
    if cursor.scanned_to is None:
        return sorted(landing_hours(zones) | {hour_key(current)})
    start = min(parse_hour_key(cursor.scanned_to) or current, current) - LOOKBACK_HOURS * HOUR
    keys, moment = [], start
    while moment <= current + HOUR:
        keys.append(hour_key(moment))
        moment += HOUR
    return keys


def plan_tick(
    zones: Zones, cursor: ImageCursor, now: datetime, run_interval_seconds: float
) -> tuple[list[HourRequest], ImageCursor]:
    """Which hours need a run now, and the cursor after this tick. Plain logic, tested directly."""
    requests = []
    hours = {}
    for key in _hours_to_scan(zones, cursor, now):
        count = _count_sidecars(zones, key)
        if count == 0:
            continue
        requested, requested_at = cursor.hours.get(key, (None, 0.0))
        if requested is None:
            relpath = metadata_relpath(key)
            requested = zones.parquet_num_rows(relpath) if zones.exists(relpath) else 0
        hour_ended = now >= parse_hour_key(key) + HOUR + CLOSE_GRACE
        due = hour_ended or now.timestamp() - requested_at >= run_interval_seconds
        if count > requested and due:
            requests.append(HourRequest(key, count))
            requested, requested_at = count, now.timestamp()
        hours[key] = [requested, requested_at]
    oldest_kept = hour_key(now - (LOOKBACK_HOURS + 1) * HOUR)
    return requests, ImageCursor(
        scanned_to=hour_key(now), hours={key: value for key, value in hours.items() if key >= oldest_kept}
    )


def evaluate_landing_images(
    context: dg.SensorEvaluationContext, zones: Zones, now: datetime, run_interval_seconds: float
) -> dg.SensorResult:
    """One tick of `landing_images_sensor` at `now` (the sensor passes the wall clock; tests pin it)."""
    hour_requests, cursor = plan_tick(zones, ImageCursor.parse(context.cursor), now, run_interval_seconds)
    new_keys = [
        request.key
        for request in hour_requests
        if not context.instance.has_dynamic_partition(image_hours.name, request.key)
    ]
    run_requests = [
        dg.RunRequest(
            job_name=image_processing_job.name,
            partition_key=request.key,
            run_key=f"{request.key}:{request.sidecars}",
        )
        for request in hour_requests
    ]
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[image_hours.build_add_request(new_keys)] if new_keys else [],
        cursor=cursor.dump(),
    )


def build_landing_images_sensor(settings: Settings) -> dg.SensorDefinition:
    """The sensor, ticking every `settings.sensor_interval_seconds`."""

    @dg.sensor(
        name="landing_images_sensor",
        job=image_processing_job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds an image_hours partition and requests an image_processing run for each hour with "
        "new images in landing/images/.",
    )
    def landing_images_sensor(context: dg.SensorEvaluationContext, zones: dg.ResourceParam[Zones]) -> dg.SensorResult:
        return evaluate_landing_images(context, zones, datetime.now(UTC), settings.images_run_interval_seconds)

    return landing_images_sensor
