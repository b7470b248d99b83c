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

import psycopg2

from memberflow_assets import postgres
from memberflow_assets.cli import image_ingestion, images, membership, platform, sales, warehouse
from memberflow_assets.settings import ConfigurationError


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
    except OPERATOR_ERRORS as error:  # the operator can act on these: one line, no traceback
        print(f"memberflow {args.command}: {_one_line(error)}", file=sys.stderr)
        return 1


# What configuration or the environment gets wrong, not the code: a refused variable (ConfigurationError,
# InvalidDsnError), the schema behind (says which command brings it up to date), PostgreSQL unreachable
# or refusing us (connect() has taken the DSN out of the message), a data folder that is a file.
# Anything else is a bug and keeps its traceback.
OPERATOR_ERRORS = (
    ConfigurationError,
    postgres.SchemaBehindError,
    psycopg2.OperationalError,
    FileExistsError,
    NotADirectoryError,
    PermissionError,
)


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None:  # its str() would be "[Errno 17] File exists: ..."
        return f"{error.strerror}: {error.filename}"
    return " ".join(str(error).split())
