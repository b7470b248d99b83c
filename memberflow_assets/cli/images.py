"""Images subcommands of `memberflow`:

memberflow retention [--as-of TIME]    purge image hours that ended more than 7 days before TIME (default now)
memberflow s3-lifecycle [--days 7]     put the 7-day expiry rules for the image prefixes on the S3 bucket
memberflow images-bi [--sql QUERY]     publish a warehouse version with the image views anew, or run a
                                       read-only query (as `memberflow warehouse query`: a table; --csv, --json)
"""

import argparse
import json
import os
import sys
import uuid
from datetime import UTC, datetime

from memberflow_assets import postgres
from memberflow_assets.cli.warehouse import query as warehouse_query
from memberflow_assets.images.processing import bi
from memberflow_assets.images.retention import expiry, lifecycle
from memberflow_assets.settings import Settings
from memberflow_assets.warehouse import versions
from memberflow_assets.warehouse.query_output import add_format_arguments
from memberflow_assets.zones import Zones


def parse_as_of(text: str) -> datetime:
    """ISO 8601; a time without a zone is taken as UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _retention(args: argparse.Namespace) -> int:
    import dagster as dg  # only here: the other subcommands do not need Dagster loaded

    from memberflow_assets.images.retention.jobs import DagsterPartitionRecords

    records = None
    if os.environ.get("DAGSTER_HOME"):
        instance = dg.DagsterInstance.get()
        records = DagsterPartitionRecords(instance)
    else:
        print(
            "DAGSTER_HOME is not set: Dagster's runs and partitions are left for the scheduled job "
            '(eval "$(memberflow env)" first to purge them too)',
            file=sys.stderr,
        )
    as_of = parse_as_of(args.as_of) if args.as_of else datetime.now(UTC)
    settings = Settings.from_env()
    dsn = postgres.require_migrated(postgres.sales_dsn(settings))
    zones = Zones.from_settings(settings)
    result = expiry.run_retention(zones, dsn, as_of, f"cli-{uuid.uuid4()}", "cli", records, log=print)
    print(json.dumps(result.summary()))
    return 0


def _s3_lifecycle(args: argparse.Namespace) -> int:
    zones = Zones.from_settings()
    rules = lifecycle.current_rules(zones) if args.show else lifecycle.apply_lifecycle(zones, args.days)
    print(json.dumps(rules, indent=2, default=str))
    return 0


def _images_bi(args: argparse.Namespace) -> int:
    if args.sql is not None:
        return warehouse_query(args)
    settings = Settings.from_env()
    zones, warehouse = Zones.from_settings(settings), settings.warehouse
    published = versions.republish_views(warehouse, zones)
    print(f"published {published}")
    with versions.open_published(warehouse, zones) as connection:
        for view in bi.IMAGE_VIEWS:
            print(f"bi.{view}: {connection.execute(f'SELECT count(*) FROM bi.{view}').fetchone()[0]} rows")
    return 0


def register(subparsers) -> None:
    purge = subparsers.add_parser("retention", help="purge image hours older than 7 days (idempotent)")
    purge.add_argument("--as-of", help="ISO 8601 time to measure 7 days back from (default: now; no zone = UTC)")
    purge.set_defaults(handler=_retention)

    rules = subparsers.add_parser("s3-lifecycle", help="apply the 7-day S3 expiry rules for the image prefixes")
    rules.add_argument("--days", type=int, default=lifecycle.RETENTION_DAYS, help="expire after N days (>= 7)")
    rules.add_argument("--show", action="store_true", help="only print the bucket's current lifecycle rules")
    rules.set_defaults(handler=_s3_lifecycle)

    views = subparsers.add_parser("images-bi", help="publish the image BI views anew, or query the warehouse")
    views.add_argument("--sql", help="run this query read-only (S3 metadata readable without httpfs)")
    add_format_arguments(views)
    views.set_defaults(handler=_images_bi)
