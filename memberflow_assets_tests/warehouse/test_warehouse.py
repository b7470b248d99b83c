"""The sales star schema and BI views in the DuckDB warehouse, refreshed from real PostgreSQL."""

import json
import os
import re
import subprocess
import sys
import time
from contextlib import ExitStack, closing
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

import duckdb
import psycopg2
import pyarrow as pa
import pytest

from memberflow_assets import cli
from memberflow_assets.sales.demo_data import DemoSpec, seed_demo_sales
from memberflow_assets.settings import REPO_ROOT, Settings
from memberflow_assets.warehouse import checks, refresh
from memberflow_assets.warehouse.refresh import refresh_warehouse
from memberflow_assets.warehouse.versions import current_version, open_published, publish, versions_folder
from memberflow_assets.zones import Zones
from memberflow_assets_tests.helpers import deployment_defs
from memberflow_assets_tests.sales_data import add_item, add_members, add_transaction, login, migrated, team_user

MEMBERS = ["lee_1a2b3", "tan_00f0f", "ng_abcde"]


@pytest.fixture
def shop(pg_dsn):
    """Three members, three items and three transactions on two days."""
    migrated(pg_dsn)
    add_members(pg_dsn, MEMBERS)
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        kettle = add_item(cursor, "Kettle", "19.99", "1.200")
        lamp = add_item(cursor, "Lamp", "5.50", "0.250", manufacturer="Globex")
        add_item(cursor, "Never Sold", "1.00", "0.100")
        add_transaction(cursor, "lee_1a2b3", [(kettle, 2), (lamp, 1)], created_at="2025-03-01T23:30:00-02:00")
        add_transaction(cursor, "tan_00f0f", [(lamp, 4)], created_at="2025-03-02T08:00:00Z")
        add_transaction(cursor, "lee_1a2b3", [(lamp, 1)], created_at="2025-03-02T09:00:00Z")
    connection.close()
    return pg_dsn


def execute(dsn: str, *statements: str) -> None:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()


def member_keys(dsn: str) -> dict[str, UUID]:
    """membership_id -> member_key, as only the platform's role sees them."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT membership_id, member_key::text FROM sales.members")
        keys = {membership_id: UUID(key) for membership_id, key in cursor.fetchall()}
    connection.close()
    return keys


def rows(path: str, query: str) -> list[tuple]:
    with open_published(path) as connection:
        return connection.execute(query).fetchall()


def test_a_sales_user_locking_the_catalogue_makes_a_refresh_fail_soon_naming_them(shop, tmp_path, monkeypatch):
    path = str(tmp_path / "warehouse.duckdb")
    refresh_warehouse(shop, path)
    published = current_version(path)
    monkeypatch.setattr(refresh, "EXTRACT_LOCK_TIMEOUT_SECONDS", 0.5)
    with team_user(shop, "sales", prefix="locking_seller") as user:
        seller = login(shop, user)
        try:
            with seller.cursor() as cursor:  # the sales team may update prices, so it may lock the table
                cursor.execute("LOCK TABLE sales.items IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(refresh.ExtractLockTimeout) as failure:
                refresh_warehouse(shop, path, full=True)
            assert time.monotonic() - started < 10
            message = str(failure.value)
            assert "the warehouse extract waited 0.5 s for a lock and gave up" in message
            assert f"user {user} (idle in transaction" in message and "sales.items" in message
            assert current_version(path) == published  # readers keep the last good version
        finally:
            seller.close()
        assert refresh_warehouse(shop, path, full=True).items == 3  # the lock has gone


def test_a_full_refresh_builds_the_star_schema(shop, tmp_path):
    path = str(tmp_path / "warehouse.duckdb")
    year_before = date.today().year
    result = refresh_warehouse(shop, path)

    assert (result.mode, result.transactions_loaded, result.lines_loaded, result.fact_rows) == ("full", 3, 4, 4)
    assert (result.members, result.items) == (3, 3)
    # no contact data, birthday or membership_id (which reveals the birthday) in the warehouse
    columns = rows(path, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'dim_member'")
    assert [name for (name,) in columns] == [
        "member_key", "first_name", "last_name", "birth_year", "above_18", "source_batch", "member_since",
    ]  # fmt: skip
    key = member_keys(shop)
    lee, tan = key["lee_1a2b3"], key["tan_00f0f"]
    assert (lee, 1980) in rows(path, "SELECT member_key, birth_year FROM dim_member")
    assert rows(path, "SELECT item_name, manufacturer_name, cost, on_sale FROM dim_item ORDER BY item_id") == [
        ("Kettle", "Acme", Decimal("19.99"), True),
        ("Lamp", "Globex", Decimal("5.50"), True),
        ("Never Sold", "Acme", Decimal("1.00"), True),
    ]
    # the sale at 23:30 -02:00 happened on 2 March in UTC
    assert rows(
        path,
        "SELECT transaction_id, line_number, member_key, date_key, status, quantity, unit_price, line_price, "
        "line_weight_kg FROM fact_sales ORDER BY 1, 2",
    ) == [
        (1, 1, lee, 20250302, "pending", 2, Decimal("19.99"), Decimal("39.98"), Decimal("2.400")),
        (1, 2, lee, 20250302, "pending", 1, Decimal("5.50"), Decimal("5.50"), Decimal("0.250")),
        (2, 1, tan, 20250302, "pending", 4, Decimal("5.50"), Decimal("22.00"), Decimal("1.000")),
        (3, 1, lee, 20250302, "pending", 1, Decimal("5.50"), Decimal("5.50"), Decimal("0.250")),
    ]
    assert rows(path, "SELECT transaction_id, member_key, date_key, lines, units, total_price, total_weight_kg "
                      "FROM fact_transactions ORDER BY 1") == [
        (1, lee, 20250302, 2, 3, Decimal("45.48"), Decimal("2.650")),
        (2, tan, 20250302, 1, 4, Decimal("22.00"), Decimal("1.000")),
        (3, lee, 20250302, 1, 1, Decimal("5.50"), Decimal("0.250")),
    ]  # fmt: skip
    # to 31 December of the year after the refresh's year (which New Year may have ended since)
    first, last, days = rows(path, "SELECT min(date), max(date), count(*) FROM dim_date")[0]
    assert last in {date(year + 1, 12, 31) for year in (year_before, date.today().year)}
    assert (first, days) == (date(2025, 1, 1), (last - first).days + 1)
    assert rows(path, "SELECT day_name, is_weekend, iso_week FROM dim_date WHERE date_key = 20250302") == [
        ("Sunday", True, 9)
    ]
    with open_published(path) as connection:
        assert checks.referential_integrity(connection) == dict.fromkeys(checks.INTEGRITY_PROBLEMS, 0)
        assert checks.reconcile_with_postgres(connection, shop).matches


def test_an_incremental_refresh_loads_new_and_changed_transactions_only(shop, tmp_path):
    path = str(tmp_path / "warehouse.duckdb")
    refresh_warehouse(shop, path)
    assert refresh_warehouse(shop, path).transactions_loaded == 0  # nothing changed

    execute(shop, "UPDATE sales.transactions SET status = 'completed' WHERE transaction_id = 2")
    with psycopg2.connect(shop) as connection, connection.cursor() as cursor:
        new = add_transaction(cursor, "ng_abcde", [(3, 5)], created_at="2025-03-03T12:00:00Z")
    connection.close()
    result = refresh_warehouse(shop, path)

    assert (result.mode, result.transactions_loaded, result.lines_loaded, result.fact_rows) == ("incremental", 2, 2, 5)
    statuses = rows(path, "SELECT transaction_id, status, completed_at IS NOT NULL FROM fact_sales "
                          "WHERE transaction_id IN (2, 3) ORDER BY 1")  # fmt: skip
    assert statuses == [(2, "completed", True), (3, "pending", False)]
    assert rows(path, f"SELECT member_key, quantity FROM fact_sales WHERE transaction_id = {new}") == [
        (member_keys(shop)["ng_abcde"], 5)
    ]

    # a line replaced without changing the totals still reaches the warehouse
    execute(shop, "UPDATE sales.transaction_lines SET line_number = 7 WHERE transaction_id = 2")
    assert refresh_warehouse(shop, path).transactions_loaded == 1
    assert rows(path, "SELECT line_number FROM fact_sales WHERE transaction_id = 2") == [(7,)]

    # the incremental result equals a full rebuild
    full = str(tmp_path / "full.duckdb")
    refresh_warehouse(shop, full, full=True)
    for query in (
        "SELECT * EXCLUDE (source_updated_at) FROM fact_sales ORDER BY transaction_id, line_number",
        "SELECT * EXCLUDE (source_updated_at) FROM fact_transactions ORDER BY transaction_id",
    ):
        assert rows(path, query) == rows(full, query)
    assert [r[0] for r in rows(path, "SELECT mode FROM meta.refreshes ORDER BY refreshed_at")] == [
        "full", "incremental", "incremental", "incremental",
    ]  # fmt: skip


def test_a_transaction_committed_after_a_refresh_started_is_loaded_by_the_next_one(shop, tmp_path):
    """The watermark is not max(updated_at): a writer that started before the refresh but commits
    after it must not be skipped by the next incremental refresh."""
    path = str(tmp_path / "warehouse.duckdb")
    refresh_warehouse(shop, path)
    slow_writer = psycopg2.connect(shop)
    try:
        with slow_writer.cursor() as cursor:
            late = add_transaction(cursor, "ng_abcde", [(1, 1)])  # written, not committed yet
        with psycopg2.connect(shop) as connection, connection.cursor() as cursor:
            add_transaction(cursor, "tan_00f0f", [(2, 1)])  # committed meanwhile by someone else
        connection.close()
        first = refresh_warehouse(shop, path)
        assert first.transactions_loaded == 1
        slow_writer.commit()
    finally:
        slow_writer.close()
    second = refresh_warehouse(shop, path)
    assert late in [r[0] for r in rows(path, "SELECT DISTINCT transaction_id FROM fact_sales")]
    assert second.transactions_loaded >= 1
    with open_published(path) as connection:
        assert checks.reconcile_with_postgres(connection, shop).matches


def test_only_sessions_that_can_write_sales_hold_the_watermark_back(shop, tmp_path):
    """Reproduced: an analyst's `BEGIN; SELECT txid_current();` left idle pinned the watermark at its start,
    so every incremental refresh re-read everything since. Analytics and Sales cannot write transactions
    or lines, so their sessions no longer count; Logistics' still do (it completes transactions)."""
    path = str(tmp_path / "warehouse.duckdb")
    refresh_warehouse(shop, path)

    def idle_with_a_transaction_id(session) -> datetime:
        with session.cursor() as cursor:
            cursor.execute("SELECT txid_current(), now()")
            return cursor.fetchone()[1]  # the transaction's start, left open

    with ExitStack() as stack:
        session = {
            team: stack.enter_context(closing(login(shop, stack.enter_context(team_user(shop, team)))))
            for team in ("analytics", "sales", "logistics")
        }
        pinned = [idle_with_a_transaction_id(session[team]) for team in ("analytics", "sales")]
        time.sleep(0.1)
        first = refresh_warehouse(shop, path)
        assert first.watermark > max(pinned)
        assert refresh_warehouse(shop, path).changed_since == first.watermark
        completing = idle_with_a_transaction_id(session["logistics"])
        time.sleep(0.1)
        assert refresh_warehouse(shop, path).watermark == completing


def write_outcomes(zones: Zones, kind: str, batch: str, outcomes: list[tuple[bool, str]]) -> None:
    table = pa.table(
        {
            "batch": [batch] * len(outcomes),
            "row_number": list(range(1, len(outcomes) + 1)),
            "email": ["someone@example.com"] * len(outcomes),  # the warehouse must not take this
            "is_successful": [ok for ok, _ in outcomes],
            "rejection_reasons": [reasons for _, reasons in outcomes],
        }
    )
    zones.write_parquet(f"members/{kind}/{batch}.parquet", table)


def test_the_bi_views_answer_the_analysts_questions(pg_dsn, zones, tmp_path):
    migrated(pg_dsn)
    members = [f"m{number:02d}_{number:05x}" for number in range(12)]
    add_members(pg_dsn, members)
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cheap = add_item(cursor, "Cheap", "1.00", "0.500")
        dear = add_item(cursor, "Dear", "100.00", "2.000")
        other = add_item(cursor, "Other", "3.00", "1.000")
        for number, member in enumerate(members):  # member n spends (n + 1) * 1.00 on this day
            add_transaction(cursor, member, [(cheap, number + 1)], created_at="2025-03-02T10:00:00Z")
        add_transaction(cursor, members[0], [(dear, 1), (other, 1)], created_at="2025-03-03T10:00:00Z")  # 104.00
        # 6.00 + 6.00; the same item on two lines is still one purchase of it
        add_transaction(cursor, members[5], [(other, 1), (other, 1)], created_at="2025-03-03T11:00:00Z")
    connection.close()
    write_outcomes(zones, "successful", "b1", [(True, ""), (True, "")])
    write_outcomes(zones, "unsuccessful", "b1", [(False, "invalid_email"), (False, "under_18;invalid_email")])
    path = str(tmp_path / "warehouse.duckdb")
    refresh_warehouse(pg_dsn, path, zones)

    key = member_keys(pg_dsn)
    top = rows(path, "SELECT rank, member_key, transactions, total_spent FROM bi.top_members_by_spending")
    assert len(top) == 10
    assert top[0] == (1, key[members[0]], 2, Decimal("104.00"))
    first, second = sorted([(key[members[5]], 2), (key[members[11]], 1)])  # 12.00 each: broken by member_key
    assert top[1:3] == [(2, *first, Decimal("12.00")), (3, *second, Decimal("12.00"))]
    assert [r[1] for r in top[3:]] == [key[members[n]] for n in (10, 9, 8, 7, 6, 4, 3)]
    names = rows(path, "SELECT last_name FROM bi.top_members_by_spending WHERE rank = 1")
    assert names == [(members[0].split("_")[0].title(),)]
    assert rows(path, "SELECT rank, item_name, times_bought, units_sold FROM bi.top_items_by_purchases") == [
        (1, "Cheap", 12, 78), (2, "Other", 2, 3), (3, "Dear", 1, 1),
    ]  # fmt: skip
    assert rows(path, "SELECT * FROM bi.sales_per_day") == [
        (date(2025, 3, 2), "Sunday", 12, 78, Decimal("78.00"), Decimal("6.50")),
        (date(2025, 3, 3), "Monday", 2, 4, Decimal("109.00"), Decimal("54.50")),
    ]
    weights = rows(path, "SELECT transaction_id, lines, units, total_weight_kg FROM bi.transaction_weights "
                         "ORDER BY transaction_id DESC LIMIT 2")  # fmt: skip
    assert weights == [(14, 2, 2, Decimal("2.000")), (13, 2, 2, Decimal("3.000"))]
    assert rows(path, "SELECT * FROM bi.membership_applications_by_outcome") == [
        ("successful", None, 2, 2),
        ("unsuccessful", "invalid_email", 2, 2),
        ("unsuccessful", "under_18", 1, 2),
    ]
    assert "email" not in [r[0] for r in rows(path, "SELECT column_name FROM duckdb_columns()")]


def test_the_application_outcomes_come_from_s3_too(s3_env, pg_dsn, tmp_path):
    migrated(pg_dsn)
    zones = Zones.from_settings()
    write_outcomes(zones, "unsuccessful", "b9", [(False, "invalid_mobile_no")] * 3)
    path = str(tmp_path / "warehouse.duckdb")
    assert refresh_warehouse(pg_dsn, path, zones).applications == 3
    assert rows(path, "SELECT rejection_reason, applications FROM bi.membership_applications_by_outcome") == [
        ("invalid_mobile_no", 3)
    ]


def test_the_checks_catch_a_warehouse_that_drifted(shop, tmp_path):
    path = str(tmp_path / "warehouse.duckdb")
    refresh_warehouse(shop, path)
    with duckdb.connect(path) as connection:
        connection.execute("DELETE FROM fact_sales WHERE transaction_id = 2")
        connection.execute(
            "INSERT INTO fact_sales SELECT * REPLACE (99 AS item_id) FROM fact_sales WHERE transaction_id = 3"
        )
    with open_published(path) as connection:
        assert checks.referential_integrity(connection) == {
            "facts_without_member": 0, "facts_without_item": 1, "facts_without_date": 0, "duplicate_lines": 1,
            "duplicate_transactions": 0, "transactions_not_matching_lines": 2,  # 2 lost its lines, 3 gained one
        }  # fmt: skip
        result = checks.reconcile_with_postgres(connection, shop)
    assert not result.matches
    assert (result.postgres.transactions, result.warehouse.transactions) == (3, 2)
    assert result.warehouse.price == result.postgres.price - Decimal("22.00") + Decimal("5.50")


def test_the_reconciliation_holds_while_the_shop_keeps_writing_and_sees_deletions(shop, tmp_path):
    path = str(tmp_path / "warehouse.duckdb")
    refresh_warehouse(shop, path)
    execute(shop, "UPDATE sales.transactions SET status = 'completed' WHERE transaction_id = 1")
    with psycopg2.connect(shop) as connection, connection.cursor() as cursor:
        add_transaction(cursor, "ng_abcde", [(1, 3)])
    connection.close()
    with open_published(path) as connection:
        result = checks.reconcile_with_postgres(connection, shop)
    assert result.matches and result.changed_since_watermark == 2

    # A deleted transaction is not an incremental change: the check says so, a full refresh repairs it.
    execute(shop, "DELETE FROM sales.transactions WHERE transaction_id = 3")
    refresh_warehouse(shop, path)
    with open_published(path) as connection:
        assert not checks.reconcile_with_postgres(connection, shop).matches
    refresh_warehouse(shop, path, full=True)
    with open_published(path) as connection:
        assert checks.reconcile_with_postgres(connection, shop).matches


def test_a_reader_keeps_working_while_the_warehouse_is_refreshed(memberflow_env, pg_dsn):
    """An analyst's open read-only session neither blocks a refresh nor is disturbed by it."""
    migrated(pg_dsn)
    members = [f"m{number:04d}_{number:05x}" for number in range(300)]
    add_members(pg_dsn, members)
    connection = psycopg2.connect(pg_dsn)
    with connection:
        seed_demo_sales(connection, DemoSpec(transactions_per_member=20))
    connection.close()
    path = Settings.from_env().warehouse
    refresh_warehouse(pg_dsn, path)
    reader = duckdb.connect(path, read_only=True)
    before = reader.execute("SELECT count(*) FROM fact_sales").fetchall()[0][0]
    execute(pg_dsn, "UPDATE sales.transactions SET status = 'completed' WHERE status = 'pending'")

    refresh = subprocess.Popen(
        [sys.executable, "-m", "memberflow_assets.cli", "warehouse", "refresh", "--full"],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    answers, other_readers = [], 0
    while refresh.poll() is None:
        answers.append(reader.execute("SELECT count(*) FROM fact_sales WHERE status = 'pending'").fetchall()[0][0])
        if len(answers) % 20 == 0:  # readers that connect during the refresh, in another process
            other = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"import duckdb; duckdb.connect({path!r}, read_only=True).sql('FROM bi.sales_per_day')",
                ],
                capture_output=True,
                text=True,
            )
            assert other.returncode == 0, other.stderr
            other_readers += 1
    output = refresh.stdout.read()
    assert refresh.returncode == 0, output
    assert "full refresh" in output
    assert len(set(answers)) == 1 and answers[0] > 0 and len(answers) > 20  # the same old version throughout
    assert other_readers >= 1
    assert reader.execute("SELECT count(*) FROM fact_sales").fetchall()[0][0] == before
    reader.close()
    # a new session (once the process has closed its old one) sees the refreshed warehouse
    assert rows(path, "SELECT count(*) FROM fact_sales WHERE status = 'pending'") == [(0,)]
    assert [name for name in os.listdir(os.path.dirname(path)) if name.endswith((".tmp", ".wal"))] == []


def test_the_query_commands_print_a_table_csv_or_json_read_only(shop, memberflow_env, capsys):
    assert cli.main(["warehouse", "query", "FROM bi.sales_per_day"]) == 1  # nothing published yet
    assert "no warehouse published" in capsys.readouterr().err
    assert cli.main(["warehouse", "refresh"]) == 0
    assert "full refresh" in capsys.readouterr().out
    query = "SELECT date, transactions, revenue, NULL AS nothing FROM bi.sales_per_day"
    for command in (["warehouse", "query", query], ["images-bi", "--sql", query]):  # one output style
        assert cli.main([*command]) == 0
        table = capsys.readouterr().out
        assert "│ 2025-03-02 │" in table and " 72.98 │" in table and "transactions" in table
        assert cli.main([*command, "--csv"]) == 0
        assert capsys.readouterr().out == "date,transactions,revenue,nothing\n2025-03-02,3,72.98,\n"
        assert cli.main([*command, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == [
            {"date": "2025-03-02", "transactions": 3, "revenue": 72.98, "nothing": None}
        ]
    assert cli.main(["warehouse", "query", "SELECT 1 AS a, 2 AS a, 'x' AS b WHERE false", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli.main(["warehouse", "query", "SELECT 1 AS a, 2 AS a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"a": 1, "a_2": 2}]
    big = "SELECT range AS n FROM range(25000)"  # streamed in batches, every row printed
    assert cli.main(["warehouse", "query", big, "--csv"]) == 0
    assert capsys.readouterr().out.count("\n") == 25001
    assert cli.main(["warehouse", "query", big, "--max-rows", "5"]) == 0
    assert "5 shown" in capsys.readouterr().out

    # Bad input: one clear line on stderr and a failing exit code; nothing changed.
    for bad in ("DROP TABLE fact_sales", "SELEC 1", "FROM no_such_table"):
        assert cli.main(["warehouse", "query", bad]) == 1
        error = capsys.readouterr().err
        assert error.startswith("error: ") and "Traceback" not in error
    assert rows(Settings.from_env().warehouse, "SELECT count(*) FROM fact_sales") == [(4,)]


def test_the_dagster_refresh_job_materialises_every_table_and_runs_the_checks(shop, memberflow_env, instance):
    job = deployment_defs().resolve_job_def("sales_warehouse_refresh")

    def fact_metadata(result) -> dict:
        [fact] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["fact_sales"]]
        return {key: value.value for key, value in fact.materialization.metadata.items()}

    first = job.execute_in_process(instance=instance)
    assert first.success
    assert {e.asset_key.path[0] for e in first.get_asset_materialization_events()} == {
        "dim_member", "dim_item", "dim_date", "fact_sales", "fact_transactions", "application_outcomes", "bi_views",
    }  # fmt: skip
    assert {e.check_name: e.passed for e in first.get_asset_check_evaluations()} == {
        "fact_sales_referential_integrity": True,
        "fact_sales_reconciles_with_postgres": True,
    }
    assert (fact_metadata(first)["mode"], fact_metadata(first)["rows"]) == ("full", 4)
    again = job.execute_in_process(instance=instance)
    assert (fact_metadata(again)["mode"], fact_metadata(again)["transactions_loaded"]) == ("incremental", 0)
    rebuilt = job.execute_in_process(
        instance=instance, run_config={"ops": {"sales_warehouse": {"config": {"full_refresh": True}}}}
    )
    assert (fact_metadata(rebuilt)["mode"], fact_metadata(rebuilt)["transactions_loaded"]) == ("full", 3)


def test_the_sample_analyst_queries(shop, tmp_path):
    execute(shop, "UPDATE sales.transactions SET status = 'completed' WHERE transaction_id = 1")
    path = str(tmp_path / "warehouse.duckdb")
    refresh_warehouse(shop, path)
    analyst = REPO_ROOT / "sql" / "analyst"
    assert rows(path, (analyst / "revenue_by_month_and_manufacturer.sql").read_text()) == [
        (2025, "March", "Acme", 1, 2, Decimal("39.98")),
        (2025, "March", "Globex", 1, 1, Decimal("5.50")),
    ]
    assert rows(path, (analyst / "spending_by_decade_of_birth.sql").read_text()) == [
        (1980, 2, 1.5, Decimal("24.33"), Decimal("72.98"))
    ]


def sql_tokens(text: str) -> list[str]:
    """The SQL without comments, whitespace or a final semicolon: layout may differ, the query may not."""
    code = " ".join(line.split("--")[0] for line in text.splitlines())
    return re.findall(r"'[^']*'|\w+|[^\w\s]", code.strip().rstrip(";"))


def test_the_readmes_copies_of_the_sample_queries_are_the_files():
    readme = (REPO_ROOT / "README.md").read_text()
    copies = re.findall(r"^-- (\w+\.sql): .*\n((?:(?!--|```).*\n)+)", readme, flags=re.MULTILINE)
    samples = REPO_ROOT / "sql" / "analyst"
    assert sorted(name for name, _ in copies) == sorted(path.name for path in samples.glob("*.sql"))
    for name, copy in copies:
        assert sql_tokens(copy) == sql_tokens((samples / name).read_text()), name


def test_each_refresh_publishes_a_version_and_replaced_ones_are_kept_for_a_grace_period(tmp_path):
    path = str(tmp_path / "warehouse.duckdb")

    def build(number: int) -> str:
        temp = str(tmp_path / f".build{number}.tmp")
        with duckdb.connect(temp) as connection:
            connection.execute(f"CREATE TABLE version AS SELECT {number} AS number")
        return temp

    published = [publish(build(number), path) for number in range(3)]
    assert os.path.islink(path) and os.path.realpath(path) == published[-1]
    assert sorted(os.listdir(versions_folder(path))) == [os.path.basename(version) for version in published]
    assert rows(path, "FROM version") == [(2,)]
    newest = publish(build(3), path, grace_seconds=0)
    assert os.listdir(versions_folder(path)) == [os.path.basename(newest)]
    assert rows(path, "FROM version") == [(3,)]


def test_the_warehouse_holds_no_membership_id_anywhere(shop, tmp_path):
    """A membership_id gives the exact birthday (its suffix hashes it): analysts see member_key."""
    path = str(tmp_path / "warehouse.duckdb")
    refresh_warehouse(shop, path)
    with open_published(path) as connection:
        columns = connection.execute(
            "SELECT schema_name, table_name, column_name FROM duckdb_columns() WHERE NOT internal"
        ).fetchall()
        assert "membership_id" not in [column for _, _, column in columns]
        for schema, table, column in columns:
            found = connection.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE CAST("{column}" AS VARCHAR) SIMILAR TO $ids',
                {"ids": f".*({'|'.join(MEMBERS)}).*"},
            ).fetchall()
            assert found == [(0,)], (schema, table, column)


def test_a_warehouse_from_before_member_key_is_rebuilt_by_the_next_refresh(shop, tmp_path):
    path = str(tmp_path / "warehouse.duckdb")
    refresh_warehouse(shop, path)
    with duckdb.connect(path) as connection:  # what that version wrote: membership_id, no member_key
        for table in ("dim_member", "fact_sales", "fact_transactions"):
            connection.execute(f"ALTER TABLE {table} ADD COLUMN membership_id VARCHAR DEFAULT 'lee_1a2b3'")
            connection.execute(f"ALTER TABLE {table} DROP COLUMN member_key")

    result = refresh_warehouse(shop, path)

    assert (result.mode, result.transactions_loaded, result.fact_rows) == ("full", 3, 4)  # read everything again
    key = member_keys(shop)
    assert rows(path, "SELECT transaction_id, member_key FROM fact_transactions ORDER BY 1") == [
        (1, key["lee_1a2b3"]), (2, key["tan_00f0f"]), (3, key["lee_1a2b3"]),
    ]  # fmt: skip
    assert rows(path, "SELECT count(*) FROM duckdb_columns() WHERE column_name = 'membership_id'") == [(0,)]
    with open_published(path) as connection:
        assert checks.referential_integrity(connection) == dict.fromkeys(checks.INTEGRITY_PROBLEMS, 0)
        assert checks.reconcile_with_postgres(connection, shop).matches


def test_the_sales_team_can_only_give_items_times_the_warehouse_loads(shop, tmp_path):
    """PostgreSQL takes times from 4713 BC to 294276 AD; the warehouse cannot load a BC time or one
    after 294247, and one such discontinued_at made every refresh fail (0065_loadable_times.sql)."""
    path = str(tmp_path / "warehouse.duckdb")
    refresh_warehouse(shop, path)
    loadable = ["infinity", "-infinity", "9999-12-31 23:59:59.999999+00", "0001-01-01 00:00:00+00"]
    with team_user(shop, "sales") as user:
        seller = login(shop, user)
        try:
            for value in ["294270-01-01", "0044-03-15 BC", "10000-01-01", "9999-12-31 23:00-05"]:
                with pytest.raises(psycopg2.errors.CheckViolation, match="items_discontinued_at_loadable"):
                    seller.cursor().execute("UPDATE sales.items SET discontinued_at = %s WHERE item_id = 1", (value,))
                seller.rollback()
            with seller, seller.cursor() as cursor:
                cursor.execute("UPDATE sales.items SET discontinued_at = %s WHERE item_id = 1", (loadable[0],))
                cursor.execute("UPDATE sales.items SET discontinued_at = %s WHERE item_id = 2", (loadable[1],))
                cursor.execute("UPDATE sales.items SET discontinued_at = %s WHERE item_id = 3", (loadable[2],))
                cursor.execute(
                    "INSERT INTO sales.items (name, manufacturer_id, cost, weight_kg, discontinued_at) "
                    "VALUES ('Antique', 1, 1, 1, %s)",
                    (loadable[3],),
                )
        finally:
            seller.close()
    assert refresh_warehouse(shop, path).mode == "incremental"
    assert refresh_warehouse(shop, path, full=True).items == 4
    assert [value for (value,) in rows(path, "SELECT discontinued_at::VARCHAR FROM dim_item ORDER BY item_id")] == [
        "infinity",
        "-infinity",
        "9999-12-31 23:59:59.999999+00",
        "0001-01-01 00:00:00+00",
    ]
