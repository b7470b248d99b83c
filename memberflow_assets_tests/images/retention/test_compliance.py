"""The hourly 7-day compliance check (`images_purged_within_7_days`): a clean platform passes; an hour
older than 7 days plus the purge interval left in any one store fails it, naming that store — against
real zones, PostgreSQL, a DuckDB warehouse and a Dagster instance."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg2
import pytest
import time_machine

from memberflow_assets.images import layout
from memberflow_assets.images.layout import hour_key, hour_start
from memberflow_assets.images.processing import hour_partition
from memberflow_assets.images.processing.partitions import image_hours
from memberflow_assets.images.retention import compliance
from memberflow_assets.postgres import apply_migrations
from memberflow_assets.settings import Settings, read_sql
from memberflow_assets.testing.images import jpeg
from memberflow_assets.warehouse import versions
from memberflow_assets.zones import Zones
from memberflow_assets_tests.helpers import deployment_defs
from memberflow_assets_tests.images.helpers import CLIENT, land_image

STORES = ("landing", "processed", "metadata", "quarantine", "registry", "dagster", "warehouse")


def run_check(instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
    result = (
        deployment_defs()
        .resolve_job_def("image_retention_compliance")
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == "images_purged_within_7_days"
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    return evaluation


def metadata(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {name: value.value for name, value in evaluation.metadata.items()}


def everywhere(zones, dsn: str, instance: dg.DagsterInstance, key: str) -> None:
    """An hour with data in every store, as the platform leaves it after processing."""
    land_image(zones, dsn, jpeg(32, 24), hour_start(key) + timedelta(minutes=5))
    zones.write_bytes(f"{layout.QUARANTINE_PREFIX}/{key}/q1.bin", b"not an image")
    hour_partition.update_hour(zones, key, workers=1)
    instance.add_dynamic_partitions(image_hours.name, [key])


@pytest.fixture
def now():
    """The clock, pinned (ticking) half-way through the last hour: the hours a test computes and the check's
    `now` stay in one hour whenever the suite runs (from hh:59:59 on, the check would move the window)."""
    moment = datetime.now(UTC).replace(minute=30, second=0, microsecond=0) - timedelta(hours=1)
    with time_machine.travel(moment, tick=True):
        yield moment


@pytest.fixture
def platform(now, memberflow_env, pg_dsn, zones, instance):
    """A platform holding the current hour and the oldest hour retention may still keep, everywhere."""
    apply_migrations(pg_dsn)
    oldest_allowed = hour_key(compliance.overdue_before(now))
    for key in (hour_key(now), oldest_allowed):
        everywhere(zones, pg_dsn, instance, key)
    versions.republish_views(Settings.from_env().warehouse, zones)
    return zones, pg_dsn, instance, oldest_allowed


def test_a_clean_platform_passes(platform):
    *_, instance, oldest_allowed = platform
    evaluation = run_check(instance)
    found = metadata(evaluation)
    assert evaluation.passed, found
    assert found["stores_checked"] == sorted(STORES)
    assert found["stores_with_overdue_data"] == []
    assert all(found[f"overdue_hours_{store}"] == 0 for store in STORES)
    assert found["overdue_before_hour"] == oldest_allowed


def leave_behind(store: str, zones, dsn: str, instance: dg.DagsterInstance, key: str) -> None:
    """Data of hour `key` in one store only, as a purge that failed there would leave it."""
    moment = hour_start(key) + timedelta(minutes=30)
    if store == "landing":
        land_image(zones, None, jpeg(16, 16), moment)
    elif store == "processed":
        zones.write_bytes(f"{layout.PROCESSED_PREFIX}/{key}/thumbnail.jpg", jpeg(16, 16))
    elif store == "metadata":
        zones.write_parquet(layout.metadata_relpath(key), hour_partition.METADATA_SCHEMA.empty_table())
    elif store == "quarantine":
        zones.write_bytes(f"{layout.QUARANTINE_PREFIX}/{key}/q2.reason.json", b'{"reason": "not_an_image"}')
    elif store == "registry":
        land_image(zones, dsn, jpeg(16, 16), moment)
        zones.delete_tree(layout.landing_dir_for_hour(key))
    elif store == "dagster":
        instance.add_dynamic_partitions(image_hours.name, [key])
    elif store == "warehouse":  # a copy of image rows in a table (the image views never copy)
        with versions.draft_version(Settings.from_env().warehouse, zones) as draft:
            draft.connection.execute(
                "CREATE TABLE main.image_copy AS SELECT 'some-image' AS image_id, ?::TIMESTAMPTZ AS received_at",
                [moment],
            )


@pytest.mark.parametrize("store", STORES)
def test_an_hour_older_than_the_window_fails_naming_its_store(platform, store):
    zones, dsn, instance, oldest_allowed = platform
    overdue = hour_key(hour_start(oldest_allowed) - timedelta(hours=1))
    leave_behind(store, zones, dsn, instance, overdue)
    evaluation = run_check(instance)
    found = metadata(evaluation)
    assert not evaluation.passed
    assert found["stores_with_overdue_data"] == [store]
    assert found[f"overdue_hours_{store}"] == 1 and found[f"oldest_overdue_{store}"] == [overdue]
    assert store in evaluation.description
    assert CLIENT not in json.dumps(found)  # hour keys and counts only


def test_the_retention_run_clears_what_the_check_found(platform):
    zones, dsn, instance, oldest_allowed = platform
    overdue = [hour_key(hour_start(oldest_allowed) - timedelta(hours=n)) for n in (1, 30)]
    for key in overdue:
        everywhere(zones, dsn, instance, key)
    found = metadata(run_check(instance))
    assert set(found["stores_with_overdue_data"]) == set(STORES) - {"warehouse"}
    assert all(found[f"oldest_overdue_{store}"] == sorted(overdue) for store in found["stores_with_overdue_data"])

    purge = deployment_defs().resolve_job_def("image_retention").execute_in_process(instance=instance)
    assert purge.success
    [audit] = instance.fetch_materializations(dg.AssetKey("image_retention_audit"), limit=1).records
    # the two overdue hours, and the oldest one the check still allowed: now past 7 days itself
    assert audit.asset_materialization.metadata["partitions_purged"].value == 3
    assert run_check(instance).passed


def test_the_registry_is_asked_through_its_indexes(platform):
    """The registry's part is two range scans of its partial indexes: never a read of every row, nor of tombstones."""
    _, dsn, *_ = platform
    first_kept = datetime.now(UTC) - timedelta(days=7)
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # tiny tables: make the planner show what it can use
        cursor.execute(
            "EXPLAIN " + read_sql("images/expired_registry_hours.sql"),
            {"first_kept": first_kept, "first_kept_key": hour_key(first_kept)},
        )
        plan = "\n".join(row for (row,) in cursor.fetchall())
    connection.close()
    assert "Index Cond: (received_at <" in plan and "Index Cond: (hour_key <" in plan, plan
    assert "Seq Scan on registry_status" not in plan, plan


def test_zones_in_s3_are_checked_the_same_way(now, s3_env, pg_dsn, instance):
    apply_migrations(pg_dsn)
    zones = Zones.from_settings()
    assert zones.url("").startswith("s3://")
    oldest_allowed = hour_key(compliance.overdue_before(now))
    everywhere(zones, pg_dsn, instance, oldest_allowed)
    assert run_check(instance).passed

    overdue = hour_key(hour_start(oldest_allowed) - timedelta(hours=1))
    for store in ("landing", "processed", "metadata", "quarantine"):
        leave_behind(store, zones, pg_dsn, instance, overdue)
    found = metadata(run_check(instance))
    assert found["stores_with_overdue_data"] == ["landing", "processed", "quarantine", "metadata"]
    assert all(found[f"oldest_overdue_{store}"] == [overdue] for store in found["stores_with_overdue_data"])
