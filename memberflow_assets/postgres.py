"""PostgreSQL: the embedded default server, the two databases, and versioned migrations.

`MEMBERFLOW_PG_DSN` names the sales database on any PostgreSQL (RDS in production). Without it an
embedded PostgreSQL 16 (pgserver) is started on demand under `MEMBERFLOW_DATA_DIR/.pg`; it listens
on a unix socket only and keeps running after the process that started it exits, so every Dagster
process shares it. Dagster's own storage lives in a second database on the same server.
"""

from __future__ import annotations

import logging
import os
import re
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

from memberflow_assets.settings import SQL_DIR, Settings

log = logging.getLogger(__name__)

SALES_DB = "memberflow"
DAGSTER_DB = "dagster"


@cache
def _embedded_server_uri(pg_dir: str) -> str:
    import pgserver  # heavy import; only the embedded default needs it

    Path(pg_dir).mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pg_dir, cleanup_mode=None)
    return server.get_uri()


def stop_embedded(pg_dir: Path) -> bool:
    """Stop the embedded server of `pg_dir` if it runs; returns whether it was running.

    The server outlives `memberflow start` on purpose (every Dagster process shares it), so stopping
    it is a separate, explicit step.
    """
    if not (pg_dir / "postmaster.pid").exists():
        return False
    from pgserver._commands import pg_ctl  # pgserver's own wrapper: runs as its OS user when root

    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg_dir, **({"user": user} if user else {}))
    _embedded_server_uri.cache_clear()
    return True


def with_database(dsn: str, database: str) -> str:
    """The same server address with another database name."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def ensure_database(dsn: str, database: str) -> None:
    """Create `database` on the server `dsn` points at, unless it exists."""
    connection = psycopg2.connect(with_database(dsn, "postgres"))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    except psycopg2.errors.DuplicateDatabase:
        pass  # created concurrently by another process
    finally:
        connection.close()


def sales_dsn(settings: Settings | None = None) -> str:
    """DSN of the sales database; starts the embedded server when no DSN is configured."""
    settings = settings or Settings.from_env()
    if settings.pg_dsn:
        return settings.pg_dsn
    server_uri = _embedded_server_uri(str(settings.embedded_pg_dir))
    ensure_database(server_uri, SALES_DB)
    return with_database(server_uri, SALES_DB)


def dagster_storage_url(settings: Settings | None = None) -> str:
    """SQLAlchemy URL for Dagster's instance storage: MEMBERFLOW_DAGSTER_PG_DSN when set, else
    database `dagster` beside the sales database (created if missing)."""
    url = os.environ.get("MEMBERFLOW_DAGSTER_PG_DSN", "").strip()
    if not url:
        dsn = sales_dsn(settings)
        ensure_database(dsn, DAGSTER_DB)
        url = with_database(dsn, DAGSTER_DB)
    # psycopg2 explicitly: SQLAlchemy 2.1 would pick psycopg 3 if present, which breaks Dagster's NOTIFY.
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg2://", url)


# -- migrations -----------------------------------------------------------------------------------
MIGRATIONS_DIR = SQL_DIR / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migration_files() -> list[Path]:
    files = sorted(p for p in MIGRATIONS_DIR.iterdir() if _MIGRATION_NAME.match(p.name))
    versions = [p.name[:4] for p in files]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {MIGRATIONS_DIR}: {versions}")
    return files


def apply_migrations(dsn: str) -> list[str]:
    """Apply every migration in `sql/migrations/` not yet applied, each in its own transaction.

    A transaction-scoped advisory lock makes concurrent callers (two runs starting together) wait
    for each other instead of racing. Returns the names of the migrations applied now.
    """
    applied_now: list[str] = []
    connection = psycopg2.connect(dsn)
    try:
        for path in migration_files():
            with connection, connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('memberflow_migrations'))")
                cursor.execute(
                    "CREATE TABLE IF NOT EXISTS public.schema_migrations ("
                    " version text PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cursor.execute("SELECT 1 FROM public.schema_migrations WHERE version = %s", (path.name[:4],))
                if cursor.fetchone():
                    continue
                log.info("applying migration %s", path.name)
                cursor.execute(path.read_text(encoding="utf-8"))
                cursor.execute(
                    "INSERT INTO public.schema_migrations (version, name) VALUES (%s, %s)",
                    (path.name[:4], path.name),
                )
                applied_now.append(path.name)
    finally:
        connection.close()
    return applied_now
