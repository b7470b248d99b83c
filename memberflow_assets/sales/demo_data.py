"""Deterministic demo data for the sales database: a catalogue and transactions for the members
that exist. No Dagster.

Used by the `sales_demo_data` asset (after the membership pipeline has loaded members), the
`memberflow sales demo` command, the tests and the benchmark. Re-running it is safe: the catalogue is
created only when there is none, and transactions only for members that have none yet. A member's
transactions depend only on the seed, the membership_id and the catalogue (they are derived from
md5 hashes, not from a random stream), so the result is the same whether the members arrived in one
batch or in ten.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import psycopg2.errors
from psycopg2.extensions import connection as PgConnection

from memberflow_assets import postgres
from memberflow_assets.settings import read_sql

# How long the demo waits for a lock on the sales tables (a Sales user's SELECT ... FOR UPDATE on the
# items, which every new line's foreign key needs to share) before it fails naming who holds it.
DEMO_LOCK_TIMEOUT_SECONDS = 60.0

# fmt: off
_MAKERS = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Tyrell", "Soylent", "Hooli",
           "Vandelay", "Cyberdyne", "Aperture", "Gringotts", "Monarch", "Oscorp", "Nakatomi", "Zorg", "Duff", "Kwik"]
_MAKER_KINDS = ["Industries", "Labs", "Works", "Goods", "Supply", "Trading", "Brothers", "Foods", "Outfitters", "Home",
                "Electronics", "Sports", "Garden", "Kitchen", "Tools", "Toys", "Apparel", "Health", "Books", "Pets"]
_ADJECTIVES = ["Compact", "Deluxe", "Classic", "Smart", "Eco", "Ultra", "Mini", "Pro", "Travel", "Family"]
_PRODUCTS = ["Kettle", "Backpack", "Lamp", "Blender", "Headphones", "Yoga Mat", "Drill", "Board Game", "Jacket",
             "Coffee Beans", "Cat Tree", "Novel", "Water Bottle", "Toaster", "Sneakers", "Tent", "Monitor", "Vitamins",
             "Saucepan", "Garden Hose"]
# fmt: on


class DemoLockTimeout(RuntimeError):
    """The demo gave up waiting for a lock on the sales tables (someone holds one)."""


@dataclass(frozen=True)
class DemoSpec:
    seed: int = 1
    manufacturers: int = 20
    items: int = 200
    transactions_per_member: int = 3  # on average; each member gets 0 .. 2x this many
    max_lines: int = 5  # lines per transaction: 1 .. max_lines
    first_day: date = date(2025, 1, 1)  # transactions are spread over [first_day, first_day + days)
    days: int = 365


@dataclass(frozen=True)
class DemoResult:
    manufacturers_created: int
    items_created: int
    members_served: int  # members that got transactions now
    transactions_created: int
    lines_created: int


def catalogue(spec: DemoSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(manufacturers[name], items[name, manufacturer, cost, weight_kg]) for the spec's seed."""
    rng = np.random.default_rng(spec.seed)
    numbers = np.arange(spec.manufacturers)
    combos = len(_MAKERS) * len(_MAKER_KINDS)
    maker_names = [
        f"{_MAKERS[n % len(_MAKERS)]} {_MAKER_KINDS[(n // len(_MAKERS)) % len(_MAKER_KINDS)]}"
        + (f" {n // combos + 1}" if n >= combos else "")
        for n in numbers
    ]
    makers = rng.integers(0, spec.manufacturers, spec.items)
    items = pd.DataFrame(
        {
            "name": [
                f"{_ADJECTIVES[rng.integers(len(_ADJECTIVES))]} {_PRODUCTS[n % len(_PRODUCTS)]} {n + 1:05d}"
                for n in range(spec.items)
            ],
            "manufacturer": np.asarray(maker_names, dtype=object)[makers],
            # prices 1..500, log-uniform; weights 0.05..25 kg
            "cost": np.round(np.exp(rng.uniform(0, np.log(500), spec.items)), 2),
            "weight_kg": np.round(np.exp(rng.uniform(np.log(0.05), np.log(25), spec.items)), 3),
        }
    )
    return pd.DataFrame({"name": maker_names}), items


def _copy_in(cursor, table: str, columns: str, csv_path: str) -> None:
    with open(csv_path, "rb") as handle:
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true)", handle)


def _copy_out(cursor, query: str, csv_path: str) -> None:
    with open(csv_path, "wb") as handle:
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)", handle)


def _ensure_catalogue(cursor, spec: DemoSpec, folder: str) -> tuple[int, int]:
    cursor.execute("SELECT EXISTS (SELECT FROM sales.items)")
    if cursor.fetchone()[0]:
        return 0, 0  # the catalogue belongs to the sales team once it exists
    makers, items = catalogue(spec)
    cursor.execute(
        "INSERT INTO sales.manufacturers (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
        (list(makers["name"]),),
    )
    made = cursor.rowcount
    path = os.path.join(folder, "items.csv")
    items.to_csv(path, index_label="item_no")
    cursor.execute(
        "CREATE TEMP TABLE demo_items_stage (item_no int, name text, manufacturer text, cost numeric,"
        " weight_kg numeric) ON COMMIT DROP"
    )
    _copy_in(cursor, "demo_items_stage", "item_no, name, manufacturer, cost, weight_kg", path)
    cursor.execute(
        "INSERT INTO sales.items (name, manufacturer_id, cost, weight_kg) "
        "SELECT s.name, m.manufacturer_id, s.cost, s.weight_kg FROM demo_items_stage s "
        "JOIN sales.manufacturers m ON m.name = s.manufacturer ORDER BY s.item_no"
    )
    return made, cursor.rowcount


def _generate(spec: DemoSpec, folder: str, members_csv: str, catalogue_csv: str) -> tuple[str, str] | None:
    """DuckDB: the demo transactions and lines of the members in members_csv as two CSV files (None
    when there are no members or no items to buy)."""
    transactions_csv, lines_csv = os.path.join(folder, "transactions.csv"), os.path.join(folder, "lines.csv")
    with duckdb.connect() as duck:
        duck.execute("SET TimeZone = 'UTC'")
        duck.execute(
            "CREATE TEMP TABLE new_members AS SELECT * FROM read_csv($path, all_varchar = true)", {"path": members_csv}
        )
        duck.execute(
            "CREATE TEMP TABLE catalogue AS SELECT * FROM read_csv($path, types = "
            "{'item_no': 'BIGINT', 'item_id': 'INTEGER', 'cost': 'DECIMAL(12,2)', 'weight_kg': 'DECIMAL(10,3)'})",
            {"path": catalogue_csv},
        )
        members, items = duck.execute(
            "SELECT (SELECT count(*) FROM new_members), (SELECT count(*) FROM catalogue)"
        ).fetchall()[0]
        if not members or not items:
            return None
        duck.execute(
            "CREATE TEMP TABLE demo_lines AS " + read_sql("sales/demo_lines.sql"),
            {
                "seed": str(spec.seed),
                "transactions_per_member": spec.transactions_per_member,
                "max_lines": spec.max_lines,
            },
        )
        duck.execute(
            "CREATE TEMP TABLE demo_transactions AS " + read_sql("sales/demo_transactions.sql"),
            {"seed": str(spec.seed), "first_day": spec.first_day.isoformat(), "days": spec.days},
        )
        duck.sql("SELECT * FROM demo_transactions").write_csv(transactions_csv)
        duck.sql("SELECT * FROM demo_lines").write_csv(lines_csv)
    return transactions_csv, lines_csv


def _insert(cursor, transactions_csv: str, lines_csv: str) -> tuple[int, int, int]:
    """Load the generated CSV files into sales; returns (members served, transactions, lines)."""
    cursor.execute(
        "CREATE TEMP TABLE demo_transactions_stage (membership_id text, transaction_no int, total_price numeric,"
        " total_weight_kg numeric, created_at timestamptz, status text, completed_at timestamptz) ON COMMIT DROP;"
        "CREATE TEMP TABLE demo_lines_stage (membership_id text, transaction_no int, line_number smallint,"
        " item_id int, quantity int, unit_price numeric, unit_weight_kg numeric) ON COMMIT DROP"
    )
    _copy_in(
        cursor,
        "demo_transactions_stage",
        "membership_id, transaction_no, total_price, total_weight_kg, created_at, status, completed_at",
        transactions_csv,
    )
    _copy_in(
        cursor,
        "demo_lines_stage",
        "membership_id, transaction_no, line_number, item_id, quantity, unit_price, unit_weight_kg",
        lines_csv,
    )
    cursor.execute(read_sql("sales/insert_demo_transactions.sql"))
    cursor.execute(
        "SELECT (SELECT count(DISTINCT membership_id) FROM demo_transactions_stage),"
        " (SELECT count(*) FROM demo_transactions_stage), (SELECT count(*) FROM demo_lines_stage)"
    )
    return cursor.fetchone()


def seed_demo_sales(connection: PgConnection, spec: DemoSpec = DemoSpec()) -> DemoResult:
    """Create the demo catalogue (if none) and demo transactions for members without any, in the
    caller's database transaction. Concurrent callers wait for each other (advisory lock).

    A lock on the sales tables is waited for at most DEMO_LOCK_TIMEOUT_SECONDS: then the caller's
    transaction is rolled back and DemoLockTimeout names the sessions holding locks.
    """
    try:
        return _seed(connection, spec)
    except psycopg2.errors.LockNotAvailable as error:
        connection.rollback()  # before listing the holders: this transaction's own locks are not the story
        raise DemoLockTimeout(
            postgres.lock_wait_message(
                connection, "the sales demo", DEMO_LOCK_TIMEOUT_SECONDS, "nothing was written; run it again."
            )
        ) from error


def _seed(connection: PgConnection, spec: DemoSpec) -> DemoResult:
    with tempfile.TemporaryDirectory(prefix="memberflow-demo-") as folder, connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('memberflow_sales_demo'))")
        # After the demo's own lock: a concurrent demo run is waited for, a team's lock only so long.
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", (f"{DEMO_LOCK_TIMEOUT_SECONDS * 1000:.0f}",))
        manufacturers_created, items_created = _ensure_catalogue(cursor, spec, folder)
        members_csv, catalogue_csv = os.path.join(folder, "members.csv"), os.path.join(folder, "catalogue.csv")
        _copy_out(
            cursor,
            "SELECT membership_id FROM sales.members m "
            "WHERE NOT EXISTS (SELECT FROM sales.transactions t WHERE t.membership_id = m.membership_id)",
            members_csv,
        )
        _copy_out(
            cursor,
            "SELECT row_number() OVER (ORDER BY item_id) - 1 AS item_no, item_id, cost, weight_kg "
            "FROM sales.items WHERE discontinued_at IS NULL",
            catalogue_csv,
        )
        generated = _generate(spec, folder, members_csv, catalogue_csv)
        served, transactions, lines = _insert(cursor, *generated) if generated else (0, 0, 0)
    return DemoResult(manufacturers_created, items_created, served, transactions, lines)
