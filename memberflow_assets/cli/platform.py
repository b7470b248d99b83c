"""The platform's own commands:

    memberflow start      prepare PostgreSQL, DAGSTER_HOME and sample data, then run `dagster dev`
    memberflow env        print the environment `dagster` commands need (eval "$(memberflow env)")
    memberflow migrate    apply the sales database migrations in sql/migrations/
    memberflow stop-postgres   stop the embedded PostgreSQL (it outlives `start` on purpose)

`memberflow start` also starts the servers that run beside `dagster dev`: the upload API
(cli/image_ingestion.py) and the analysts' notebook app (cli/warehouse.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys

from memberflow_assets import postgres
from memberflow_assets.cli import image_ingestion, membership, warehouse
from memberflow_assets.settings import REPO_ROOT, Settings

log = logging.getLogger("memberflow")


def prepare_environment(settings: Settings) -> dict[str, str]:
    """Start what the platform needs locally and return the environment Dagster processes run with."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    dsn = postgres.sales_dsn(settings)
    applied = postgres.apply_migrations(dsn)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    dagster_home = os.environ.get("DAGSTER_HOME") or str(settings.data_dir / "dagster_home")
    os.makedirs(dagster_home, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", os.path.join(dagster_home, "dagster.yaml"))
    # every path as the settings made it, absolute: `start` runs its children here, then dagster dev in REPO_ROOT
    return {
        "MEMBERFLOW_DATA_DIR": str(settings.data_dir),
        **({"MEMBERFLOW_STORAGE_URL": settings.storage_url} if settings.storage_url else {}),
        "MEMBERFLOW_API_KEYS_FILE": str(settings.ingest.api_keys_file),
        "MEMBERFLOW_PG_DSN": dsn,
        "MEMBERFLOW_WAREHOUSE": settings.warehouse,
        "MEMBERFLOW_DAGSTER_PG_URL": postgres.dagster_storage_url(settings),
        "MEMBERFLOW_MAX_CONCURRENT_RUNS": str(settings.max_concurrent_runs),
        "DAGSTER_HOME": dagster_home,
    }


def _start(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    environment = prepare_environment(settings)
    os.environ.update(environment)
    if not args.no_samples:
        membership.write_samples(files=3, rows=200)
        os.environ.setdefault("MEMBERFLOW_SALES_DEMO", "1")  # demo transactions follow the sample members
    image_ingestion.start_beside_dagster(environment)
    warehouse.start_beside_dagster(environment)
    log.info(
        "starting dagster dev on http://%s:%s (DAGSTER_HOME=%s)", args.host, args.port, environment["DAGSTER_HOME"]
    )
    os.chdir(REPO_ROOT)
    command = [sys.executable, "-m", "dagster", "dev", "-h", args.host, "-p", str(args.port), "-w", "workspace.yaml"]
    os.execvpe(command[0], command, os.environ)
    return 0  # not reached


def _env(args: argparse.Namespace) -> int:
    for name, value in prepare_environment(Settings.from_env()).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    try:
        applied = postgres.apply_migrations(postgres.sales_dsn(Settings.from_env()))
    except postgres.MigrationError as error:
        print(f"memberflow migrate: {error}", file=sys.stderr)
        return 1
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _stop_postgres(args: argparse.Namespace) -> int:
    pg_dir = Settings.from_env().embedded_pg_dir
    print(f"stopped the embedded PostgreSQL in {pg_dir}" if postgres.stop_embedded(pg_dir) else "not running")
    return 0


def register(subparsers) -> None:
    start = subparsers.add_parser("start", help="run the platform locally (dagster dev on embedded defaults)")
    start.add_argument("--host", default="127.0.0.1")
    start.add_argument("--port", type=int, default=3000)
    start.add_argument("--no-samples", action="store_true", help="do not write sample application files")
    start.set_defaults(handler=_start)

    subparsers.add_parser("env", help="print the environment for dagster commands").set_defaults(handler=_env)
    subparsers.add_parser("migrate", help="apply sales database migrations").set_defaults(handler=_migrate)
    subparsers.add_parser("stop-postgres", help="stop the embedded PostgreSQL").set_defaults(handler=_stop_postgres)
