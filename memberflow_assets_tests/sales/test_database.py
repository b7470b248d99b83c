"""The operational sales schema against real PostgreSQL: what the database itself refuses."""

from decimal import Decimal

import psycopg2
import psycopg2.errors
import pytest

from memberflow_assets.postgres import apply_migrations
from memberflow_assets_tests.sales_data import add_item, add_members, add_transaction, migrated

MEMBER = "lee_1a2b3"


@pytest.fixture
def dsn(pg_dsn):
    migrated(pg_dsn)
    add_members(pg_dsn, [MEMBER])
    return pg_dsn


@pytest.fixture
def connection(dsn):
    connection = psycopg2.connect(dsn)
    yield connection
    connection.close()


@pytest.fixture
def catalogue(connection):
    """Two items: a kettle (19.99, 1.2 kg) and a lamp (5.50, 0.25 kg)."""
    with connection, connection.cursor() as cursor:
        return add_item(cursor, "Kettle", "19.99", "1.200"), add_item(cursor, "Lamp", "5.50", "0.250")


def commit_fails_with(connection, sqlstate: str, *statements: str) -> str:
    """Run statements in one transaction; assert it fails (at a statement or at COMMIT) with sqlstate."""
    with pytest.raises(psycopg2.Error) as raised, connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    assert raised.value.pgcode == sqlstate, raised.value
    return str(raised.value)


def test_migrations_are_idempotent(dsn):
    assert apply_migrations(dsn) == []


def test_a_transaction_with_correct_totals_is_stored_with_its_lines(connection, catalogue):
    kettle, lamp = catalogue
    with connection, connection.cursor() as cursor:
        transaction = add_transaction(cursor, MEMBER, [(kettle, 2), (lamp, 3)])
        cursor.execute(
            "SELECT total_price, total_weight_kg, status, completed_at FROM sales.transactions "
            "WHERE transaction_id = %s",
            (transaction,),
        )
        assert cursor.fetchone() == (Decimal("56.48"), Decimal("3.150"), "pending", None)
        cursor.execute(
            "SELECT line_price, line_weight_kg FROM sales.transaction_lines WHERE transaction_id = %s ORDER BY 1",
            (transaction,),
        )
        assert cursor.fetchall() == [(Decimal("16.50"), Decimal("0.750")), (Decimal("39.98"), Decimal("2.400"))]


def test_totals_that_differ_from_the_lines_are_refused_at_commit(connection, catalogue):
    kettle, _ = catalogue
    message = commit_fails_with(
        connection,
        "23514",
        f"INSERT INTO sales.transactions (transaction_id, membership_id, total_price, total_weight_kg)"
        f" VALUES (1000, '{MEMBER}', 20.00, 1.2)",
        f"INSERT INTO sales.transaction_lines (transaction_id, line_number, item_id, quantity, unit_price,"
        f" unit_weight_kg) VALUES (1000, 1, {kettle}, 1, 19.99, 1.2)",
    )
    assert "transaction 1000 totals" in message
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sales.transactions")
        assert cursor.fetchone() == (0,)


def test_lines_may_come_before_the_totals_are_final_within_one_database_transaction(connection, catalogue):
    kettle, lamp = catalogue
    with connection, connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO sales.transactions (transaction_id, membership_id, total_price, total_weight_kg)"
            f" VALUES (1000, '{MEMBER}', 19.99, 1.2)"
        )
        cursor.execute(
            f"INSERT INTO sales.transaction_lines (transaction_id, line_number, item_id, quantity, unit_price,"
            f" unit_weight_kg) VALUES (1000, 1, {kettle}, 1, 19.99, 1.2), (1000, 2, {lamp}, 2, 5.50, 0.25)"
        )
        cursor.execute("UPDATE sales.transactions SET total_price = 30.99, total_weight_kg = 1.7")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sales.transaction_lines WHERE transaction_id = 1000")
        assert cursor.fetchone() == (2,)


def test_a_transaction_without_lines_is_refused(connection, catalogue):
    commit_fails_with(
        connection,
        "23514",
        f"INSERT INTO sales.transactions (membership_id, total_price, total_weight_kg) VALUES ('{MEMBER}', 0, 1)",
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE sales.transaction_lines SET quantity = 5 WHERE line_number = 1",
        "DELETE FROM sales.transaction_lines WHERE line_number = 2",
        "UPDATE sales.transactions SET total_price = total_price + 1",
        "INSERT INTO sales.transaction_lines (transaction_id, line_number, item_id, quantity, unit_price,"
        " unit_weight_kg) SELECT transaction_id, 3, item_id, 1, 1, 1 FROM sales.transaction_lines LIMIT 1",
    ],
)
def test_changing_lines_or_totals_alone_breaks_the_totals_and_is_refused(connection, catalogue, statement):
    kettle, lamp = catalogue
    with connection, connection.cursor() as cursor:
        add_transaction(cursor, MEMBER, [(kettle, 1), (lamp, 1)])
    commit_fails_with(connection, "23514", statement)


def test_a_changed_line_with_matching_totals_is_accepted_and_marks_its_transaction_changed(connection, catalogue):
    kettle, lamp = catalogue
    with connection, connection.cursor() as cursor:
        transaction = add_transaction(cursor, MEMBER, [(kettle, 1), (lamp, 1)])
        cursor.execute("SELECT updated_at FROM sales.transactions")
        (before,) = cursor.fetchone()
    with connection, connection.cursor() as cursor:
        cursor.execute("UPDATE sales.transaction_lines SET quantity = 2 WHERE line_number = 2")
        cursor.execute("UPDATE sales.transactions SET total_price = 30.99, total_weight_kg = 1.7")
    with connection, connection.cursor() as cursor:
        # same totals, different line: the transaction still counts as changed (for the warehouse)
        cursor.execute(
            "UPDATE sales.transaction_lines SET unit_price = 19.99, item_id = %s WHERE line_number = 1", (kettle,)
        )
        cursor.execute(
            "SELECT updated_at, total_price FROM sales.transactions WHERE transaction_id = %s", (transaction,)
        )
        after, total = cursor.fetchone()
    assert after > before and total == Decimal("30.99")


@pytest.mark.parametrize(
    ("statement", "sqlstate"),
    [
        ("UPDATE sales.items SET cost = -0.01", "23514"),
        ("UPDATE sales.items SET weight_kg = 0", "23514"),
        ("UPDATE sales.transaction_lines SET quantity = 0", "23514"),
        ("UPDATE sales.transaction_lines SET unit_weight_kg = -1", "23514"),
        ("UPDATE sales.items SET name = ' '", "23514"),
        ("UPDATE sales.transactions SET membership_id = 'nobody_00000'", "23503"),
        ("UPDATE sales.transaction_lines SET item_id = -1", "23503"),
        ("UPDATE sales.items SET cost = 'abc'", "22P02"),
        ("UPDATE sales.transactions SET status = 'shipped'", "23514"),
        ("UPDATE sales.transactions SET completed_at = now()", "23514"),  # still pending
        # NaN passes `>= 0` and `> 0` and equals itself: refused on its own (0054)
        ("UPDATE sales.items SET cost = 'NaN'", "23514"),
        ("UPDATE sales.items SET weight_kg = 'NaN'", "23514"),
        ("UPDATE sales.transaction_lines SET unit_price = 'NaN'", "23514"),
        ("UPDATE sales.transaction_lines SET unit_weight_kg = 'NaN'", "23514"),
        ("UPDATE sales.transactions SET total_price = 'NaN'", "23514"),
        ("UPDATE sales.transactions SET total_weight_kg = 'NaN'", "23514"),
    ],
)
def test_values_outside_the_rules_are_refused(connection, catalogue, statement, sqlstate):
    kettle, _ = catalogue
    with connection, connection.cursor() as cursor:
        add_transaction(cursor, MEMBER, [(kettle, 1)])
    commit_fails_with(connection, sqlstate, statement)


def test_status_moves_from_pending_to_completed_once(connection, catalogue):
    kettle, _ = catalogue
    with connection, connection.cursor() as cursor:
        transaction = add_transaction(cursor, MEMBER, [(kettle, 1)], created_at="2025-03-01T10:00:00Z")
        cursor.execute("UPDATE sales.transactions SET status = 'completed'")
        cursor.execute("SELECT status, completed_at IS NOT NULL FROM sales.transactions")
        assert cursor.fetchone() == ("completed", True)  # completed_at filled in
    commit_fails_with(connection, "23514", "UPDATE sales.transactions SET status = 'pending', completed_at = NULL")
    commit_fails_with(connection, "23514", "UPDATE sales.transactions SET completed_at = now() - interval '1 day'")
    with connection, connection.cursor() as cursor:
        cursor.execute("UPDATE sales.transactions SET status = 'completed' WHERE transaction_id = %s", (transaction,))
    # completed before it was created
    with connection, connection.cursor() as cursor:
        second = add_transaction(cursor, MEMBER, [(kettle, 1)], created_at="2025-03-01T10:00:00Z")
    commit_fails_with(
        connection,
        "23514",
        "UPDATE sales.transactions SET status = 'completed', completed_at = '2025-02-01'"
        f" WHERE transaction_id = {second}",
    )


def test_removing_a_sold_item_never_damages_history(connection, catalogue):
    kettle, lamp = catalogue
    with connection, connection.cursor() as cursor:
        transaction = add_transaction(cursor, MEMBER, [(kettle, 1)])
    commit_fails_with(connection, "23503", f"DELETE FROM sales.items WHERE item_id = {kettle}")
    commit_fails_with(connection, "23503", "DELETE FROM sales.manufacturers")
    with connection, connection.cursor() as cursor:
        # the way to take it off sale, and a later price change: the sale keeps its own price and weight
        cursor.execute(
            "UPDATE sales.items SET discontinued_at = now(), cost = 99, weight_kg = 9 WHERE item_id = %s", (kettle,)
        )
        cursor.execute("DELETE FROM sales.items WHERE item_id = %s", (lamp,))  # never sold: really removed
        cursor.execute(
            "SELECT unit_price, unit_weight_kg, total_price FROM sales.transaction_lines JOIN sales.transactions"
            " USING (transaction_id) WHERE transaction_id = %s",
            (transaction,),
        )
        assert cursor.fetchone() == (Decimal("19.99"), Decimal("1.200"), Decimal("19.99"))
        cursor.execute("SELECT item_id FROM sales.items")
        assert cursor.fetchall() == [(kettle,)]


def test_members_with_transactions_cannot_be_deleted(connection, catalogue):
    kettle, _ = catalogue
    with connection, connection.cursor() as cursor:
        add_transaction(cursor, MEMBER, [(kettle, 1)])
    commit_fails_with(connection, "23503", "DELETE FROM sales.members")


def test_the_totals_check_leaves_nothing_behind(connection, catalogue):
    kettle, lamp = catalogue
    with connection, connection.cursor() as cursor:
        for _ in range(3):
            add_transaction(cursor, MEMBER, [(kettle, 2), (lamp, 1)])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM sales.totals_to_verify), (SELECT count(*) FROM sales.totals_check_queued)"
        )
        assert cursor.fetchone() == (0, 0)
