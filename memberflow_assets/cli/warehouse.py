"""`memberflow warehouse refresh|query`: the DuckDB warehouse from the command line;
`memberflow analytics`: the analysts' notebook app (analytics/warehouse.py), which `memberflow start`
also serves beside `dagster dev` (`start_beside_dagster`; MEMBERFLOW_START_ANALYTICS=0 leaves it out).
"""

import argparse
import logging
import os
import re
import subprocess
import sys
import threading

import duckdb
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memberflow_assets import postgres
from memberflow_assets.settings import REPO_ROOT, Settings
from memberflow_assets.warehouse import versions
from memberflow_assets.warehouse.query_output import add_format_arguments, print_query
from memberflow_assets.warehouse.refresh import refresh_warehouse
from memberflow_assets.zones import Zones


def _refresh(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    dsn = postgres.require_migrated(postgres.sales_dsn(settings))
    result = refresh_warehouse(dsn, settings.warehouse, Zones.from_settings(settings), full=args.full)
    print(
        f"{result.mode} refresh of {result.path} in {result.seconds:.1f} s: {result.transactions_loaded} "
        f"transactions ({result.lines_loaded} lines) loaded; fact_sales has {result.fact_rows} rows"
    )
    return 0


def query(args: argparse.Namespace) -> int:
    """Run args.sql on the published warehouse, read-only (image views readable on S3 zones too)."""
    try:
        settings = Settings.from_env()
        with versions.open_published(settings.warehouse, Zones.from_settings(settings)) as connection:
            print_query(connection, args.sql, args.format, args.max_rows)
    except (duckdb.Error, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


NOTEBOOK = REPO_ROOT / "analytics" / "warehouse.py"
log = logging.getLogger("memberflow.analytics")


# marimo's page assets, named by their content (Vite's 8-character hash): a name never changes meaning.
HASHED_ASSET = re.compile(r"/assets/[^/]+-[A-Za-z0-9_-]{8}\.[a-z0-9]+")
KEEP_HASHED_ASSET = (b"cache-control", b"public, max-age=31536000, immutable")


def cache_hashed_assets(app: ASGIApp) -> ASGIApp:
    """Lets browsers keep marimo's hashed page assets (~250 files, 6.6 MB) instead of asking for each again
    on every visit (marimo sends them with no Cache-Control): an analyst's next visit loads none of them."""

    async def with_cache_headers(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not HASHED_ASSET.fullmatch(scope["path"]):
            return await app(scope, receive, send)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = [header for header in message.get("headers", []) if header[0].lower() != b"cache-control"]
                message = {**message, "headers": [*headers, KEEP_HASHED_ASSET]}
            await send(message)

        await app(scope, receive, sending)

    return with_cache_headers


def analytics_app() -> ASGIApp:
    """The notebook app in marimo's run mode: analysts use the app, they cannot change its code (the SQL
    cell has rules of its own)."""
    import marimo

    builder = marimo.create_asgi_app(quiet=True, include_code=False)
    return builder.with_app(path="", root=str(NOTEBOOK), middleware=[cache_hashed_assets]).build()


def _analytics(args: argparse.Namespace) -> int:
    import uvicorn

    from memberflow_assets.cli.image_ingestion import exit_with_parent
    from memberflow_assets.warehouse.analyst import keep_charts_drawn

    if args.exit_with_parent:
        exit_with_parent()
    settings = Settings.from_env()
    # The charts are drawn when the data changes, not when the first analyst after it opens the app.
    charts_drawn = threading.Thread(
        target=keep_charts_drawn,
        args=(settings.analytics_check_every_seconds, threading.Event()),
        name="charts",
        daemon=True,
    )
    charts_drawn.start()
    uvicorn.run(
        analytics_app(),
        host=args.host or settings.analytics_host,
        port=args.port or settings.analytics_port,
        log_level="warning",
    )
    return 0


def start_beside_dagster(environment: dict[str, str]) -> None:
    """Called by `memberflow start` before it becomes `dagster dev`: serve the notebook app beside it."""
    settings = Settings.from_env()
    if not settings.start_analytics:
        return
    command = [sys.executable, "-m", "memberflow_assets.cli", "analytics", "--exit-with-parent"]
    subprocess.Popen(command, env={**os.environ, **environment})
    log.info("analytics notebook on http://%s:%s", settings.analytics_host, settings.analytics_port)


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

    app = subparsers.add_parser("analytics", help="serve the analysts' notebook app (charts, SQL) read-only")
    app.add_argument("--host", help="default MEMBERFLOW_ANALYTICS_HOST or 127.0.0.1")
    app.add_argument("--port", type=int, help="default MEMBERFLOW_ANALYTICS_PORT or 2718")
    app.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    app.set_defaults(handler=_analytics)
