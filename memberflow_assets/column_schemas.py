"""Column schemas (`dagster/column_schema`) for the UI, taken from what the assets really write: the
Arrow schema of a Parquet file, the DuckDB DDL of the warehouse. Only sales.members is typed out (its
DDL is PostgreSQL's, spread over migrations); a test compares it with the database's catalogue."""

from __future__ import annotations

import dagster as dg
import duckdb
import pyarrow as pa

from memberflow_assets.settings import read_sql

COLUMN_SCHEMA = "dagster/column_schema"


def from_arrow(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(field.name, str(field.type), constraints=dg.TableColumnConstraints(nullable=field.nullable))
            for field in schema
        ]
    )


def warehouse_tables() -> dict[str, dg.TableSchema]:
    """The star schema's tables (schema main of sql/warehouse/schema.sql), by name, as DuckDB creates them."""
    with duckdb.connect(":memory:") as connection:
        connection.execute(read_sql("warehouse/schema.sql"))
        rows = connection.execute(
            "SELECT table_name, column_name, data_type, is_nullable = 'YES' FROM information_schema.columns"
            " WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
        ).fetchall()
    tables: dict[str, list[dg.TableColumn]] = {}
    for table, column, data_type, nullable in rows:
        tables.setdefault(table, []).append(
            dg.TableColumn(column, data_type, constraints=dg.TableColumnConstraints(nullable=nullable))
        )
    return {table: dg.TableSchema(columns=columns) for table, columns in tables.items()}


def _postgres_column(name: str, data_type: str, description: str | None = None) -> dg.TableColumn:
    return dg.TableColumn(
        name, data_type, description=description, constraints=dg.TableColumnConstraints(nullable=False)
    )


MEMBERS_TABLE = dg.TableSchema(
    columns=[
        _postgres_column("membership_id", "text", "<last_name>_<5 hex digits>, the primary key"),
        _postgres_column("first_name", "text"),
        _postgres_column("last_name", "text"),
        _postgres_column("email", "text"),
        _postgres_column("date_of_birth", "date"),
        _postgres_column("mobile_no", "text"),
        _postgres_column("above_18", "boolean"),
        _postgres_column("source_batch", "text", "the batch whose values the row holds"),
        _postgres_column("created_at", "timestamp with time zone"),
        _postgres_column("updated_at", "timestamp with time zone"),
        _postgres_column("source_landed_at", "timestamp with time zone", "when the source batch's file landed"),
        _postgres_column("member_key", "uuid", "the member's key outside PostgreSQL (unique)"),
    ]
)


def with_column_schema(spec: dg.AssetSpec, schema: dg.TableSchema) -> dg.AssetSpec:
    return spec.merge_attributes(metadata={COLUMN_SCHEMA: schema})
