"""`memberflow warehouse refresh|query`: the DuckDB warehouse from the command line."""

import argparse

from memberflow_assets import postgres
from memberflow_assets.settings import Settings
from memberflow_assets.warehouse.refresh import connect, refresh_warehouse
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


def _query(args: argparse.Namespace) -> int:
    with connect(Settings.from_env().warehouse, read_only=True) as connection:
        connection.sql(args.sql).show(max_rows=args.max_rows, max_width=200)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("warehouse", help="the DuckDB warehouse: refresh it, query it read-only")
    commands = parser.add_subparsers(dest="warehouse_command", required=True)

    refresh = commands.add_parser("refresh", help="load new and changed transactions (incremental)")
    refresh.add_argument("--full", action="store_true", help="rebuild the whole warehouse")
    refresh.set_defaults(handler=_refresh)

    query = commands.add_parser("query", help="run one SQL query on the warehouse, read-only")
    query.add_argument("sql")
    query.add_argument("--max-rows", type=int, default=40)
    query.set_defaults(handler=_query)
