"""`memberflow`: the platform's command line.

One module per domain's commands:

memberflow start | env | migrate | stop-postgres     the platform (platform.py)
memberflow samples | members-rebuild                 membership (membership.py)
memberflow api | api-key | kafka-*                   image ingestion (image_ingestion.py)
memberflow access ... | sales-demo                   the sales database (sales.py)
memberflow warehouse ... | analytics                 the warehouse and the notebook app (warehouse.py)
memberflow retention | s3-lifecycle | images-bi      images after ingestion (images.py)
"""

from __future__ import annotations

import argparse
import logging
import sys

from memberflow_assets import postgres
from memberflow_assets.cli import image_ingestion, images, membership, platform, sales, warehouse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memberflow", description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for commands in (platform, membership, image_ingestion, sales, warehouse, images):
        commands.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except postgres.SchemaBehindError as error:  # says which command brings the schema up to date
        print(f"memberflow {args.command}: {error}", file=sys.stderr)
        return 1
