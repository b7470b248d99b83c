"""Hourly image processing under Dagster: the landing sensor, incremental partitions, checks, registry,
the BI views — against real PostgreSQL, a local data dir and moto's S3 server."""

import io
import json
import posixpath
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import psycopg2
import pytest
from PIL import Image

from memberflow_assets.definitions import defs
from memberflow_assets.images import registry
from memberflow_assets.images.layout import hour_key, metadata_relpath, processed_dir
from memberflow_assets.images.processing import bi, hour_partition, sensors
from memberflow_assets.settings import Settings, read_sql
from memberflow_assets.testing.images import encode, exif_with_gps, jpeg, jpeg_with_garbage_scan, picture
from memberflow_assets.warehouse import versions
from memberflow_assets.warehouse.refresh import refresh_warehouse
from memberflow_assets.zones import Zones
from memberflow_assets_tests.helpers import check_results, deployment_defs, materialized_metadata, run_partition
from memberflow_assets_tests.images.helpers import CLIENT, land_image, registry_rows
from memberflow_assets_tests.sales_data import login, team_user

# The hour the tests land images in, and the sensor's clock at every tick (`tick` pins it): two and a half
# hours later, so HOUR_START has ended and is inside the sensor's scan window whenever the suite runs (with
# the wall clock, a suite crossing an hour boundary moved the window past HOUR_START between two ticks).
HOUR_START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
SENSOR_NOW = HOUR_START + timedelta(hours=2, minutes=30)
KEY = hour_key(HOUR_START)
NEXT_KEY = hour_key(HOUR_START + timedelta(hours=1))

# The tests land images in images.registry, so each runs on a migrated database.
pytestmark = pytest.mark.usefixtures("migrated_database")


def run_hour(instance: dg.DagsterInstance, key: str, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    return run_partition(instance, "image_processing", key, run_config=run_config)


def metadata_rows(zones: Zones, key: str) -> dict[str, dict]:
    return {row["image_id"]: row for row in zones.read_parquet(metadata_relpath(key)).to_pylist()}


def tick(instance: dg.DagsterInstance, cursor: str | None = None, now: datetime = SENSOR_NOW) -> dg.SensorResult:
    """One tick of `landing_images_sensor` as if the wall clock showed `now`."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    settings = Settings.from_env()
    return sensors.evaluate_landing_images(
        context, Zones.from_settings(settings), now, settings.images_run_interval_seconds
    )


def test_the_code_location_loads():
    dg.Definitions.validate_loadable(defs)  # e.g. no job named like an asset's op


def test_sensor_requests_each_hour_with_images_and_a_run_processes_it(instance, zones, pg_dsn):
    good = land_image(zones, pg_dsn, jpeg(640, 480, seed=1), HOUR_START + timedelta(minutes=5))
    located = land_image(
        zones, pg_dsn, jpeg(480, 640, seed=2, exif=exif_with_gps(6).tobytes()), HOUR_START + timedelta(minutes=6)
    )
    png = land_image(
        zones, pg_dsn, encode(picture(300, 200, mode="RGBA"), "PNG"), HOUR_START, fmt="PNG", source="kafka"
    )
    data = jpeg(640, 480, seed=3)
    corrupt = land_image(zones, pg_dsn, data[: len(data) // 2], HOUR_START + timedelta(minutes=7))
    unfinished = land_image(zones, pg_dsn, jpeg(seed=4), HOUR_START + timedelta(minutes=8), with_sidecar=False)
    land_image(zones, pg_dsn, jpeg(seed=5), HOUR_START + timedelta(hours=1, minutes=1))

    first = tick(instance)

    processing_requests = [r for r in first.run_requests if r.job_name == "image_processing"]
    assert sorted(r.partition_key for r in processing_requests) == [KEY, NEXT_KEY]
    assert {r.run_key for r in processing_requests} == {f"{KEY}:4", f"{NEXT_KEY}:1"}
    assert first.dynamic_partitions_requests[0].partition_keys == [KEY, NEXT_KEY]
    # nothing to show yet (no metadata file, no warehouse): no views run
    assert [r.job_name for r in first.run_requests if r.job_name != "image_processing"] == []

    result = run_hour(instance, KEY)

    assert result.success
    assert check_results(result) == {
        "one_row_per_landed_image": True,
        "no_location_in_outputs": True,
        "thumbnails_decode": True,
    }
    rows = metadata_rows(zones, KEY)
    assert set(rows) == {good.image_id, located.image_id, png.image_id, corrupt.image_id}  # not the unfinished one
    assert rows[corrupt.image_id]["status"] == "rejected" and rows[corrupt.image_id]["error"] == "truncated"
    assert rows[located.image_id]["gps_removed"] and (
        rows[located.image_id]["width"],
        rows[located.image_id]["height"],
    ) == (640, 480)
    assert rows[png.image_id]["source"] == "kafka" and rows[png.image_id]["client"] == CLIENT
    assert all(row["hour_key"] == KEY for row in rows.values())
    thumbnails = {info.name for info in zones.list_files(processed_dir(KEY))}
    assert thumbnails == {f"{image.image_id}.jpg" for image in (good, located, png)}
    with Image.open(io.BytesIO(zones.read_bytes(f"{processed_dir(KEY)}/{located.image_id}.jpg"))) as thumbnail:
        assert thumbnail.size == (256, 192) and len(thumbnail.getexif()) == 0  # upright

    registry = registry_rows(pg_dsn)
    assert registry[good.image_id][:2] == ("processed", None) and registry[good.image_id][4]
    assert registry[corrupt.image_id][:2] == ("rejected", "truncated")
    assert unfinished.image_id not in registry  # its landing never finished

    metadata = materialized_metadata(result, "image_metadata")
    assert (metadata["images"], metadata["processed"], metadata["rejected"], metadata["new_images"]) == (4, 3, 1, 4)
    assert metadata["rejections_by_error"] == {"truncated": 1}
    assert metadata["registry_rows_updated"] == 4 and metadata["gps_removed"] == 1
    assert materialized_metadata(result, "image_thumbnails")["thumbnails"] == 3
    # Dagster's records never hold personal data: no client, ids or hashes in any materialisation.
    recorded = json.dumps([str(event.materialization.metadata) for event in result.get_asset_materialization_events()])
    for secret in (CLIENT, good.image_id, good.sha256):
        assert secret not in recorded


def test_later_runs_process_only_new_images_and_rewrite_the_whole_partition(instance, zones, pg_dsn):
    first_images = [
        land_image(zones, pg_dsn, jpeg(seed=seed), HOUR_START + timedelta(minutes=seed)) for seed in range(3)
    ]
    cursor = tick(instance).cursor
    assert run_hour(instance, KEY).success
    before = metadata_rows(zones, KEY)

    nothing_new = tick(instance, cursor)
    assert [r for r in nothing_new.run_requests if r.job_name == "image_processing"] == []

    later = [land_image(zones, pg_dsn, jpeg(seed=seed), HOUR_START + timedelta(minutes=seed)) for seed in (10, 11)]
    again = tick(instance, nothing_new.cursor)
    assert [(r.partition_key, r.run_key) for r in again.run_requests if r.job_name == "image_processing"] == [
        (KEY, f"{KEY}:5")
    ]
    second = run_hour(instance, KEY)

    assert second.success and all(check_results(second).values())
    after = metadata_rows(zones, KEY)
    assert set(after) == {image.image_id for image in first_images + later}
    for image in first_images:  # untouched: not processed again
        assert after[image.image_id] == before[image.image_id]
    assert materialized_metadata(second, "image_metadata")["new_images"] == 2
    assert materialized_metadata(second, "image_metadata")["images"] == 5

    third = run_hour(instance, KEY)  # nothing new: nothing processed, the partition unchanged
    assert third.success and materialized_metadata(third, "image_metadata")["new_images"] == 0
    assert metadata_rows(zones, KEY) == after


def test_images_landed_by_the_ingestion_code_are_processed(instance, zones, pg_dsn):
    from memberflow_assets.images.ingestion.landing import Lander
    from memberflow_assets.postgres import ConnectionPool

    pool = ConnectionPool(pg_dsn, size=2)
    try:
        lander = Lander(zones, pool, max_pixels=100_000_000)
        api = lander.land(jpeg(seed=1, exif=exif_with_gps(6).tobytes()), source="api", client=CLIENT)
        kafka = lander.land(encode(picture(), "PNG"), source="kafka", client="app", source_key="k-1")
    finally:
        pool.close()
    keys = sorted({hour_key(api.received_at), hour_key(kafka.received_at)})  # two when landed across an hour

    for key in keys:
        result = run_hour(instance, key)
        assert result.success and all(check_results(result).values())

    rows = {image_id: row for key in keys for image_id, row in metadata_rows(zones, key).items()}
    assert rows[api.image_id]["gps_removed"] and rows[kafka.image_id]["format"] == "PNG"
    registry = registry_rows(pg_dsn)
    assert registry[api.image_id][0] == registry[kafka.image_id][0] == "processed"


def test_a_jpeg_with_garbage_image_data_passes_ingestion_and_is_rejected_by_processing(instance, zones, pg_dsn):
    from memberflow_assets.images.ingestion.landing import Lander
    from memberflow_assets.postgres import ConnectionPool

    pool = ConnectionPool(pg_dsn, size=2)
    try:
        lander = Lander(zones, pool, max_pixels=100_000_000)
        damaged = lander.land(jpeg_with_garbage_scan(jpeg(640, 480, seed=3)), source="api", client=CLIENT)
    finally:
        pool.close()
    key = hour_key(damaged.received_at)

    result = run_hour(instance, key)

    assert result.success and all(check_results(result).values())
    row = metadata_rows(zones, key)[damaged.image_id]
    assert (row["status"], row["error"], row["thumbnail_bytes"]) == ("rejected", "corrupt", None)
    assert row["error_detail"].startswith("libjpeg: Corrupt JPEG data")
    assert registry_rows(pg_dsn)[damaged.image_id][:2] == ("rejected", "corrupt")


def land_as_the_api_does(zones: Zones, dsn: str, uploads: list) -> list:
    """Land uploads as the upload API's batch worker does (prepared, staged, claimed and renamed)."""
    from memberflow_assets.images.ingestion.landing import Lander
    from memberflow_assets.postgres import ConnectionPool

    pool = ConnectionPool(dsn, size=2)
    try:
        lander = Lander(zones, pool, max_pixels=100_000_000)
        return lander.land_prepared(lander.stage_many([lander.prepare(upload, HOUR_START) for upload in uploads]))
    finally:
        pool.close()


def test_api_sidecars_a_power_failure_left_unreadable_are_rebuilt_from_the_registry_and_the_image(
    instance, zones, pg_dsn
):
    from memberflow_assets.images.ingestion.landing import Upload

    images = [jpeg(seed=seed) for seed in (11, 12, 13, 14)]
    landed = land_as_the_api_does(zones, pg_dsn, [Upload(data, "api", CLIENT) for data in images])
    sidecars = [posixpath.splitext(each.landing_path)[0] + ".json" for each in landed]
    written = [zones.read_bytes(relpath) for relpath in sidecars]
    # What a power failure can leave of a sidecar that was renamed, but whose data was never fsynced:
    damage = [b"", written[1][: len(written[1]) // 2], bytes(len(written[2])), written[3].replace(b'"api"', b'"kafka"')]
    for relpath, left in zip(sidecars, damage, strict=True):
        zones.write_bytes(relpath, left)

    result = run_hour(instance, KEY)

    assert result.success and all(check_results(result).values())
    rows = metadata_rows(zones, KEY)
    assert [rows[each.image_id]["status"] for each in landed[:3]] == ["processed"] * 3
    assert [zones.read_bytes(relpath) for relpath in sidecars[:3]] == written[:3]  # as the landing wrote them
    # Readable but not what the registry says: processed as the sidecar says, as any readable sidecar is.
    assert rows[landed[3].image_id]["source"] == "kafka"
    assert {registry_rows(pg_dsn)[each.image_id][0] for each in landed[:3]} == {"processed"}


def test_api_sidecars_a_power_failure_lost_are_rebuilt_before_the_hour_is_listed(instance, zones, pg_dsn):
    from memberflow_assets.images.ingestion.landing import Lander, Upload
    from memberflow_assets.postgres import ConnectionPool

    # Without a journal, a sidecar's name can survive a power failure while its inode, never written,
    # does not: the file system check then removes the name.
    kept, lost, no_image = land_as_the_api_does(
        zones, pg_dsn, [Upload(jpeg(seed=seed), "api", CLIENT) for seed in (31, 32, 33)]
    )
    pool = ConnectionPool(pg_dsn, size=2)
    try:
        lander = Lander(zones, pool, max_pixels=100_000_000)
        kafka_upload = Upload(jpeg(seed=34), "kafka", "app", kafka={"topic": "t", "partition": 0, "offset": 9})
        [kafka_image] = lander.land_prepared([lander.prepare(kafka_upload, HOUR_START)])
    finally:
        pool.close()
    sidecar_of = {
        each.image_id: posixpath.splitext(each.landing_path)[0] + ".json" for each in (lost, no_image, kafka_image)
    }
    written = zones.read_bytes(sidecar_of[lost.image_id])
    for relpath in sidecar_of.values():
        zones.delete(relpath)
    zones.delete(no_image.landing_path)  # an interrupted landing: its client's retry finishes it

    result = run_hour(instance, KEY)

    assert result.success and all(check_results(result).values())
    rows = metadata_rows(zones, KEY)
    assert sorted(rows) == sorted([kept.image_id, lost.image_id])
    assert rows[lost.image_id]["status"] == "processed"
    assert zones.read_bytes(sidecar_of[lost.image_id]) == written
    assert not zones.exists(sidecar_of[no_image.image_id]) and not zones.exists(sidecar_of[kafka_image.image_id])


def test_unreadable_sidecars_the_registry_and_image_cannot_rebuild_stay_rejected(instance, zones, pg_dsn):
    from memberflow_assets.images.ingestion.landing import Lander, Upload
    from memberflow_assets.postgres import ConnectionPool

    [replaced, kafka_image] = land_as_the_api_does(zones, pg_dsn, [Upload(jpeg(seed=21), "api", CLIENT)]) + [None]
    pool = ConnectionPool(pg_dsn, size=2)
    try:  # a Kafka landing: its sidecar holds the topic and offset, which the registry does not
        lander = Lander(zones, pool, max_pixels=100_000_000)
        kafka_upload = Upload(jpeg(seed=22), "kafka", "app", kafka={"topic": "t", "partition": 0, "offset": 7})
        [kafka_image] = lander.land_prepared([lander.prepare(kafka_upload, HOUR_START)])
    finally:
        pool.close()
    orphan = land_image(zones, None, jpeg(seed=23), HOUR_START)  # files without a registry row
    replaced_sidecar = posixpath.splitext(replaced.landing_path)[0] + ".json"
    zones.write_bytes(replaced.landing_path, jpeg(seed=24))  # not the registered bytes any more
    for relpath in (replaced_sidecar, posixpath.splitext(kafka_image.landing_path)[0] + ".json", orphan.relpath):
        zones.write_bytes(relpath, b"")

    result = run_hour(instance, KEY)

    assert result.success
    rows = metadata_rows(zones, KEY)
    for image_id in (replaced.image_id, kafka_image.image_id, orphan.image_id):
        assert (rows[image_id]["status"], rows[image_id]["error"]) == ("rejected", "invalid_sidecar")
    assert zones.read_bytes(replaced_sidecar) == b""  # left for an operator, never made up


def test_runs_of_one_hour_take_turns_on_a_lock_no_team_can_take(instance, zones, pg_dsn):
    land_image(zones, pg_dsn, jpeg(seed=1), HOUR_START)
    # As on RDS, where migration 0050 cannot revoke the advisory-lock functions from PUBLIC: a team user
    # holding the key the hour lock used to be must not stall the hour.
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("GRANT EXECUTE ON FUNCTION pg_advisory_lock(integer, integer) TO PUBLIC")
    connection.close()
    with team_user(pg_dsn, "analytics", prefix="hour_squatter") as user:
        squatter = login(pg_dsn, user)
        try:
            squatter.autocommit = True
            with squatter.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(hashtext('memberflow.images.hour'), hashtext(%s))", (KEY,))
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cursor.execute("SELECT hour_key FROM images.hour_locks FOR UPDATE")
            assert run_hour(instance, KEY).success
        finally:
            squatter.close()

    # a second run of the same hour waits for the first one's transaction
    first, second = psycopg2.connect(pg_dsn), psycopg2.connect(pg_dsn)
    try:
        registry.lock_hour(first, KEY)
        with second.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            registry.lock_hour(second, KEY)
        second.rollback()
        first.commit()
        registry.lock_hour(second, KEY)  # the first run has finished
        second.commit()
    finally:
        first.close()
        second.close()


def test_a_registry_row_that_arrives_late_is_brought_up_to_date_by_the_next_run(instance, zones, pg_dsn):
    on_time = land_image(zones, pg_dsn, jpeg(seed=1), HOUR_START)
    late = land_image(zones, None, jpeg(seed=2), HOUR_START)  # sidecar landed, registry row not yet
    first = run_hour(instance, KEY)
    assert first.success
    assert materialized_metadata(first, "image_metadata")["registry_rows_updated"] == 1
    assert materialized_metadata(first, "image_metadata")["registry_rows_missing"] == 1
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO images.registry (image_id, source, client, sha256, received_at, hour_key)"
            " VALUES (%s, 'api', %s, %s, %s, %s)",
            (late.image_id, CLIENT, late.sha256, HOUR_START, KEY),
        )
    connection.close()

    second = run_hour(instance, KEY)

    metadata = materialized_metadata(second, "image_metadata")
    assert (metadata["new_images"], metadata["registry_rows_updated"], metadata["registry_rows_missing"]) == (0, 1, 0)
    registry = registry_rows(pg_dsn)
    assert registry[late.image_id][0] == "processed" and registry[on_time.image_id][0] == "processed"


def test_checks_fail_when_an_output_carries_gps_or_does_not_decode(instance, zones, pg_dsn):
    image = land_image(zones, pg_dsn, jpeg(seed=1), HOUR_START)
    assert run_hour(instance, KEY).success
    thumbnail = f"{processed_dir(KEY)}/{image.image_id}.jpg"
    zones.write_bytes(thumbnail, encode(picture(200, 150), "JPEG", exif=exif_with_gps().tobytes()))
    zones.write_bytes(f"{processed_dir(KEY)}/stray.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")

    result = run_hour(instance, KEY)

    assert not result.success  # blocking checks fail the run
    assert check_results(result) == {
        "one_row_per_landed_image": True,
        "no_location_in_outputs": False,
        "thumbnails_decode": False,
    }
    location = next(e for e in result.get_asset_check_evaluations() if e.check_name == "no_location_in_outputs")
    assert location.metadata["with_gps"].value == 1 and location.metadata["with_exif"].value == 1
    decode = next(e for e in result.get_asset_check_evaluations() if e.check_name == "thumbnails_decode")
    assert decode.metadata["undecodable"].value == 1
    logged = [entry.user_message for entry in instance.all_logs(result.run_id) if "e.g." in entry.user_message]
    assert any(image.image_id in message for message in logged)  # ids in the run's log, not the check


def test_the_row_check_catches_a_missing_or_duplicated_row(instance, zones, pg_dsn):
    images = [land_image(zones, pg_dsn, jpeg(seed=seed), HOUR_START) for seed in range(3)]
    update = hour_partition.update_hour(zones, KEY, workers=1)
    table = zones.read_parquet(metadata_relpath(KEY))
    zones.write_parquet(metadata_relpath(KEY), table.take([0, 0, 1]))

    coverage = hour_partition.row_coverage(zones, KEY, update.landed_at_start)

    assert not coverage.passed
    assert coverage.duplicates == [table.column("image_id")[0].as_py()]
    assert coverage.missing == [table.column("image_id")[2].as_py()]
    late = land_image(zones, pg_dsn, jpeg(seed=9), HOUR_START)  # landed after the run listed the hour
    assert hour_partition.row_coverage(zones, KEY, {image.image_id for image in images}).arrived_during_run == 1
    assert late.image_id not in hour_partition.row_coverage(zones, KEY, {i.image_id for i in images}).missing


def test_the_worker_pool_gives_the_same_rows_as_in_process(zones):
    for seed in range(hour_partition.POOL_THRESHOLD + 4):
        land_image(zones, None, jpeg(200, 150, seed=seed), HOUR_START + timedelta(seconds=seed))
    data = jpeg(seed=99)
    land_image(zones, None, data[:300], HOUR_START)  # a bad one in the pool too
    now = HOUR_START + timedelta(hours=1)

    pooled = hour_partition.update_hour(zones, KEY, workers=2, now=now).table
    serial = hour_partition.update_hour(zones, KEY, workers=1, reprocess=True, now=now).table

    assert pooled.num_rows == hour_partition.POOL_THRESHOLD + 5
    assert pooled.equals(serial)
    assert pooled.column("status").to_pylist().count("rejected") == 1


def test_sensor_waits_between_runs_of_an_open_hour_and_skips_hours_already_processed(zones):
    now = HOUR_START + timedelta(minutes=30)
    land_image(zones, None, jpeg(seed=1), HOUR_START)
    old_key = hour_key(HOUR_START - timedelta(days=2))
    land_image(zones, None, jpeg(seed=2), HOUR_START - timedelta(days=2))
    hour_partition.update_hour(zones, old_key, workers=1)  # processed before the sensor had a cursor

    interval = Settings.from_env().images_run_interval_seconds
    requests, cursor = sensors.plan_tick(zones, sensors.ImageCursor(), now, interval)
    assert [(r.key, r.sidecars) for r in requests] == [(KEY, 1)]  # not the already processed old hour

    land_image(zones, None, jpeg(seed=3), HOUR_START + timedelta(minutes=31))
    soon = now + timedelta(seconds=interval / 2)
    requests, cursor = sensors.plan_tick(zones, cursor, soon, interval)
    assert requests == []  # the hour is still open and was requested moments ago
    requests, cursor = sensors.plan_tick(zones, cursor, now + timedelta(seconds=interval), interval)
    assert [(r.key, r.sidecars) for r in requests] == [(KEY, 2)]

    land_image(zones, None, jpeg(seed=4), HOUR_START + timedelta(minutes=59, seconds=59))
    ended = HOUR_START + timedelta(hours=1, minutes=2)  # hour over: new images are requested at once
    requests, cursor = sensors.plan_tick(zones, cursor, ended, interval)
    assert [(r.key, r.sidecars) for r in requests] == [(KEY, 3)]
    assert set(json.loads(cursor.dump())["hours"]) == {KEY}


# the sensor's current hour, and the last hour of a year: the ticks cross midnight and New Year
@pytest.mark.parametrize("hour", [SENSOR_NOW.replace(minute=0), datetime(2025, 12, 31, 23, tzinfo=UTC)])
def test_consecutive_ticks_across_hour_boundaries_miss_no_image(instance, zones, hour):
    """The cursor moves on with the clock; an image landed in an hour's last moment is still requested."""
    land_image(zones, None, jpeg(seed=1), hour + timedelta(minutes=10))
    cursor = None
    for moment, landed_just_before, wanted in (
        (hour + timedelta(minutes=59, seconds=59), None, [f"{hour_key(hour)}:1"]),
        (hour + timedelta(hours=1, seconds=1), hour + timedelta(minutes=59, seconds=59.9), []),  # open, just asked
        (hour + timedelta(hours=1, minutes=1), None, [f"{hour_key(hour)}:2"]),  # ended: asked at once
        (hour + timedelta(hours=2, seconds=1), None, []),
        (hour + timedelta(hours=2, minutes=5), hour + timedelta(minutes=30), [f"{hour_key(hour)}:3"]),  # skewed
    ):
        if landed_just_before is not None:
            land_image(zones, None, jpeg(), landed_just_before)
        result = tick(instance, cursor, now=moment)
        assert [r.run_key for r in result.run_requests] == wanted, moment
        cursor = result.cursor


def image_view_counts(warehouse: str, zones: Zones) -> dict[str, int]:
    with versions.open_published(warehouse, zones) as connection:
        return {view: connection.execute(f"SELECT count(*) FROM bi.{view}").fetchone()[0] for view in bi.IMAGE_VIEWS}


def test_bi_views_show_the_metadata_and_survive_an_empty_zone(instance, zones, pg_dsn):
    warehouse = Settings.from_env().warehouse
    versions.republish_views(warehouse, zones)
    assert image_view_counts(warehouse, zones) == dict.fromkeys(bi.IMAGE_VIEWS, 0)  # no metadata yet: empty

    land_image(zones, pg_dsn, jpeg(640, 480, seed=1), HOUR_START)
    land_image(
        zones, pg_dsn, encode(Image.new("RGB", (2000, 1100), "navy"), "PNG"), HOUR_START, fmt="PNG", source="kafka"
    )
    land_image(zones, pg_dsn, b"this is not an image", HOUR_START)
    next_hour = HOUR_START + timedelta(hours=1)
    land_image(zones, pg_dsn, jpeg(seed=2), next_hour)
    assert run_hour(instance, KEY).success and run_hour(instance, hour_key(next_hour)).success
    views = dg.materialize([deployment_defs().resolve_assets_def("image_bi_views")], instance=instance)
    assert views.success

    with duckdb.connect(warehouse, read_only=True) as connection:
        per_hour = connection.sql(
            "SELECT hour_start, source, images, processed, rejected, rejection_rate"
            " FROM bi.images_per_hour ORDER BY ALL"
        ).fetchall()
        rejections = connection.sql(
            "SELECT source, error, rejected, share_of_images FROM bi.image_rejections"
        ).fetchall()
        # The views count per day; the test's hours may straddle midnight, so add the days up.
        formats = connection.sql(
            "SELECT format, sum(images)::INTEGER FROM bi.image_formats GROUP BY format ORDER BY format"
        ).fetchall()
        sizes = connection.sql("SELECT DISTINCT format, size_class FROM bi.image_sizes ORDER BY ALL").fetchall()
        columns = [column[0] for column in connection.sql("SELECT * FROM bi.image_metadata").description]
    assert per_hour == [
        (HOUR_START.replace(tzinfo=None), "api", 2, 1, 1, 0.5),
        (HOUR_START.replace(tzinfo=None), "kafka", 1, 1, 0, 0.0),
        (next_hour.replace(tzinfo=None), "api", 1, 1, 0, 0.0),
    ]
    assert rejections == [("api", "not_an_image", 1, 0.5)]
    assert formats == [("JPEG", 2), ("PNG", 1)]
    assert sizes == [("JPEG", "1: < 0.5 MP"), ("PNG", "3: 2-8 MP")]
    assert "client" not in columns and "thumbnail_path" not in columns
    with duckdb.connect(warehouse, read_only=True) as connection:  # the documented queries all run
        for statement in connection.extract_statements(read_sql("images/analyst_queries.sql")):
            assert connection.execute(statement).fetchall() is not None
        busiest = connection.execute(connection.extract_statements(read_sql("images/analyst_queries.sql"))[1])
        assert busiest.fetchall()[0][1] == 3  # 3 images in the first hour

    # The views read the files: a new hour shows up without recreating them.
    later = next_hour + timedelta(hours=1)
    land_image(zones, pg_dsn, jpeg(seed=3), later)
    hour_partition.update_hour(zones, hour_key(later), workers=1)
    with duckdb.connect(warehouse, read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM bi.image_metadata").fetchone()[0] == 5


class ViewsAutomation:
    """Ticks of the default automation sensor's condition for image_bi_views, one cursor across them."""

    def __init__(self, instance: dg.DagsterInstance, definitions: dg.Definitions | None = None):
        self.instance, self.definitions, self.cursor = instance, definitions or deployment_defs(), None

    def requested(self, definitions: dg.Definitions | None = None) -> bool:
        self.definitions = definitions or self.definitions
        result = dg.evaluate_automation_conditions(
            defs=self.definitions,
            instance=self.instance,
            asset_selection=dg.AssetSelection.assets("image_bi_views"),
            cursor=self.cursor,
        )
        self.cursor = result.cursor
        return result.total_requested == 1


def refresh_views(instance: dg.DagsterInstance) -> bool:
    """Materialise image_bi_views as the automation sensor's run would; whether it published a new version."""
    result = dg.materialize([deployment_defs().resolve_assets_def("image_bi_views")], instance=instance)
    assert result.success
    return materialized_metadata(result, "image_bi_views")["republished"]


def test_the_views_follow_processing_purges_and_their_sql_by_automation(instance, zones, pg_dsn):
    automation = ViewsAutomation(instance)
    warehouse = Settings.from_env().warehouse
    assert not automation.requested()  # first evaluation
    assert not automation.requested()  # no images, no warehouse: no image runs at all
    sensor = sensors.build_landing_images_sensor(Settings.from_env())
    idle = sensor(dg.build_sensor_context(instance=instance, resources={"zones": Zones.from_settings()}))
    assert idle.run_requests == []  # (the landing sensor on the wall clock)
    assert versions.image_views_current(warehouse, zones)
    land_image(zones, None, jpeg(), HOUR_START)
    assert [r.job_name for r in tick(instance).run_requests] == ["image_processing"]
    assert not automation.requested()  # landed, not processed: nothing for the views yet
    assert run_hour(instance, KEY).success

    assert automation.requested()  # the first metadata file: the views must read it
    assert not automation.requested()  # requested once, however many ticks
    assert not versions.image_views_current(warehouse, zones)
    assert refresh_views(instance)
    assert versions.image_views_current(warehouse, zones)
    assert image_view_counts(warehouse, zones)["image_metadata"] == 1
    assert not automation.requested()  # nothing changed

    # A full sales refresh keeps the views: current, and nothing asks for them.
    refresh_warehouse(pg_dsn, warehouse, zones, full=True)
    assert versions.image_views_current(warehouse, zones)
    assert not automation.requested()

    # An older release's warehouse without the image views (the refresh lost them): the next processed
    # hour asks for the views, and they come back.
    with versions.draft_version(warehouse, zones) as draft:
        pass
    stale = duckdb.connect(draft.published)  # simulate it: not how anything in memberflow writes
    stale.execute("DROP VIEW bi.image_sizes; DROP TABLE meta.views")
    stale.close()
    assert not versions.image_views_current(warehouse, zones)
    land_image(zones, None, jpeg(seed=2), HOUR_START)
    assert run_hour(instance, KEY).success
    assert automation.requested()
    assert refresh_views(instance)
    assert image_view_counts(warehouse, zones)["image_sizes"] == 1

    # A processed hour while the views are current: the run publishes nothing. (A tick between: an
    # upstream update in the same tick interval as the views' own materialisation does not count.)
    assert not automation.requested()
    land_image(zones, None, jpeg(seed=3), HOUR_START)
    assert run_hour(instance, KEY).success
    assert automation.requested()
    published = versions.current_version(warehouse)
    assert not refresh_views(instance)
    assert versions.current_version(warehouse) == published
    assert image_view_counts(warehouse, zones)["image_metadata"] == 3  # the views read the files

    # Everything purged: the views must stop reading files (a glob matching nothing fails in DuckDB 1.5).
    # (the purge's files and record, as image_retention reports each run: a run cannot purge this young hour)
    assert not automation.requested()
    zones.delete(metadata_relpath(KEY))
    instance.report_runless_asset_event(dg.AssetMaterialization("image_retention_audit"))
    assert automation.requested()
    assert refresh_views(instance)
    assert image_view_counts(warehouse, zones) == dict.fromkeys(bi.IMAGE_VIEWS, 0)
    assert not automation.requested()

    # Another view SQL (a new code version of the asset): asked for without any upstream change.
    changed = defs.resolve_assets_def("image_bi_views").map_asset_specs(
        lambda spec: spec.replace_attributes(code_version="another-sql")
    )
    assert automation.requested(dg.Definitions(assets=[changed]))
    assert not automation.requested()


def test_processing_and_views_on_s3(instance, s3_env, pg_dsn):
    zones = Zones.from_settings()
    image = land_image(zones, pg_dsn, jpeg(seed=1, exif=exif_with_gps().tobytes()), HOUR_START)
    land_image(zones, pg_dsn, b"not an image", HOUR_START)

    result = run_hour(instance, KEY)

    assert result.success and all(check_results(result).values())
    assert zones.exists(f"{processed_dir(KEY)}/{image.image_id}.jpg")
    assert zones.read_parquet(metadata_relpath(KEY)).num_rows == 2
    warehouse = Settings.from_env().warehouse
    versions.republish_views(warehouse, zones)
    assert image_view_counts(warehouse, zones)["image_metadata"] == 2
    with versions.open_published(warehouse, zones) as connection:
        assert connection.execute("SELECT sum(rejected) FROM bi.images_per_hour").fetchone()[0] == 1
