"""The analysts' notebook app's access to the warehouse: read-only, sandboxed, always the newest version.
No Dagster, no marimo (the notebook, analytics/warehouse.py, only shows what this returns: query results
and the charts, drawn here once per change of the data for every session).

The app serves many analysts from one process, and one of its cells runs the SQL an analyst types. So
the connection is more than read-only: the cell runs one SELECT statement (or an EXPLAIN of one) and
nothing else (no COPY, ATTACH, SET, CREATE, PRAGMA, ...); DuckDB's file access is switched off except for the
image metadata the views read (a query cannot read other files, e.g. the zones' personal data or the
process's environment), and the configuration is locked so SQL cannot switch it back; memory and
threads are capped, a query is interrupted after `query_timeout` seconds, and at most `max_rows` rows
of a result are fetched.

`AnalystWarehouse.current()` follows the published versions: when a newer one is published it opens
that one (by its own file name: see versions.open_published) and closes the old connection.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass

import duckdb
import pandas as pd

from memberflow_assets.images.layout import METADATA_PREFIX
from memberflow_assets.settings import SQL_DIR, Settings
from memberflow_assets.warehouse import charts, versions
from memberflow_assets.zones import Zones

CHART_QUERIES = SQL_DIR / "analyst" / "notebook"  # one .sql file per chart of the app
SAMPLE_QUERIES = SQL_DIR / "analyst"  # the sample analyst queries, offered in the SQL cell
log = logging.getLogger("memberflow.analytics")
CHART_RETRY_SECONDS = 30.0
_drawn: dict[tuple, tuple[float, dict[str, DrawnChart]]] = {}  # data -> (good until, charts), see charts()
_drawing = threading.Lock()


@dataclass(frozen=True)
class DrawnChart:
    name: str
    svg: str | None = None  # the chart as an <svg> element
    error: str | None = None  # why it could not be drawn


@dataclass(frozen=True)
class QueryResult:
    frame: pd.DataFrame | None
    truncated: bool = False  # more rows than max_rows: only the first max_rows were fetched
    seconds: float = 0.0
    error: str | None = None


def explained_statement(sql: str) -> str:
    """The statement an EXPLAIN [ANALYZE] [(options)] statement wraps, found with DuckDB's own tokenizer
    (so comments anywhere are skipped)."""
    spans = duckdb.tokenize(sql)
    ends = [start for start, _ in spans[1:]] + [len(sql)]
    tokens = [
        (start, sql[start:end].strip().lower(), kind)
        for (start, kind), end in zip(spans, ends, strict=True)
        if kind != duckdb.token_type.comment
    ]
    position = 1  # tokens[0] is EXPLAIN
    if position < len(tokens) and tokens[position][1] in ("analyze", "analyse"):
        position += 1
    if position < len(tokens) and tokens[position][1].startswith("("):  # options: skip to their ")"
        depth = 0
        while position < len(tokens):
            _, text, kind = tokens[position]
            position += 1
            if kind == duckdb.token_type.operator:
                depth += text.count("(") - text.count(")")
                if depth <= 0:
                    break
    return sql[tokens[position][0] :] if position < len(tokens) else ""


def is_select(cursor: duckdb.DuckDBPyConnection, sql: str) -> bool:
    """Whether `sql` is one SELECT statement, or an EXPLAIN of one. EXPLAIN ANALYZE runs the statement
    it wraps, so `EXPLAIN ANALYZE CREATE TEMP TABLE ...` or `... SET VARIABLE ...` would otherwise pass."""
    statements = cursor.extract_statements(sql)
    if len(statements) != 1:
        return False
    if statements[0].type == duckdb.StatementType.EXPLAIN:
        return is_select(cursor, explained_statement(statements[0].query))
    return statements[0].type == duckdb.StatementType.SELECT


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
        """The result of sql/analyst/notebook/<name>.sql (small: every chart query aggregates)."""
        with self._cursor() as cursor:
            return cursor.execute((CHART_QUERIES / f"{name}.sql").read_text(encoding="utf-8")).df()

    def _image_files(self) -> tuple | None:
        """The image metadata files the image views read, as they are now (None: they cannot be listed)."""
        if self.zones is None:
            return ()
        try:
            files = self.zones.list_files(METADATA_PREFIX)
        except OSError:
            log.exception("cannot list the image metadata files")
            return None
        return tuple(sorted((file.relpath, file.size, file.changed_at) for file in files))

    def drawn_charts(self) -> dict[str, DrawnChart]:
        """Every chart of the app (charts.CHARTS), drawn: shared by all sessions of the process until the data
        changes, so an analyst opening the app waits for neither the queries nor the drawing.

        The data is the version in use (it never changes) and the image metadata files its image views
        read (written whole, so a new, replaced or purged hour changes their listing). A chart that failed
        is drawn again after CHART_RETRY_SECONDS: the cause may have passed. Sessions asking while the
        charts are being drawn wait for that drawing instead of starting their own.
        """
        if self.current() is None:
            raise FileNotFoundError(f"no warehouse published at {self.warehouse_path} yet")
        image_files = self._image_files()
        key = (self.version, image_files)
        with _drawing:
            cached = _drawn.get(key)
            if cached is not None and time.monotonic() < cached[0]:
                return cached[1]
            drawn = {name: self._draw(name) for name in charts.CHARTS}
            complete = image_files is not None and all(chart.error is None for chart in drawn.values())
            _drawn.clear()  # only the data in use is kept
            _drawn[key] = (math.inf if complete else time.monotonic() + CHART_RETRY_SECONDS, drawn)
        return drawn

    def _draw(self, name: str) -> DrawnChart:
        try:
            return DrawnChart(name, svg=charts.svg(name, self.chart_data(name)))
        except Exception as error:  # one failing chart never takes the others down
            log.warning("chart %s could not be drawn: %s", name, error)
            return DrawnChart(name, error=str(error))

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
            if not is_select(cursor, sql):
                return QueryResult(
                    None, error="the SQL cell runs one SELECT statement (or an EXPLAIN of one), nothing else"
                )
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


def keep_charts_drawn(every: float, stop: threading.Event) -> None:
    """Draws the charts whenever the data changes (checked `every` seconds) until `stop` is set, so that
    even the first analyst after a new version or a new hour of images finds them drawn.

    Checking costs a look at the published version and a listing of the image metadata files; the
    queries and the drawing run only when one of them changed.
    """
    warehouse = AnalystWarehouse.from_settings()
    while True:
        try:
            if warehouse.current() is not None:
                warehouse.drawn_charts()
        except Exception:  # the app keeps serving; the next check tries again
            log.exception("drawing the charts ahead of the analysts failed")
        if stop.wait(every):
            return
