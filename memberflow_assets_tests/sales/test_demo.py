"""The deterministic demo data generator, its command, and the demo flow in Dagster: members from the
membership pipeline -> sales_demo_data -> the warehouse, each started by a sensor."""

import time

import dagster as dg
import psycopg2
import pytest

from memberflow_assets import cli
from memberflow_assets.definitions import defs
from memberflow_assets.membership.samples import generate_applications
from memberflow_assets.sales import demo_data
from memberflow_assets.sales.demo_data import DemoSpec, seed_demo_sales
from memberflow_assets.settings import Settings
from memberflow_assets.warehouse.versions import open_published
from memberflow_assets_tests.helpers import deployment_defs, land, run_batch
from memberflow_assets_tests.sales_data import add_item, add_members, login, migrated, team_user

MEMBERS = [f"member{number}_{number:05x}" for number in range(40)]
SMALL = DemoSpec(manufacturers=4, items=30)


def seed(dsn: str, spec: DemoSpec = SMALL):
    connection = psycopg2.connect(dsn)
    try:
        with connection:
            return seed_demo_sales(connection, spec)
    finally:
        connection.close()


def content(dsn: str) -> tuple[list, list, list]:
    """Everything the generator wrote, keyed by natural values (ids depend on the sequence, not the data)."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT i.name, m.name, i.cost, i.weight_kg FROM sales.items i JOIN sales.manufacturers m "
                       "USING (manufacturer_id) ORDER BY 1")  # fmt: skip
        items = cursor.fetchall()
        cursor.execute(
            "SELECT membership_id, created_at, total_price, total_weight_kg, status, completed_at "
            "FROM sales.transactions ORDER BY 1, 2, 3"
        )
        transactions = cursor.fetchall()
        cursor.execute(
            "SELECT t.membership_id, t.created_at, l.line_number, i.name, l.quantity, l.unit_price, l.unit_weight_kg "
            "FROM sales.transaction_lines l JOIN sales.transactions t USING (transaction_id) "
            "JOIN sales.items i USING (item_id) ORDER BY 1, 2, 3"
        )
        lines = cursor.fetchall()
    connection.close()
    return items, transactions, lines


def test_the_same_members_get_the_same_data_whatever_the_order_they_arrived_in(make_database):
    at_once, in_two_batches = migrated(make_database()), migrated(make_database())
    add_members(at_once, MEMBERS)
    first = seed(at_once)
    add_members(in_two_batches, MEMBERS[25:])
    seed(in_two_batches)
    add_members(in_two_batches, MEMBERS[:25])
    seed(in_two_batches)

    assert content(at_once) == content(in_two_batches)
    items, transactions, lines = content(at_once)
    assert (first.items_created, first.manufacturers_created) == (30, 4) == (len(items), len({i[1] for i in items}))
    assert (first.transactions_created, first.lines_created) == (len(transactions), len(lines))
    # about 3 transactions per member (0..6), 1..5 lines each; some members have none
    assert 60 < len(transactions) < 180 and len(transactions) < len(lines) <= 5 * len(transactions)
    assert first.members_served == len({t[0] for t in transactions}) < len(MEMBERS)
    assert {t[4] for t in transactions} == {"completed", "pending"}


def test_rerunning_adds_nothing_and_another_seed_gives_other_data(make_database):
    dsn, other = migrated(make_database()), migrated(make_database())
    for database in (dsn, other):
        add_members(database, MEMBERS)
    seed(dsn)
    before = content(dsn)
    again = seed(dsn)
    assert (again.items_created, again.transactions_created, again.members_served) == (0, 0, 0)
    assert content(dsn) == before
    seed(other, DemoSpec(seed=2, manufacturers=4, items=30))
    assert content(other)[1] != before[1]


def test_an_existing_catalogue_is_used_as_it_is_and_discontinued_items_are_not_sold(make_database):
    dsn = migrated(make_database())
    add_members(dsn, MEMBERS)
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        kept = add_item(cursor, "Real Kettle", "19.99", "1.200", manufacturer="Real Co")
        gone = add_item(cursor, "Old Lamp", "5.50", "0.250", manufacturer="Real Co")
        cursor.execute("UPDATE sales.items SET discontinued_at = now() WHERE item_id = %s", (gone,))
    connection.close()
    result = seed(dsn)
    assert (result.items_created, result.manufacturers_created) == (0, 0)
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT item_id FROM sales.transaction_lines")
        assert cursor.fetchall() == [(kept,)]
    connection.close()


def test_a_sales_user_locking_the_items_makes_the_demo_fail_soon_naming_them(make_database, monkeypatch):
    """Reproduced: a Sales user's `BEGIN; SELECT item_id FROM sales.items FOR UPDATE;` left open blocked the
    demo with no time limit (each new line's foreign key shares a lock on its item)."""
    dsn = migrated(make_database())
    add_members(dsn, MEMBERS[:2])
    seed(dsn)  # the catalogue
    add_members(dsn, MEMBERS[2:4])
    monkeypatch.setattr(demo_data, "DEMO_LOCK_TIMEOUT_SECONDS", 0.5)
    with team_user(dsn, "sales", prefix="locking_seller") as user:
        seller = login(dsn, user)
        try:
            seller.cursor().execute("SELECT item_id FROM sales.items FOR UPDATE")  # transaction left open
            started = time.monotonic()
            demo = psycopg2.connect(dsn, options="-c statement_timeout=20s")  # so that no limit fails, not hangs
            try:
                with pytest.raises(demo_data.DemoLockTimeout) as failure, demo:
                    seed_demo_sales(demo, SMALL)
            finally:
                demo.close()
            assert time.monotonic() - started < 10
            message = str(failure.value)
            assert "the sales demo waited 0.5 s for a lock and gave up" in message
            assert f"user {user} (idle in transaction" in message and "sales.items" in message
        finally:
            seller.close()
    assert seed(dsn).members_served == 2  # nothing was written by the failed run; the lock has gone


def test_without_members_only_the_catalogue_is_created(make_database):
    dsn = migrated(make_database())
    result = seed(dsn)
    assert (result.items_created, result.transactions_created) == (SMALL.items, 0)


def test_the_demo_command(memberflow_env, pg_dsn, capsys):
    migrated(pg_dsn)
    add_members(pg_dsn, MEMBERS[:5])
    assert cli.main(["sales-demo", "--items", "12", "--manufacturers", "3"]) == 0
    assert "3 manufacturers and 12 items created" in capsys.readouterr().out
    assert cli.main(["sales-demo"]) == 0
    assert "0 transactions with 0 lines" in capsys.readouterr().out


@pytest.mark.parametrize("demo_env", ["1", None])
def test_the_demo_sensor_runs_only_in_the_demo(monkeypatch, demo_env):
    from memberflow_assets.sales.sensors import build_sales_demo_sensor

    if demo_env:
        monkeypatch.setenv("MEMBERFLOW_SALES_DEMO", demo_env)
    else:
        monkeypatch.delenv("MEMBERFLOW_SALES_DEMO", raising=False)
    expected = dg.DefaultSensorStatus.RUNNING if demo_env else dg.DefaultSensorStatus.STOPPED
    assert build_sales_demo_sensor(Settings.from_env()).default_status == expected


WAREHOUSE = {
    "dim_member",
    "dim_item",
    "dim_date",
    "fact_sales",
    "fact_transactions",
    "application_outcomes",
    "bi_views",
}


def requested(instance: dg.DagsterInstance, cursor=None) -> tuple[set[str], object]:
    """One tick of the automation condition sensors: the assets whose conditions ask for a run."""
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    keys = defs.get_repository_def().asset_graph.get_all_asset_keys()
    return {key.to_user_string() for key in keys if result.get_num_requested(key)}, result.cursor


def test_sample_applications_become_members_then_demo_transactions_then_the_warehouse(instance, zones, pg_dsn):
    """The demo flow of `memberflow start`, tick by tick of the automation conditions: no step can start
    before its input exists."""
    land(zones, "sample_1.csv", generate_applications(60, seed=1).to_csv(index=False))
    wanted, cursor = requested(instance)
    assert wanted == set()  # no members yet: nothing to do
    assert run_batch(instance, "sample_1").success

    wanted, cursor = requested(instance, cursor)
    assert (
        wanted == {"sales_demo_data"} | WAREHOUSE
    )  # members changed: both follow (the demo's sensor, the default one)
    demo = deployment_defs().resolve_job_def("sales_demo").execute_in_process(instance=instance)
    assert demo.success
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor_pg:
        cursor_pg.execute("SELECT count(DISTINCT membership_id), count(*) FROM sales.transactions")
        members_with_transactions, transactions = cursor_pg.fetchone()
    connection.close()
    assert members_with_transactions > 10 and transactions > 30

    refresh = deployment_defs().resolve_job_def("sales_warehouse_refresh").execute_in_process(instance=instance)
    assert refresh.success
    assert {e.check_name: e.passed for e in refresh.get_asset_check_evaluations()} == {
        "fact_sales_referential_integrity": True,
        "fact_sales_reconciles_with_postgres": True,
    }
    with open_published(str(zones.path("warehouse.duckdb"))) as warehouse:
        assert warehouse.execute("SELECT count(DISTINCT transaction_id) FROM fact_sales").fetchone()[0] == transactions
        outcomes = warehouse.execute(
            "SELECT DISTINCT outcome, applications_in_outcome FROM bi.membership_applications_by_outcome"
        ).fetchall()
        assert sum(count for _, count in outcomes) == 60
    wanted, cursor = requested(instance, cursor)
    assert wanted == set()  # nothing new since

    assert deployment_defs().resolve_job_def("sales_demo").execute_in_process(instance=instance).success
    wanted, _ = requested(instance, cursor)
    assert wanted == WAREHOUSE  # the demo data changed: the warehouse follows
