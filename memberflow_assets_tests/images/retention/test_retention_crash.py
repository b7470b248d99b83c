"""The retention audit adds up to what was deleted, however often `memberflow retention` is killed: the
CLI is SIGKILLed at several points of a purge over real files, PostgreSQL and a Dagster instance, then
run to the end; every file, registry row and Dagster run deleted is in `images.retention_purges` exactly
once, and each killed run's totals are filled in by the run after it."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg2
import pytest

from memberflow_assets import cli, postgres
from memberflow_assets.images.layout import QUARANTINE_PREFIX, hour_key, landing_dir_for_hour, processed_dir
from memberflow_assets.images.processing.partitions import image_hours
from memberflow_assets.images.retention import expiry
from memberflow_assets.zones import Zones
from memberflow_assets_tests.helpers import deployment_defs

HOURS, PER_HOUR, HOURS_WITH_RUNS = 6, 150, 4  # small: Dagster's SQLite runs cost ~1 s each on a busy disk


def seed_expired_hours(zones: Zones, dsn: str, instance: dg.DagsterInstance, keys: list[str]) -> dict[str, int]:
    """What landing, processing and Dagster leave of `keys`; returns what there is to delete."""
    root = zones.root
    files = size = 0
    for key in keys:
        written = [
            *((f"{landing_dir_for_hour(key)}/{key}-{n}.jpg", os.urandom(2048)) for n in range(PER_HOUR)),
            *((f"{landing_dir_for_hour(key)}/{key}-{n}.json", b"{}") for n in range(PER_HOUR)),
            *((f"{processed_dir(key)}/{key}-{n}.jpg", os.urandom(700)) for n in range(PER_HOUR)),
            (f"images/metadata/{key}.parquet", os.urandom(5000)),
            (f"{QUARANTINE_PREFIX}/{key}/q.bin", b"not an image"),
        ]
        for relpath, data in written:
            os.makedirs(os.path.dirname(os.path.join(root, relpath)), exist_ok=True)
            with open(os.path.join(root, relpath), "wb") as handle:
                handle.write(data)
        files, size = files + len(written), size + sum(len(data) for _, data in written)
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        for key in keys:
            received = datetime.strptime(key, "%Y-%m-%d-%H").replace(tzinfo=UTC)
            cursor.execute("SELECT images.create_registry_details_partition(%s)", (key,))
            cursor.execute(
                "INSERT INTO images.registry_status (image_id, status, source, size_bytes, content_type,"
                " received_at, hour_key) SELECT %s || '-' || n, 'processed', 'api', 2048, 'image/jpeg', %s, %s"
                " FROM generate_series(1, %s) AS n",
                (key, received, key, PER_HOUR),
            )
            cursor.execute(
                "INSERT INTO images.registry_details (hour_key, image_id, client, sha256, landing_path)"
                " SELECT %s, %s || '-' || n, 'shop', md5(n::text), 'x' FROM generate_series(1, %s) AS n",
                (key, key, PER_HOUR),
            )
    connection.close()
    instance.add_dynamic_partitions(image_hours.name, keys)
    job = deployment_defs().resolve_job_def("image_processing")
    for key in keys[:HOURS_WITH_RUNS]:  # finished runs of the hour, as processing leaves them
        instance.report_run_canceled(instance.create_run_for_job(job, tags={"dagster/partition": key}))
    return {"objects": files, "bytes": size, "registry_rows": PER_HOUR * len(keys), "runs": HOURS_WITH_RUNS}


def query(dsn: str, sql: str, *parameters) -> list[tuple]:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        rows = cursor.fetchall()
    connection.close()
    return rows


def started_runs(dsn: str) -> set[str]:
    return {run_id for (run_id,) in query(dsn, "SELECT retention_run_id FROM images.retention_runs")}


def kill_retention_when(dsn: str, as_of: datetime, stage) -> None:
    """Start `memberflow retention`, SIGKILL it as soon as `stage(its run ids)` is true."""
    before = started_runs(dsn)
    command = [sys.executable, "-m", "memberflow_assets.cli", "retention", "--as-of", as_of.isoformat()]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            mine = started_runs(dsn) - before
            if mine and stage(mine):
                process.kill()
                break
            time.sleep(0.005)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"


@pytest.mark.timeout(300)
def test_killed_retention_runs_are_accounted_for_by_the_next_run(memberflow_env, pg_dsn, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    postgres.apply_migrations(pg_dsn)
    zones = Zones.from_settings()
    as_of = datetime.now(UTC)
    oldest = as_of.replace(minute=0, second=0, microsecond=0) - timedelta(days=9)
    keys = [hour_key(oldest + timedelta(hours=n)) for n in range(HOURS)]
    instance = dg.DagsterInstance.get()
    seeded = seed_expired_hours(zones, pg_dsn, instance, keys)

    def landing_hours_left() -> int:
        return sum(os.path.exists(zones.path(landing_dir_for_hour(key))) for key in keys)

    kill_retention_when(pg_dsn, as_of, lambda run: True)  # as soon as it has started
    kill_retention_when(pg_dsn, as_of, lambda run: landing_hours_left() < HOURS)  # while deleting files
    killed = started_runs(pg_dsn)
    assert cli.main(["retention", "--as-of", as_of.isoformat()]) == 0

    assert landing_hours_left() == 0  # everything went ...
    assert instance.get_run_records() == []
    [totals] = query(
        pg_dsn,
        "SELECT sum(objects_deleted), sum(bytes_deleted), sum(registry_rows_purged), sum(dagster_runs_deleted)"
        " FROM images.retention_purges",
    )
    # ... and the audit says exactly that, once.
    assert totals == (seeded["objects"], seeded["bytes"], seeded["registry_rows"], seeded["runs"])
    assert query(pg_dsn, "SELECT count(*) FROM images.retention_purges WHERE state = 'deleting'") == [(0,)]
    audit_runs = query(
        pg_dsn,
        "SELECT r.retention_run_id, r.finished_at IS NOT NULL, r.reconciled_by, r.objects_deleted,"
        " r.dagster_runs_deleted, r.registry_rows_purged, coalesce(sum(p.objects_deleted), 0),"
        " coalesce(sum(p.dagster_runs_deleted), 0), coalesce(sum(p.registry_rows_purged), 0)"
        " FROM images.retention_runs r LEFT JOIN images.retention_purges p USING (retention_run_id)"
        " GROUP BY r.retention_run_id ORDER BY r.started_at",
    )
    assert len(audit_runs) == 3
    for run_id, finished, reconciled_by, *totals in audit_runs:
        assert totals[:3] == totals[3:], run_id  # each run's totals are the sum of its hours
        assert finished == (run_id not in killed)
        assert (reconciled_by is not None) == (run_id in killed)
    assert sum(run[3] for run in audit_runs) == seeded["objects"]
    assert sum(run[3] for run in audit_runs if run[0] in killed) > 0  # the killed runs did delete, and it shows


def test_a_second_retention_run_waits_for_the_first_and_then_says_so(memberflow_env, pg_dsn, monkeypatch):
    postgres.apply_migrations(pg_dsn)
    holder = psycopg2.connect(pg_dsn)  # a run in progress holds the lock
    try:
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLE images.retention_lock IN EXCLUSIVE MODE")
        monkeypatch.setattr(expiry, "LOCK_WAIT", "200ms")
        with pytest.raises(RuntimeError, match="another retention run"):
            expiry.run_retention(Zones.from_settings(), pg_dsn, datetime.now(UTC), "second", "test")
    finally:
        holder.close()
    assert query(pg_dsn, "SELECT count(*) FROM images.retention_runs") == [(0,)]  # it recorded nothing
    result = expiry.run_retention(Zones.from_settings(), pg_dsn, datetime.now(UTC), "third", "test")
    assert result.purges == []
