"""Small, explicit sales data for the sales and warehouse tests (written as the platform's role)."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import psycopg2

from memberflow_assets.postgres import apply_migrations, with_database
from memberflow_assets.sales import access

MEMBER = "lee_1a2b3"
PASSWORD = "correct horse battery staple"


def migrated(dsn: str) -> str:
    apply_migrations(dsn)
    return dsn


def add_members(dsn: str, membership_ids: list[str]) -> None:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        for number, membership_id in enumerate(membership_ids):
            last_name = membership_id.rsplit("_", 1)[0]
            cursor.execute(
                "INSERT INTO sales.members (membership_id, first_name, last_name, email, date_of_birth, mobile_no,"
                " above_18, source_batch) VALUES (%s, 'Test', %s, %s, '1980-05-17', %s, true, 'test_batch')",
                (membership_id, last_name.title(), f"{last_name}@example.com", f"{81234560 + number}"),
            )
    connection.close()


def add_item(cursor, name: str, cost: str, weight_kg: str, manufacturer: str = "Acme") -> int:
    cursor.execute("INSERT INTO sales.manufacturers (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (manufacturer,))
    cursor.execute(
        "INSERT INTO sales.items (name, manufacturer_id, cost, weight_kg) "
        "SELECT %s, manufacturer_id, %s, %s FROM sales.manufacturers WHERE name = %s RETURNING item_id",
        (name, Decimal(cost), Decimal(weight_kg), manufacturer),
    )
    return cursor.fetchone()[0]


def add_transaction(cursor, membership_id: str, lines: list[tuple[int, int]], created_at: str | None = None) -> int:
    """A transaction buying (item_id, quantity) pairs at the items' current cost and weight, with
    correct totals; returns its id."""
    cursor.execute(
        "SELECT item_id, cost, weight_kg FROM sales.items WHERE item_id = ANY(%s)", ([item for item, _ in lines],)
    )
    catalogue = {item_id: (cost, weight) for item_id, cost, weight in cursor.fetchall()}
    total_price = sum(catalogue[item][0] * quantity for item, quantity in lines)
    total_weight = sum(catalogue[item][1] * quantity for item, quantity in lines)
    cursor.execute(
        "INSERT INTO sales.transactions (membership_id, total_price, total_weight_kg, created_at) "
        "VALUES (%s, %s, %s, coalesce(%s::timestamptz, now())) RETURNING transaction_id",
        (membership_id, total_price, total_weight, created_at),
    )
    transaction_id = cursor.fetchone()[0]
    for number, (item, quantity) in enumerate(lines, start=1):
        cost, weight = catalogue[item]
        cursor.execute(
            "INSERT INTO sales.transaction_lines (transaction_id, line_number, item_id, quantity, unit_price,"
            " unit_weight_kg) VALUES (%s, %s, %s, %s, %s, %s)",
            (transaction_id, number, item, quantity, cost, weight),
        )
    return transaction_id


def role_exists(dsn: str, role: str) -> bool:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        found = cursor.fetchone() is not None
    connection.close()
    return found


@contextmanager
def team_user(dsn: str, team: str, prefix: str | None = None) -> Iterator[str]:
    """A new login user of `team` (password PASSWORD), created the documented way; removed afterwards
    unless the test removed it."""
    user = f"{prefix or team}_{uuid.uuid4().hex[:6]}"
    with psycopg2.connect(dsn) as platform:
        access.create_user(platform, team, user, PASSWORD)
    platform.close()
    try:
        yield user
    finally:
        if role_exists(dsn, user):
            access.remove_user(dsn, user)


def login(dsn: str, user: str, password: str = PASSWORD, database: str | None = None):
    """A connection as a team user, with their password."""
    return psycopg2.connect(with_database(dsn, database) if database else dsn, user=user, password=password)
