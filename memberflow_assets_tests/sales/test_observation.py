"""sales_database observed: its data version changes with what is written outside Dagster (transactions,
their status, the catalogue) and not otherwise, and the warehouse's automation follows it."""

import dagster as dg
import psycopg2
from dagster._core.definitions.observe import observe as observe_source

from memberflow_assets.definitions import defs
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.sales.assets import sales_database
from memberflow_assets.sales.sensors import sales_database_observation_sensor
from memberflow_assets.settings import Settings
from memberflow_assets_tests.sales_data import add_item, add_members, add_transaction, migrated

MEMBER = "lee_1a2b3"


def observe(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    """One tick of the observation sensor; records its observation as the sensor daemon does."""
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"sales_db": SalesDatabase.from_settings(Settings.from_env())}
    )
    result = sales_database_observation_sensor(context)
    if isinstance(result, dg.SensorResult):
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
    return result


def write(dsn: str, statement: str) -> None:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(statement)


def test_the_data_version_changes_with_writes_from_outside_dagster_only(memberflow_env, pg_dsn, instance):
    migrated(pg_dsn)
    add_members(pg_dsn, [MEMBER])
    versions = []

    def changed() -> bool:
        result = observe(instance, versions[-1] if versions else None)
        if isinstance(result, dg.SkipReason):
            assert result.skip_message == f"unchanged: {versions[-1]}"
            return False
        [observation] = result.asset_events
        assert observation.asset_key == dg.AssetKey("sales_database")
        assert observation.data_version == result.cursor
        versions.append(result.cursor)
        return True

    assert changed()  # the first observation
    assert versions[0] == "transactions 0 updated - catalogue " + versions[0].split()[-1]
    assert not changed()
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        kettle = add_item(cursor, "Kettle", "19.99", "1.200")
    assert changed()  # the catalogue
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        transaction = add_transaction(cursor, MEMBER, [(kettle, 2)])
    assert changed()
    assert versions[-1].startswith(f"transactions {transaction} updated ")
    assert not changed()
    write(pg_dsn, f"UPDATE sales.transactions SET status = 'completed' WHERE transaction_id = {transaction}")
    assert changed()  # logistics completed it: same id, newer updated_at
    write(pg_dsn, f"UPDATE sales.items SET cost = 17.50 WHERE item_id = {kettle}")
    assert changed()  # a price change
    write(pg_dsn, "UPDATE sales.items SET cost = cost")  # a write that changes nothing
    assert not changed()
    add_members(pg_dsn, ["kim_4c5d6"])  # members are Dagster's own (the members asset), not observed here
    write(pg_dsn, "SELECT count(*) FROM sales.transactions")
    assert not changed()
    assert len(set(versions)) == len(versions) == 5


def test_the_warehouse_follows_new_data_versions_of_sales_database(instance):
    warehouse = dg.AssetSelection.assets("fact_sales")

    def requested(cursor):
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=warehouse, cursor=cursor
        )
        return result.total_requested > 0, result.cursor

    def observed(version: str) -> None:
        instance.report_runless_asset_event(
            dg.AssetObservation("sales_database", tags={"dagster/data_version": version})
        )

    was_requested, cursor = requested(None)
    assert not was_requested  # a new deployment: nothing before an update
    observed("transactions 1 updated 2026-01-01T00:00:00.000000 catalogue 000000000000")
    was_requested, cursor = requested(cursor)
    assert was_requested
    was_requested, cursor = requested(cursor)
    assert not was_requested
    observed("transactions 1 updated 2026-01-01T00:00:00.000000 catalogue 000000000000")  # the same version
    was_requested, cursor = requested(cursor)
    assert not was_requested
    observed("transactions 2 updated 2026-01-01T00:05:00.000000 catalogue 000000000000")
    was_requested, cursor = requested(cursor)
    assert was_requested


def test_observing_from_the_ui_records_the_same_data_version(memberflow_env, pg_dsn, instance):
    migrated(pg_dsn)
    result = observe_source(
        [sales_database], instance=instance, resources={"sales_db": SalesDatabase.from_settings(Settings.from_env())}
    )
    assert result.success
    [record] = instance.fetch_observations(dg.AssetKey("sales_database"), limit=1).records
    sensor_result = observe(instance, None)
    assert (
        record.asset_observation.data_version
        == sensor_result.cursor
        == "transactions 0 updated - catalogue " + (sensor_result.cursor.split()[-1])
    )
