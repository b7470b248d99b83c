"""The analysts' notebook app's access to the warehouse: read-only, sandboxed, always the newest version.
No Dagster, no marimo (the notebook, analytics/warehouse.py, only draws what this returns).

The app serves many analysts from one process, and one of its cells runs the SQL an analyst types. So
the connection is more than read-only: the cell runs one SELECT (or EXPLAIN) statement and nothing
else (no COPY, ATTACH, SET, CREATE, PRAGMA, ...); DuckDB's file access is switched off except for the
image metadata the views read (a query cannot read other files, e.g. the zones' personal data or the
process's environment), and the configuration is locked so SQL cannot switch it back; memory and
threads are capped, a query is interrupted after `query_timeout` seconds, and at most `max_rows` rows
of a result are fetched.

`AnalystWarehouse.current()` follows the published versions: when a newer one is published it opens
that one (by its own file name: see versions.open_published) and closes the old connection.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass

import duckdb
import pandas as pd

from memberflow_assets.images.layout import METADATA_PREFIX
from memberflow_assets.settings import SQL_DIR, Settings
from memberflow_assets.warehouse import versions
from memberflow_assets.zones import Zones

CHART_QUERIES = SQL_DIR / "analyst" / "notebook"  # one .sql file per chart of the app
ALLOWED_STATEMENTS = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
SAMPLE_QUERIES = SQL_DIR / "analyst"  # the sample analyst queries, offered in the SQL cell
log = logging.getLogger("memberflow.analytics")
CHART_CACHE_SECONDS = 30.0
_chart_cache: dict[tuple[str, str], tuple[float, pd.DataFrame]] = {}  # (version, chart) -> (when, result)
_chart_cache_lock = threading.Lock()


@dataclass(frozen=True)
class QueryResult:
    frame: pd.DataFrame | None
    truncated: bool = False  # more rows than max_rows: only the first max_rows were fetched
    seconds: float = 0.0
    error: str | None = None


def sample_queries() -> dict[str, str]:
    """File name -> SQL of the sample analyst queries (sql/analyst/*.sql)."""
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(SAMPLE_QUERIES.glob("*.sql"))}


class AnalystWarehouse:
    def __init__(
        self,
        warehouse_path: str,
        zones: Zones | None = None,
        memory_limit: str = "2GB",
        threads: int = 2,
        query_timeout: float = 60.0,
        max_rows: int = 1000,
    ):
        self.warehouse_path = warehouse_path
        self.zones = zones
        self.query_timeout = query_timeout
        self.max_rows = max_rows
        # Every connection of the process shares one DuckDB database per version file and must ask for
        # the same configuration; spills go to a local folder (the warehouse may be a read-only mount).
        self.config = {
            "memory_limit": memory_limit,
            "threads": threads,
            "temp_directory": os.path.join(tempfile.gettempdir(), "memberflow-analyst-spill"),
        }
        self.version: str | None = None
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> AnalystWarehouse:
        return cls(Settings.from_env().warehouse, Zones.from_settings())

    def _allowed_directories(self) -> list[str]:
        """What SQL may read besides the database: the image metadata files the image views read."""
        if self.zones is None:
            return []
        return [self.zones.url(METADATA_PREFIX).rstrip("/") + "/"]

    def _open(self, version: str) -> duckdb.DuckDBPyConnection:
        connection = (self.zones.duckdb_connect if self.zones else duckdb.connect)(
            version, read_only=True, config=self.config
        )
        # The database may already be sandboxed by another session of this process (settings are
        # per database, and locked ones cannot be set again).
        if not connection.execute("SELECT current_setting('lock_configuration')").fetchone()[0]:
            connection.execute("SET GLOBAL TimeZone = 'UTC'")
            connection.execute("SET allowed_directories = $dirs", {"dirs": self._allowed_directories()})
            connection.execute("SET enable_external_access = false")
            connection.execute("SET lock_configuration = true")
        return connection

    def current(self) -> str | None:
        """The version in use after switching to a newer published one, if any (None: none published).

        A newer version that cannot be opened is not switched to: the app keeps showing the one it has.
        """
        with self._lock:
            newest = versions.current_version(self.warehouse_path)
            if newest is not None and newest != self.version:
                try:
                    connection = self._open(newest)
                except duckdb.Error:
                    if self._connection is None:
                        raise
                    log.exception("cannot open the warehouse version %s; staying on %s", newest, self.version)
                    return self.version
                if self._connection is not None:
                    self._connection.close()
                self._connection, self.version = connection, newest
            return self.version

    def published_at(self) -> str | None:
        """When the version in use was published (UTC, from its name), for the app's header."""
        if self.version is None:
            return None
        micros = int(os.path.basename(self.version).split("-", 1)[0])
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(micros / 1_000_000))

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self.current() is None:
            raise FileNotFoundError(f"no warehouse published at {self.warehouse_path} yet")
        return self._connection.cursor()

    def chart_data(self, name: str) -> pd.DataFrame:
        """The result of sql/analyst/notebook/<name>.sql (small: every chart query aggregates).

        Shared by every session of the process for CHART_CACHE_SECONDS per version: a version never
        changes, only the image metadata files its views read do, so an analyst opening the app sees
        charts at most that old instead of waiting for the queries again.
        """
        cursor = self._cursor()
        key, now = (self.version, name), time.monotonic()
        with _chart_cache_lock:
            cached = _chart_cache.get(key)
            if cached is not None and now - cached[0] < CHART_CACHE_SECONDS:
                cursor.close()
                return cached[1]
        with cursor:
            frame = cursor.execute((CHART_QUERIES / f"{name}.sql").read_text(encoding="utf-8")).df()
        with _chart_cache_lock:
            for stale in [other for other in _chart_cache if other[0] != self.version]:
                del _chart_cache[stale]  # only the versions in use are kept
            _chart_cache[key] = (now, frame)
        return frame

    def run(self, sql: str) -> QueryResult:
        """Run an analyst's SQL: the first max_rows rows, or the error (never an exception)."""
        if not sql.strip():
            return QueryResult(None, error="no query")
        started = time.monotonic()
        try:
            cursor = self._cursor()
        except (FileNotFoundError, duckdb.Error) as error:
            return QueryResult(None, error=str(error))
        timer = threading.Timer(self.query_timeout, cursor.interrupt)
        timer.start()
        try:
            statements = cursor.extract_statements(sql)
            if len(statements) != 1 or statements[0].type not in ALLOWED_STATEMENTS:
                return QueryResult(None, error="the SQL cell runs one SELECT (or EXPLAIN) statement, nothing else")
            cursor.execute(sql)
            if cursor.description is None:
                return QueryResult(pd.DataFrame(), seconds=time.monotonic() - started)
            columns = [column[0] for column in cursor.description]
            rows = cursor.fetchmany(self.max_rows + 1)
            frame = pd.DataFrame(rows[: self.max_rows], columns=columns)
            return QueryResult(frame, truncated=len(rows) > self.max_rows, seconds=time.monotonic() - started)
        except duckdb.InterruptException:
            return QueryResult(None, error=f"stopped after {self.query_timeout:g} s (the app's time limit per query)")
        except duckdb.Error as error:
            return QueryResult(None, error=str(error))
        finally:
            timer.cancel()
            cursor.close()
