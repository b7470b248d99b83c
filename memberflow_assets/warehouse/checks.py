"""Quality checks of the published warehouse. No Dagster; the asset checks call these."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import duckdb
import pandas as pd
import psycopg2
import psycopg2.extensions

from memberflow_assets.postgres import connect
from memberflow_assets.settings import read_sql
from memberflow_assets.warehouse.refresh import last_watermark

INTEGRITY_PROBLEMS = (
    "facts_without_member",
    "facts_without_item",
    "facts_without_date",
    "duplicate_lines",
    "duplicate_transactions",
    "transactions_not_matching_lines",
)


def referential_integrity(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many fact rows break each integrity rule (INTEGRITY_PROBLEMS; all 0 = good)."""
    row = connection.execute(read_sql("warehouse/check_referential_integrity.sql")).fetchall()[0]
    return dict(zip(INTEGRITY_PROBLEMS, map(int, row), strict=True))


@dataclass(frozen=True)
class Totals:
    transactions: int
    price: Decimal
    weight_kg: Decimal


@dataclass(frozen=True)
class Reconciliation:
    postgres: Totals
    warehouse: Totals
    changed_since_watermark: int  # transactions left out on both sides

    @property
    def matches(self) -> bool:
        return self.postgres == self.warehouse


def reconcile_with_postgres(connection: duckdb.DuckDBPyConnection, pg_dsn: str) -> Reconciliation:
    """Compare transaction count, total price and total weight between PostgreSQL and fact_sales.

    Both sides cover the transactions unchanged in PostgreSQL since the warehouse's watermark, so the
    comparison holds while the shop keeps writing. PostgreSQL's side uses the transactions' totals,
    the warehouse's the sums of its lines: a lost, duplicated or altered line shows up as a difference.
    """
    watermark = last_watermark(connection)
    if watermark is None:
        raise ValueError("the warehouse has never been refreshed")
    pg = connect(pg_dsn, "memberflow-warehouse-check")
    try:
        pg.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with pg, pg.cursor() as cursor:
            cursor.execute(read_sql("warehouse/postgres_totals.sql"), {"watermark": watermark})
            postgres = Totals(*cursor.fetchone())
            cursor.execute("SELECT transaction_id FROM sales.transactions WHERE updated_at >= %s", (watermark,))
            changed = pd.DataFrame(cursor.fetchall(), columns=["transaction_id"], dtype="int64")
    finally:
        pg.close()
    connection.register("changed_since_watermark", changed)
    try:
        warehouse = Totals(*connection.execute(read_sql("warehouse/warehouse_totals.sql")).fetchall()[0])
    finally:
        connection.unregister("changed_since_watermark")
    return Reconciliation(postgres, warehouse, len(changed))
