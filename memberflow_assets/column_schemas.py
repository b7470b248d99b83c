"""Column schemas (`dagster/column_schema`) for the UI, taken from what the assets really write: the
Arrow schema of a Parquet file, the DuckDB DDL of the warehouse. Never typed out a second time."""

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


def with_column_schema(spec: dg.AssetSpec, schema: dg.TableSchema) -> dg.AssetSpec:
    return spec.merge_attributes(metadata={COLUMN_SCHEMA: schema})
