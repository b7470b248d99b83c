"""The one output style of the query commands (`memberflow warehouse query`, `memberflow images-bi --sql`):
a table by default (DuckDB's own, as in the DuckDB shell), CSV or JSON on request. No Dagster.

CSV and JSON stream the whole result in batches, so a large result costs memory per batch only; the
table shows at most `max_rows` rows (DuckDB marks what it left out).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import decimal
import io
import json
import math
import sys
import uuid
from contextlib import redirect_stdout
from typing import IO, Any

import duckdb

BATCH_ROWS = 10_000


def add_format_arguments(parser: argparse.ArgumentParser) -> None:
    """--csv / --json (default: a table) and --max-rows, for every query command."""
    style = parser.add_mutually_exclusive_group()
    style.add_argument("--csv", dest="format", action="store_const", const="csv", help="print CSV (with a header)")
    style.add_argument("--json", dest="format", action="store_const", const="json", help="print a JSON array")
    parser.set_defaults(format="table")
    parser.add_argument("--max-rows", type=int, default=40, help="rows a table shows (CSV and JSON print all)")


def _json_value(value: Any) -> Any:
    """A JSON value for a DuckDB result value: exact decimals stay numbers when a double holds them."""
    if isinstance(value, decimal.Decimal):
        number = float(value)
        return number if math.isfinite(number) and decimal.Decimal(repr(number)) == value else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta | uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    return value


def _csv_value(value: Any) -> Any:
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique (a, a_2, ...): a JSON object cannot hold one key twice."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return result


def print_query(
    connection: duckdb.DuckDBPyConnection, sql: str, output_format: str = "table", max_rows: int = 40,
    out: IO[str] | None = None,
) -> None:  # fmt: skip
    """Run `sql` (the last statement's result is printed) and print its result in `output_format`."""
    out = out or sys.stdout
    if output_format == "table":
        relation = connection.sql(sql)
        if relation is not None:  # a statement without a result (SET, ...) prints nothing
            text = io.StringIO()
            with redirect_stdout(text):
                relation.show(max_rows=max_rows, max_width=200)
            out.write(text.getvalue())
        return
    cursor = connection.execute(sql)
    columns = [column[0] for column in cursor.description or []]
    if output_format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        while batch := cursor.fetchmany(BATCH_ROWS):
            writer.writerows([_csv_value(value) for value in row] for row in batch)
        return
    keys = unique_names(columns)
    separator = "["
    while batch := cursor.fetchmany(BATCH_ROWS):
        for row in batch:
            record = {key: _json_value(value) for key, value in zip(keys, row, strict=True)}
            out.write(f"{separator}\n{json.dumps(record, ensure_ascii=False, allow_nan=False)}")
            separator = ","
    out.write("[]\n" if separator == "[" else "\n]\n")
