"""The landing-zone sensor: one dynamic partition and one run per new, finished applications file.

Cursor (JSON): `hwm`, the newest change time handled; `seen`, files handled near the hwm (so an
overlap window can be re-listed safely: S3 times have 1-second resolution); `pending`, files seen
still changing; `reported`, entries that are no files (folders, links: never read), warned about once.
Only files changed at or after `hwm - OVERLAP` are looked at, so thousands of old files cost one
listing and nothing else; the hwm never passes the tick's own time, so a file stamped in the future (a
skewed clock, `touch -d`, an archive) cannot hide the files that land after it. A new file is hashed
once; a partition runs again only for content other than its latest run's (the run tag
`memberflow/sha256`): a file touched or re-dropped unchanged runs nothing, a file changed back to
earlier content runs again. Every landed file is a partition of its own, a copy under another name too.
"""

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field

import dagster as dg

from memberflow_assets.membership import layout
from memberflow_assets.membership.jobs import membership_batch_job
from memberflow_assets.membership.partitions import application_files
from memberflow_assets.settings import Settings
from memberflow_assets.zones import NOT_UTF8_NAME, S3_VERSION_NAME, FileInfo, Zones

SHA256_TAG = "memberflow/sha256"
OVERLAP_SECONDS = 5.0
MAX_FILES_PER_TICK = 200
_RENAMING_ADVICE = {  # files under names nothing can read
    NOT_UTF8_NAME: "rename it (UTF-8) to have it read",
    S3_VERSION_NAME: "rename it (S3 reads ?versionId= in a key as a version) to have it read",
}
RUNS_LOOKED_AT = 20  # a partition's latest runs searched for its latest content


@dataclass
class LandingCursor:
    hwm: float = 0.0
    seen: dict[str, float] = field(default_factory=dict)
    pending: dict[str, list[float]] = field(default_factory=dict)
    reported: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None) -> "LandingCursor":
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(
            {"hwm": self.hwm, "seen": self.seen, "pending": self.pending, "reported": self.reported}, sort_keys=True
        )


@dataclass
class TickPlan:
    ready: list[FileInfo]
    waiting: list[FileInfo]  # still being written, or beyond this tick's cap
    not_files: dict[str, str]  # relative path -> what it is: nothing in it is read


def plan_tick(zones: Zones, cursor: LandingCursor, now: float, settle_seconds: float) -> TickPlan:
    """Which landed files to handle now. A local file is finished when its size and change time are
    the same as at the previous tick, or it has not changed for `settle_seconds`; an S3 object is
    always whole (a PUT is atomic)."""
    files, not_files = zones.list_entries(layout.LANDING_PREFIX)
    candidates = sorted(
        (
            info
            for info in files
            if layout.is_batch_file(info.name)
            and (info.changed_at >= cursor.hwm - OVERLAP_SECONDS or info.relpath in cursor.pending)
            and cursor.seen.get(info.relpath) != info.changed_at
        ),
        key=lambda info: (info.changed_at, info.relpath),
    )
    ready, waiting = [], []
    for info in candidates:
        settled = (
            zones.is_s3
            or now - info.changed_at >= settle_seconds
            or cursor.pending.get(info.relpath) == [info.size, info.changed_at]
        )
        (ready if settled and len(ready) < MAX_FILES_PER_TICK else waiting).append(info)
    return TickPlan(ready, waiting, not_files)


def advance(cursor: LandingCursor, plan: TickPlan, now: float) -> LandingCursor:
    hwm = min(max([cursor.hwm, *(info.changed_at for info in plan.ready)]), now)
    if plan.waiting:  # never move past a file not handled yet
        hwm = min(hwm, min(info.changed_at for info in plan.waiting))
    seen = {**cursor.seen, **{info.relpath: info.changed_at for info in plan.ready}}
    return LandingCursor(
        hwm=hwm,
        seen={path: changed for path, changed in seen.items() if changed >= hwm - OVERLAP_SECONDS},
        pending={info.relpath: [info.size, info.changed_at] for info in plan.waiting},
        reported=sorted(plan.not_files),
    )


def _sha256(zones: Zones, relpath: str) -> str:
    with zones.fs.open(zones.path(relpath), "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _latest_content(instance: dg.DagsterInstance, key: str) -> str | None:
    """The SHA-256 of the content the partition's latest run was requested for (None: never requested).
    A run launched by hand has no content tag; the latest run that has one counts."""
    records = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": key}), limit=RUNS_LOOKED_AT)
    return next((sha256 for record in records if (sha256 := record.dagster_run.tags.get(SHA256_TAG))), None)


def build_landing_applications_sensor(settings: Settings) -> dg.SensorDefinition:
    """The sensor, ticking every `settings.sensor_interval_seconds`."""

    @dg.sensor(
        name="landing_applications_sensor",
        job=membership_batch_job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Registers a partition and requests a run for each new, finished file in landing/applications/.",
    )
    def landing_applications_sensor(
        context: dg.SensorEvaluationContext, zones: dg.ResourceParam[Zones]
    ) -> dg.SensorResult:
        return evaluate_landing_applications(context, zones, settings.landing_settle_seconds)

    return landing_applications_sensor


def evaluate_landing_applications(
    context: dg.SensorEvaluationContext, zones: Zones, settle_seconds: float
) -> dg.SensorResult:
    """One tick of landing_applications_sensor."""
    cursor = LandingCursor.parse(context.cursor)
    now = time.time()
    plan = plan_tick(zones, cursor, now=now, settle_seconds=settle_seconds)

    run_requests, new_keys, unreadable = [], [], []
    existing_keys = set(context.instance.get_dynamic_partitions(application_files.name)) if plan.ready else set()
    for info in plan.ready:
        try:
            sha256 = _sha256(zones, info.relpath)
        except OSError as error:  # unreadable now (or gone): the other files go on, this one is tried again
            context.log.warning(f"{info.name}: cannot be read ({type(error).__name__}: {error}); tried again next tick")
            unreadable.append(info)
            continue
        key = layout.batch_key(info.name)
        if info.changed_at > now + OVERLAP_SECONDS:
            context.log.warning(
                f"{info.name}: changed {info.changed_at - now:.0f} s in the future by its time stamp (a clock "
                "set wrong, or a copy that kept it): read now, and recorded as landed now"
            )
        if key in existing_keys and _latest_content(context.instance, key) == sha256:
            context.log.info(f"{info.name}: unchanged since batch {key!r} was requested for it; skipped")
            continue
        if key not in existing_keys:
            existing_keys.add(key)
            new_keys.append(key)
        run_requests.append(
            dg.RunRequest(
                # the change time too: content changed back to an earlier version is a new request
                run_key=f"{key}:{sha256[:16]}:{info.changed_at}",
                partition_key=key,
                tags={SHA256_TAG: sha256, layout.SOURCE_FILE_TAG: info.name},
            )
        )
    for relpath in sorted(plan.not_files.keys() - set(cursor.reported)):
        kind = plan.not_files[relpath]
        advice = _RENAMING_ADVICE.get(
            kind,
            f"applications are the files directly in {layout.LANDING_PREFIX}/ "
            "(move the files it holds or points to there)",
        )
        context.log.warning(f"{relpath}: a {kind}, not read: {advice}")
    if plan.waiting:
        context.log.info(f"{len(plan.waiting)} file(s) still being written or queued for the next tick")
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[application_files.build_add_request(new_keys)] if new_keys else [],
        cursor=advance(
            cursor,
            dataclasses.replace(
                plan, ready=[info for info in plan.ready if info not in unreadable], waiting=plan.waiting + unreadable
            ),
            now,
        ).dump(),
    )
