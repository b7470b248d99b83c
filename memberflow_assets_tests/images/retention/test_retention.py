"""The 7-day image retention: data over 10 days, the boundary at exactly 7 days ± 1 s, everywhere the
platform keeps images (zones, registry, warehouse views, Dagster), idempotence, the audit, S3 and its
lifecycle rules — against real PostgreSQL, Dagster instances and moto's S3 server."""

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta

import boto3
import dagster as dg
import psycopg2
import pytest

from memberflow_assets import cli
from memberflow_assets.images.layout import QUARANTINE_PREFIX, hour_key, hour_start
from memberflow_assets.images.processing import hour_partition
from memberflow_assets.images.processing.jobs import IMAGE_ASSET_KEYS
from memberflow_assets.images.processing.partitions import image_hours
from memberflow_assets.images.retention import expiry, lifecycle
from memberflow_assets.images.retention.jobs import image_retention_schedule
from memberflow_assets.postgres import apply_migrations
from memberflow_assets.settings import Settings
from memberflow_assets.testing.images import jpeg
from memberflow_assets.warehouse import versions
from memberflow_assets.zones import Zones
from memberflow_assets_tests.helpers import deployment_defs
from memberflow_assets_tests.images.helpers import CLIENT, land_image

HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("as_of", "first_kept"),
    [
        ("2026-11-27T10:00:00+00:00", "2026-11-20-09"),  # 09:00-10:00 ended exactly 7 days ago: kept
        ("2026-11-27T10:00:01+00:00", "2026-11-20-10"),  # ... one second more: gone
        ("2026-11-27T09:59:59+00:00", "2026-11-20-09"),
        ("2026-11-27T10:30:00+00:00", "2026-11-20-10"),
        ("2026-11-27T18:00:00+08:00", "2026-11-20-09"),  # any zone: 10:00 UTC
        ("2027-01-01T00:30:00+00:00", "2026-12-25-00"),  # across New Year
        ("2028-03-07T00:00:00+00:00", "2028-02-28-23"),  # across a leap day
    ],
)
def test_an_hour_expires_only_when_it_ended_more_than_7_days_ago(as_of, first_kept):
    moment = datetime.fromisoformat(as_of)
    assert hour_key(expiry.first_kept_hour(moment)) == first_kept
    previous = hour_key(expiry.first_kept_hour(moment) - HOUR)
    assert expiry.is_expired(previous, moment) and not expiry.is_expired(first_kept, moment)


def test_as_of_must_have_a_zone_and_not_be_in_the_future():
    with pytest.raises(ValueError, match="time zone"):
        expiry.check_as_of(datetime(2026, 1, 1, 12))
    with pytest.raises(ValueError, match="future"):
        expiry.check_as_of(datetime.now(UTC) + timedelta(hours=1))
    assert cli.build_parser().parse_args(["retention", "--as-of", "2026-01-01T12:00"]).as_of == "2026-01-01T12:00"


# -- the 10-day scenario ----------------------------------------------------------------------------
def snapshot_files(data_dir) -> dict[str, str]:
    """relpath -> sha256 of every file in the image zones."""
    files = {}
    for zone in ("landing/images", "images", "quarantine/images"):
        for folder, _, names in os.walk(data_dir / zone):
            for name in names:
                path = os.path.join(folder, name)
                with open(path, "rb") as handle:
                    files[os.path.relpath(path, data_dir)] = hashlib.sha256(handle.read()).hexdigest()
    return files


def hour_of_file(relpath: str) -> str:
    parts = relpath.split("/")
    if parts[0] == "landing":  # landing/images/yyyy/mm/dd/hh/<file>
        return "-".join(parts[2:6])
    if parts[1] == "metadata":  # images/metadata/<hour>.parquet
        return parts[2].removesuffix(".parquet")
    return parts[2]  # images/processed/<hour>/..., quarantine/images/<hour>/...


def registry(dsn: str) -> dict[str, tuple]:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT * FROM images.registry ORDER BY image_id")
        columns = [column.name for column in cursor.description]
        rows = {row[0]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}
    connection.close()
    return rows


def audit(dsn: str) -> tuple[list[dict], list[dict]]:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(r) FROM images.retention_runs r ORDER BY started_at")
        runs = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT row_to_json(p) FROM images.retention_purges p ORDER BY hour_key")
        purges = [row[0] for row in cursor.fetchall()]
    connection.close()
    return runs, purges


def bi_hours(warehouse: str) -> list[str]:
    with versions.open_published(warehouse) as connection:
        return [
            key for (key,) in connection.sql("SELECT DISTINCT hour_key FROM bi.image_metadata ORDER BY 1").fetchall()
        ]


def materialized_partitions(instance: dg.DagsterInstance) -> set[str]:
    keys = set()
    for asset_key in IMAGE_ASSET_KEYS:
        records = instance.fetch_materializations(asset_key, limit=1000).records
        keys |= {record.partition_key for record in records}
    return keys


def partition_runs(instance: dg.DagsterInstance) -> set[str]:
    return {record.dagster_run.tags.get("dagster/partition") for record in instance.get_run_records()} - {None}


def purge(instance: dg.DagsterInstance, as_of: datetime) -> dict:
    """Run the retention job as the schedule would, with an explicit as_of."""
    job = deployment_defs().resolve_job_def("image_retention")
    result = job.execute_in_process(
        instance=instance, run_config={"ops": {"purge_expired_images": {"config": {"as_of": as_of.isoformat()}}}}
    )
    assert result.success
    output = next(
        event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_OUTPUT
    ).event_specific_data
    return {name: value.value for name, value in output.metadata.items()}


def test_retention_over_ten_days_at_the_7_day_boundary(memberflow_env, pg_dsn):
    apply_migrations(pg_dsn)
    zones = Zones.from_settings()
    warehouse = Settings.from_env().warehouse
    newest = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=4)
    # 10 days: every 4th hour, plus every hour around the boundary hour (120 hours before the newest).
    offsets = sorted({n for n in range(240) if n % 4 == 0} | {119, 121}, reverse=True)
    keys = [hour_key(newest - HOUR * n) for n in offsets]  # oldest first
    for number, key in enumerate(keys):
        land_image(zones, pg_dsn, jpeg(32, 24, seed=number), hour_start(key) + timedelta(minutes=number % 60))
        if number % 6 == 0:  # quarantined uploads now and then
            zones.write_bytes(f"{QUARANTINE_PREFIX}/{key}/q{number}.bin", b"not an image")
            zones.write_bytes(f"{QUARANTINE_PREFIX}/{key}/q{number}.reason.json", b'{"reason": "not_an_image"}')
        hour_partition.update_hour(zones, key, workers=1)
    versions.republish_views(warehouse, zones)
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:  # as Kafka landings have
        cursor.execute("UPDATE images.registry SET source_key = 'producer-' || image_id")
    connection.close()

    boundary = hour_key(newest - HOUR * 120)  # ends 7 days before as_of in the runs below
    before_boundary, after_boundary = hour_key(newest - HOUR * 121), hour_key(newest - HOUR * 119)
    older = [key for key in keys if key < boundary]
    boundary_end = hour_start(boundary) + HOUR
    with dg.instance_for_test() as instance:
        materialize_keys = [keys[0], before_boundary, boundary, after_boundary, keys[-1]]
        instance.add_dynamic_partitions(image_hours.name, materialize_keys)
        job = deployment_defs().resolve_job_def("image_processing")
        for key in materialize_keys:
            assert job.execute_in_process(instance=instance, partition_key=key).success
        assert materialized_partitions(instance) == set(materialize_keys)
        files_before, rows_before = snapshot_files(memberflow_env), registry(pg_dsn)

        def assert_purged_before(first_kept: str) -> None:
            kept_keys = [key for key in keys if key >= first_kept]
            files = snapshot_files(memberflow_env)
            # Nothing older survives, anywhere ...
            assert all(hour_of_file(path) >= first_kept for path in files)
            rows = registry(pg_dsn)
            for image_id, row in rows.items():
                if row["status"] == "purged":
                    assert row["purged_at"] is not None
                    assert {name for name, value in row.items() if value is not None} == {
                        "image_id",
                        "status",
                        "purged_at",
                    }
                else:
                    assert row["hour_key"] >= first_kept and row == rows_before[image_id]
            assert bi_hours(warehouse) == kept_keys
            assert materialized_partitions(instance) == {key for key in materialize_keys if key >= first_kept}
            for asset_key in IMAGE_ASSET_KEYS:  # Dagster's partition status agrees
                assert instance.get_materialized_partitions(asset_key) == materialized_partitions(instance)
            assert all(key >= first_kept for key in partition_runs(instance))
            assert all(key >= first_kept for key in instance.get_dynamic_partitions(image_hours.name))
            # ... and everything younger is untouched.
            assert files == {path: digest for path, digest in files_before.items() if hour_of_file(path) >= first_kept}
            assert sum(row["status"] != "purged" for row in rows.values()) == len(kept_keys)
            assert all(
                os.listdir(os.path.join(folder, name))
                for folder, names, _ in os.walk(memberflow_env / "landing" / "images")
                for name in names
            ), "empty landing folders left behind"

        # 1 second before the boundary hour turns 7 days old: everything older goes, it stays.
        first = purge(instance, boundary_end + WEEK - SECOND)
        assert (first["first_kept_hour"], first["partitions_purged"]) == (boundary, len(older))
        assert first["registry_rows_purged"] == len(older) and first["dagster_runs_deleted"] == 2
        assert_purged_before(boundary)

        # Exactly 7 days: still not *more* than 7 days, so nothing goes — a second run deletes nothing.
        second = purge(instance, boundary_end + WEEK)
        assert second["partitions_purged"] == second["objects_deleted"] == second["dagster_runs_deleted"] == 0
        assert_purged_before(boundary)

        # 1 second past: the boundary hour goes, the next one stays.
        third = purge(instance, boundary_end + WEEK + SECOND)
        assert (third["first_kept_hour"], third["partitions_purged"], third["dagster_runs_deleted"]) == (
            hour_key(boundary_end),
            1,
            1,
        )
        quarantined = 2 * (keys.index(boundary) % 6 == 0)
        assert third["objects_deleted"] == 4 + quarantined  # image, sidecar, thumbnail, metadata file
        assert_purged_before(after_boundary)
        fourth = purge(instance, boundary_end + WEEK + SECOND)
        assert fourth["partitions_purged"] == fourth["objects_deleted"] == fourth["registry_rows_purged"] == 0
        assert_purged_before(after_boundary)

    runs, purges = audit(pg_dsn)
    assert [run["partitions_purged"] for run in runs] == [len(older), 0, 1, 0]
    assert all(run["finished_at"] for run in runs)
    assert [p["hour_key"] for p in purges] == [*older, boundary]
    assert purges[0]["objects_by_zone"] == {"metadata": 1, "processed": 1, "landing": 2, "quarantine": 2}
    assert sum(p["bytes_deleted"] for p in purges) == sum(run["bytes_deleted"] for run in runs) > 0
    recorded = json.dumps(runs + purges, default=str)
    assert CLIENT not in recorded
    assert not any(image_id in recorded for image_id in rows_before)


def test_a_run_still_going_for_an_expired_hour_is_left_for_the_next_purge(memberflow_env, pg_dsn):
    from memberflow_assets.images.retention.jobs import DagsterPartitionRecords

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(image_hours.name, ["2026-01-01-00"])
        run = instance.create_run_for_job(
            deployment_defs().resolve_job_def("image_processing"), tags={"dagster/partition": "2026-01-01-00"}
        )
        records = DagsterPartitionRecords(instance)

        assert records.forget(records.runs_of(["2026-01-01-00"])) == {"2026-01-01-00": 0}
        assert instance.get_run_by_id(run.run_id) is not None
        assert instance.has_dynamic_partition(image_hours.name, "2026-01-01-00")  # found again next time
        instance.report_run_canceled(run)
        assert records.forget(records.runs_of(["2026-01-01-00"])) == {"2026-01-01-00": 1}
        assert not instance.has_dynamic_partition(image_hours.name, "2026-01-01-00")


def test_the_schedule_purges_as_of_its_tick():
    tick = datetime(2026, 11, 28, 7, 1, tzinfo=UTC)
    context = dg.build_schedule_context(scheduled_execution_time=tick)
    request = image_retention_schedule(context)
    assert request.run_config == {"ops": {"purge_expired_images": {"config": {"as_of": tick.isoformat()}}}}


# -- S3 -------------------------------------------------------------------------------------------
def test_retention_command_on_s3(s3_env, pg_dsn, moto_endpoint, monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    apply_migrations(pg_dsn)
    zones = Zones.from_settings()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # ended 7 days + 2 h before `now`; ended 7 days - 2 h before it, so still kept by the run as of the wall
    # clock below even when the clock has passed into the next hour meanwhile (the exact boundary has its
    # own test above)
    old, young = now - WEEK - 3 * HOUR, now - WEEK + HOUR
    for moment in (old, young):
        land_image(zones, pg_dsn, jpeg(seed=moment.hour), moment + timedelta(minutes=5))
        hour_partition.update_hour(zones, hour_key(moment), workers=1)
    before = {info.relpath for info in zones.list_files("", recursive=True)}

    assert cli.main(["retention", "--as-of", now.isoformat()]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cli.main(["retention"]) == 0  # as of now: a few seconds later, nothing more
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    after = {info.relpath for info in zones.list_files("", recursive=True)}
    assert (first["partitions_purged"], first["objects_deleted"]) == (1, 4)
    assert second["partitions_purged"] == 0
    assert after == {path for path in before if hour_key(old) not in path and old.strftime("%Y/%m/%d/%H") not in path}
    assert any(hour_key(young) in path for path in after)


def test_retention_pointed_at_a_bucket_that_does_not_exist_fails_and_purges_nothing(s3_env, pg_dsn, monkeypatch):
    """A mistyped bucket looked like an empty store: the run succeeded and made the registry rows of images
    still stored in the real bucket tombstones."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    apply_migrations(pg_dsn)
    expired = datetime.now(UTC) - WEEK - 3 * HOUR
    sidecar = land_image(Zones.from_settings(), pg_dsn, jpeg(seed=3), expired)
    monkeypatch.setenv("MEMBERFLOW_STORAGE_URL", "s3://no-such-bucket-memberflow/zones")

    with pytest.raises(FileNotFoundError, match="no-such-bucket-memberflow"):
        expiry.run_retention(Zones.from_settings(), pg_dsn, datetime.now(UTC), "wrong-bucket", "test")

    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM images.registry WHERE image_id = %s", (sidecar.image_id,))
        assert cursor.fetchone() == ("landed",)
        cursor.execute("SELECT count(*) FROM images.retention_runs WHERE retention_run_id = 'wrong-bucket'")
        assert cursor.fetchone() == (0,)


def test_s3_lifecycle_rules_expire_the_image_prefixes_and_keep_other_rules(s3_env, moto_endpoint, capsys):
    zones = Zones.from_settings()
    bucket, prefix = lifecycle.bucket_and_prefix(zones)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    logs_rule = {"ID": "logs-30d", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 30}}
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [logs_rule]})
    assert lifecycle.current_rules(zones)[0]["ID"] == "logs-30d"

    assert cli.main(["s3-lifecycle"]) == 0
    printed = json.loads(capsys.readouterr().out)
    lifecycle.apply_lifecycle(zones)  # again: same rules, not duplicated

    rules = {rule["ID"]: rule for rule in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert {rule["ID"] for rule in printed} == set(rules)
    assert set(rules) == {"logs-30d"} | {f"memberflow-images-{name}" for name in lifecycle.IMAGE_PREFIXES}
    expected_prefixes = {f"{prefix}/landing/images/", f"{prefix}/images/processed/", f"{prefix}/images/metadata/"}
    expected_prefixes.add(f"{prefix}/quarantine/images/")
    ours = [rule for rule in rules.values() if rule["ID"].startswith("memberflow-images-")]
    assert {rule["Filter"]["Prefix"] for rule in ours} == expected_prefixes
    assert all(rule["Expiration"] == {"Days": 7} and rule["Status"] == "Enabled" for rule in ours)
    assert rules["logs-30d"]["Expiration"] == {"Days": 30}
    with pytest.raises(ValueError, match="7 days"):
        lifecycle.apply_lifecycle(zones, days=3)


def test_s3_lifecycle_refuses_local_zones(memberflow_env):
    with pytest.raises(ValueError, match="local folder"):
        lifecycle.apply_lifecycle(Zones.from_settings())
