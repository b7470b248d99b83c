"""`memberflow warehouse refresh|query`: the DuckDB warehouse from the command line."""

import argparse
import sys

import duckdb

from memberflow_assets import postgres
from memberflow_assets.settings import Settings
from memberflow_assets.warehouse import versions
from memberflow_assets.warehouse.query_output import add_format_arguments, print_query
from memberflow_assets.warehouse.refresh import refresh_warehouse
from memberflow_assets.zones import Zones


def _refresh(args: argparse.Namespace) -> int:
    dsn = postgres.sales_dsn()
    postgres.apply_migrations(dsn)
    result = refresh_warehouse(dsn, Settings.from_env().warehouse, Zones.from_settings(), full=args.full)
    print(
        f"{result.mode} refresh of {result.path} in {result.seconds:.1f} s: {result.transactions_loaded} "
        f"transactions ({result.lines_loaded} lines) loaded; fact_sales has {result.fact_rows} rows"
    )
    return 0


def query(args: argparse.Namespace) -> int:
    """Run args.sql on the published warehouse, read-only (image views readable on S3 zones too)."""
    try:
        with versions.open_published(Settings.from_env().warehouse, Zones.from_settings()) as connection:
            print_query(connection, args.sql, args.format, args.max_rows)
    except (duckdb.Error, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("warehouse", help="the DuckDB warehouse: refresh it, query it read-only")
    commands = parser.add_subparsers(dest="warehouse_command", required=True)

    refresh = commands.add_parser("refresh", help="load new and changed transactions (incremental)")
    refresh.add_argument("--full", action="store_true", help="rebuild the whole warehouse")
    refresh.set_defaults(handler=_refresh)

    run = commands.add_parser("query", help="run SQL on the warehouse, read-only (a table; --csv, --json)")
    run.add_argument("sql")
    add_format_arguments(run)
    run.set_defaults(handler=query)
