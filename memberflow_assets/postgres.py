"""PostgreSQL: the embedded default server, the two databases, versioned migrations, and `connect`,
the one way the platform opens a connection to the sales database.

`MEMBERFLOW_PG_DSN` names the sales database on any PostgreSQL (RDS in production). Without it an
embedded PostgreSQL 16 (pgserver) is started on demand under `MEMBERFLOW_DATA_DIR/.pg`; it listens
on a unix socket only and keeps running after the process that started it exits, so every Dagster
process shares it. Dagster's own storage lives in a second database on the same server.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection

from memberflow_assets.settings import SQL_DIR, ConfigurationError, Settings, read_sql

if TYPE_CHECKING:
    from pgserver import PostgresServer

log = logging.getLogger(__name__)

SALES_DB = "memberflow"
DAGSTER_DB = "dagster"
PG_DSN_ENV = "MEMBERFLOW_PG_DSN"


# The embedded server's authentication, rewritten at every start. It listens on its unix socket only.
# The platform's own role connects without a password (as every memberflow process on the machine
# must); every other role — the team users above all — needs its SCRAM-SHA-256 password, so the access
# model tried on a laptop is production's (RDS always asks for passwords).
EMBEDDED_HBA = """\
# Written by memberflow (memberflow_assets/postgres.py) whenever it starts this server: edits are lost.
local   all   postgres   trust
local   all   all        scram-sha-256
"""


def start_embedded_server(pg_dir: Path, cleanup_mode: str | None = None) -> PostgresServer:
    """Start (or reuse) the embedded PostgreSQL of `pg_dir` (pgserver), secured: the authentication
    above, passwords stored as SCRAM verifiers, and no CONNECT or TEMP for PUBLIC on its own
    databases. Returns pgserver's server object."""
    import pgserver  # heavy import; only the embedded default needs it

    pg_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pg_dir, cleanup_mode=cleanup_mode)
    uri = server.get_uri()
    connection = psycopg2.connect(uri)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW hba_file")
            hba = Path(cursor.fetchone()[0])
            cursor.execute("SELECT current_setting('password_encryption') = 'scram-sha-256'")
            scram = cursor.fetchone()[0]
            if not scram:
                cursor.execute("ALTER SYSTEM SET password_encryption = 'scram-sha-256'")
            if hba.read_text() != EMBEDDED_HBA:
                _replace_keeping_owner(hba, EMBEDDED_HBA)
            if not scram or _asks_for_passwords(uri) is False:
                cursor.execute("SELECT pg_reload_conf()")
            for database in ("postgres", "template1"):
                _revoke_public_access(cursor, database)
    finally:
        connection.close()
    _wait_until(lambda: _asks_for_passwords(uri) is not False, what="the embedded server's authentication to apply")
    return server


def _replace_keeping_owner(path: Path, text: str) -> None:
    """Write `path` atomically, owned as before (the server runs as its own OS user when we are root)."""
    status = path.stat()
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # processes may start together
    temporary.write_text(text)
    os.chmod(temporary, status.st_mode & 0o777)
    if os.geteuid() == 0:
        os.chown(temporary, status.st_uid, status.st_gid)
    os.replace(temporary, path)


def _asks_for_passwords(uri: str) -> bool | None:
    """Whether the server asks a role other than postgres for a password (the probe role need not
    exist); None when it cannot tell (e.g. no connection slot free)."""
    try:
        psycopg2.connect(uri, user="memberflow_auth_probe", password="").close()
    except psycopg2.OperationalError as error:
        if "password" in str(error):
            return True
        return False if "does not exist" in str(error) else None
    return False


def _wait_until(condition, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting {seconds:g} s for {what}")
        time.sleep(0.05)


def _revoke_public_access(cursor, database: str) -> None:
    """PUBLIC may not connect to `database` or create temporary tables there (when we may decide that:
    as its owner or a superuser)."""
    cursor.execute(
        "SELECT pg_has_role(datdba, 'MEMBER') AND (datacl IS NULL"
        " OR EXISTS (SELECT FROM aclexplode(datacl) a WHERE a.grantee = 0))"  # 0 = PUBLIC
        " FROM pg_database WHERE datname = %s",
        (database,),
    )
    row = cursor.fetchone()
    if row and row[0]:
        cursor.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))


@cache
def _embedded_server_uri(pg_dir: str) -> str:
    return start_embedded_server(Path(pg_dir)).get_uri()


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
    """The same server address with another database name (a URL or key=value DSN)."""
    dsn = dsn.strip()
    if "://" not in dsn:
        try:
            return psycopg2.extensions.make_dsn(dsn, dbname=database)
        except psycopg2.ProgrammingError:
            return dsn  # unparsable: connect() refuses it without quoting it
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def ensure_database(dsn: str, database: str) -> None:
    """Create `database` on the server `dsn` points at, unless it exists; PUBLIC may not connect to
    it or create temporary tables there (the sales database's migrations let the teams connect)."""
    connection = connect(with_database(dsn, "postgres"), "memberflow-setup")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cursor.fetchone() is None:
                with suppress(psycopg2.errors.DuplicateDatabase):  # created concurrently by another process
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            _revoke_public_access(cursor, database)
    finally:
        connection.close()


def sales_dsn(settings: Settings) -> str:
    """DSN of the sales database; starts the embedded server when no DSN is configured."""
    return settings.pg_dsn or embedded_sales_dsn(settings.embedded_pg_dir)


def embedded_sales_dsn(pg_dir: Path) -> str:
    """DSN of the sales database on the embedded server of `pg_dir`, started (and the database
    created) if need be."""
    server_uri = _embedded_server_uri(str(pg_dir))
    ensure_database(server_uri, SALES_DB)
    return with_database(server_uri, SALES_DB)


def dagster_storage_url(settings: Settings) -> str:
    """SQLAlchemy URL for Dagster's instance storage: MEMBERFLOW_DAGSTER_PG_DSN when set, else
    database `dagster` beside the sales database (created if missing)."""
    url = settings.dagster_pg_dsn
    if not url:
        dsn = sales_dsn(settings)
        ensure_database(dsn, DAGSTER_DB)
        url = with_database(dsn, DAGSTER_DB)
    # psycopg2 explicitly: SQLAlchemy 2.1 would pick psycopg 3 if present, which breaks Dagster's NOTIFY.
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg2://", url)


# Every connection names itself (pg_stat_activity shows who holds what) and gives up on an unreachable
# server instead of hanging a run or a command.
CONNECT_TIMEOUT_SECONDS = 10


class InvalidDsnError(ConfigurationError):
    """A DSN libpq cannot parse; the message never quotes it (it may hold a password)."""


class ConnectionFailedError(psycopg2.OperationalError):
    """libpq could not connect (wrong password, unknown host, bad port or sslmode ...); its message
    with any part of the DSN's password taken out. Still an OperationalError for those who catch that."""


def connect(dsn: str, application_name: str = "memberflow", **options: str) -> PgConnection:
    """A new connection to `dsn` (the sales database, or another database of its server) with the
    platform's defaults; `options` are further libpq parameters (e.g. `options="-c ..."`).

    Its errors never echo the DSN: libpq's parse errors quote the piece they choke on (often the
    password), and Dagster shows an exception's message and its chained causes in the event log."""
    dsn = dsn.strip()  # a trailing newline is what a Kubernetes Secret or a file usually gives
    failure: str | None = None
    try:
        return psycopg2.connect(
            dsn, application_name=application_name, connect_timeout=CONNECT_TIMEOUT_SECONDS, **options
        )
    except psycopg2.ProgrammingError as error:  # "invalid dsn: ..." from parsing, before any network
        if not str(error).startswith("invalid dsn"):
            raise
        failure = "invalid"
    except psycopg2.OperationalError as error:
        failure = redact_dsn(str(error).strip(), dsn)
    # raised outside the except blocks, so the original (which quotes the DSN) is not even its __context__
    if failure == "invalid":
        raise InvalidDsnError(
            f"{PG_DSN_ENV} is not a valid PostgreSQL DSN: expected "
            "postgresql://user:password@host:port/database (percent-encode special characters in the password) "
            "or key=value pairs; its value is not shown because it may hold a password"
        )
    raise ConnectionFailedError(f"could not connect to PostgreSQL: {failure}")


def redact_dsn(message: str, dsn: str) -> str:
    """`message` without the DSN, nor its password (raw or percent-decoded) anywhere in it."""
    secrets = {dsn}
    with suppress(psycopg2.Error):
        password = psycopg2.extensions.parse_dsn(dsn).get("password")
        if password:
            secrets.add(password)
    with suppress(ValueError):
        if urlsplit(dsn).password:
            secrets.add(urlsplit(dsn).password)
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


@contextmanager
def transaction(dsn: str, application_name: str = "memberflow") -> Iterator[PgConnection]:
    """A connection whose transaction commits when the block succeeds and rolls back otherwise."""
    connection = connect(dsn, application_name)
    try:
        with connection:
            yield connection
    finally:
        connection.close()


# -- migrations -----------------------------------------------------------------------------------
MIGRATIONS_DIR = SQL_DIR / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migration_files() -> list[Path]:
    files = sorted(p for p in MIGRATIONS_DIR.iterdir() if _MIGRATION_NAME.match(p.name))
    versions = [p.name[:4] for p in files]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {MIGRATIONS_DIR}: {versions}")
    return files


# Waits are bounded so that nobody can stall the platform by holding a lock: the migration lock
# (only the platform's own role can take it) is waited for up to MIGRATION_LOCK_WAIT_SECONDS, while
# another process migrates; a lock a migration's statements need is waited for LOCK_TIMEOUT_SECONDS.
MIGRATION_LOCK_WAIT_SECONDS = 300.0
LOCK_TIMEOUT_SECONDS = 30.0

_CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS public.schema_migrations ("
    " version text PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
)


class MigrationError(RuntimeError):
    """Migrations could not run, with the reason an operator can act on."""


class SchemaBehindError(MigrationError):
    """The sales database lacks migrations this code needs: nobody ran them since it was deployed."""


@cache
def require_migrated(dsn: str) -> str:
    """`dsn`, once its schema has every migration of this code; checked once per process (a success
    is remembered), reading only. Migrations themselves run at process start (`memberflow start`,
    `memberflow migrate`, the `migrate_sales_database` job), never on the way to a query."""
    connection = connect(dsn, "memberflow-schema-check")
    try:
        with connection:
            applied = _applied_versions(connection)
    finally:
        connection.close()
    missing = [path.name for path in migration_files() if path.name[:4] not in (applied or set())]
    if missing:
        named = ", ".join(missing) if len(missing) <= 3 else f"{missing[0]} ... {missing[-1]}"
        raise SchemaBehindError(
            f"the sales database lacks {len(missing)} migration(s) this code needs ({named}): run "
            "`memberflow migrate` (or the Dagster job migrate_sales_database) first; `memberflow start` does it too"
        )
    return dsn


def apply_migrations(dsn: str) -> list[str]:
    """Apply every migration in `sql/migrations/` not yet applied, each in its own transaction.

    Up to date (the usual case: a deployment's migrate step found nothing new), it only reads
    `public.schema_migrations` and takes no lock. Otherwise concurrent callers serialise on a lock
    on that table, which only the platform's role (its owner) can take — no team can hold it.
    Returns the names of the migrations applied now; raises MigrationError when a wait runs out.
    """
    migration_lock_wait_seconds, lock_timeout_seconds = MIGRATION_LOCK_WAIT_SECONDS, LOCK_TIMEOUT_SECONDS
    applied_now: list[str] = []
    connection = connect(dsn, "memberflow-migrate")
    try:
        files = migration_files()
        if not _pending(connection, files):
            return applied_now
        for path in files:
            with connection, connection.cursor() as cursor:
                _take_migration_lock(cursor, dsn, migration_lock_wait_seconds)
                cursor.execute("SELECT 1 FROM public.schema_migrations WHERE version = %s", (path.name[:4],))
                if cursor.fetchone():
                    continue
                log.info("applying migration %s", path.name)
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", (f"{lock_timeout_seconds * 1000:.0f}",))
                try:
                    cursor.execute(path.read_text(encoding="utf-8"))
                except psycopg2.errors.LockNotAvailable as error:
                    raise _lock_timeout_error(dsn, f"migration {path.name}", lock_timeout_seconds) from error
                for notice in connection.notices:  # a migration's WARNINGs are for the operator
                    if notice.startswith("WARNING"):
                        log.warning("migration %s: %s", path.name, notice.strip())
                connection.notices.clear()
                cursor.execute(
                    "INSERT INTO public.schema_migrations (version, name) VALUES (%s, %s)",
                    (path.name[:4], path.name),
                )
                applied_now.append(path.name)
    finally:
        connection.close()
    return applied_now


def _applied_versions(connection) -> set[str] | None:
    """The versions in the bookkeeping table; None when there is no such table (a new database)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return None
        cursor.execute("SELECT version FROM public.schema_migrations")
        return {row[0] for row in cursor.fetchall()}


def _pending(connection, files: list[Path]) -> bool:
    """Whether some migration is not applied yet; creates the (empty) bookkeeping table if missing."""
    with connection:
        applied = _applied_versions(connection)
    if applied is not None:
        return bool({p.name[:4] for p in files} - applied)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(_CREATE_MIGRATIONS_TABLE)
    except (psycopg2.errors.UniqueViolation, psycopg2.errors.DuplicateTable, psycopg2.errors.DuplicateObject):
        pass  # created at the same moment by another process (which error depends on when it committed)
    return True


def _take_migration_lock(cursor, dsn: str, wait_seconds: float) -> None:
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", (f"{wait_seconds * 1000:.0f}",))
    try:
        cursor.execute("LOCK TABLE public.schema_migrations IN EXCLUSIVE MODE")  # SELECTs still pass
    except psycopg2.errors.LockNotAvailable as error:
        raise _lock_timeout_error(dsn, "the migration lock", wait_seconds) from error


def _lock_timeout_error(dsn: str, what: str, waited_seconds: float) -> MigrationError:
    return MigrationError(lock_wait_message(dsn, what, waited_seconds, "then run `memberflow migrate` again."))


def lock_wait_message(dsn: str | PgConnection, what: str, waited_seconds: float, then: str) -> str:
    """What to tell an operator when `what` gave up waiting for a lock: the sessions holding locks now
    (the likely culprits: a team user's idle transaction, a LOCK TABLE) and what happens `then`.

    `dsn` may be a connection (with no transaction of its own open, so its locks are not listed) when
    the DSN is not at hand: it is used for the report and left open."""
    try:
        connection = connect(dsn, "memberflow-lock-report") if isinstance(dsn, str) else dsn
        try:
            with connection.cursor() as cursor:
                cursor.execute(read_sql("postgres/lock_holders.sql"))
                holders = cursor.fetchall()
            if connection is dsn:
                connection.rollback()
        finally:
            if connection is not dsn:
                connection.close()
        sessions = "; ".join(
            f"pid {pid} user {user} ({state or 'state hidden'}"
            f"{f', transaction open since {since:%Y-%m-%d %H:%M:%S %Z}' if since else ''}"
            f"{f', application {application}' if application else ''}) on {tables}"
            for pid, user, application, state, since, tables in holders
        )
    except psycopg2.Error as error:
        sessions = f"(could not list them: {error})"
    return (
        f"{what} waited {waited_seconds:g} s for a lock and gave up; sessions holding locks in this database: "
        f"{sessions or 'none any more'}. End them (SELECT pg_terminate_backend(pid)) or let them finish, {then}"
    )


class ConnectionPool:
    """A small blocking pool of autocommit psycopg2 connections (psycopg2's own pools raise when empty).

    `synchronous_commit=False` lets a commit return before the database flushed it: faster, but a
    database or OS crash may lose the last fraction of a second of commits.
    """

    def __init__(self, dsn: str, size: int, synchronous_commit: bool = True, application_name: str = "memberflow"):
        self.dsn = dsn
        self.application_name = application_name
        self._options = "" if synchronous_commit else "-c synchronous_commit=off"
        self._idle: queue.LifoQueue[PgConnection] = queue.LifoQueue()
        self._tokens: queue.Queue[None] = queue.Queue()
        for _ in range(size):
            self._tokens.put(None)

    @contextmanager
    def connection(self) -> Iterator[PgConnection]:
        self._tokens.get()
        broken = False
        try:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                connection = None
            if connection is None:  # connected outside the except: a failure's traceback is not "during Empty"
                connection = connect(self.dsn, self.application_name, options=self._options)
                connection.autocommit = True
            try:
                yield connection
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                broken = True  # a broken connection is not handed out again
                raise
            finally:
                if broken or connection.closed:
                    connection.close()
                else:
                    self._idle.put(connection)
        finally:
            self._tokens.put(None)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()
