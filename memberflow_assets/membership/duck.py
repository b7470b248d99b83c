"""The process's DuckDB for the membership code. No Dagster.

Opening a DuckDB database costs ~100 ms (it starts its thread pool); a cursor on an open one costs
~0.1 ms. Every caller gets its own cursor (a connection of its own: registrations and temporary
macros stay private, threads never share one) on one in-memory database per process.
"""

from __future__ import annotations

import functools
import math
import os

import duckdb
import pyarrow as pa


@functools.cache
def _database(pid: int) -> duckdb.DuckDBPyConnection:  # per process: a forked child opens its own
    return duckdb.connect()


def connect() -> duckdb.DuckDBPyConnection:
    """A new connection (cursor) to the process's in-memory DuckDB; close it when done."""
    connection = _database(os.getpid()).cursor()
    connection.execute("SET enable_progress_bar = false")
    return connection


def split_for_threads(table: pa.Table) -> pa.Table:
    """`table` in one record batch per DuckDB thread, so that every thread scans a share of it. A scan of
    an Arrow table gives each thread a whole batch of up to 131,072 rows (pyarrow's scanner default): a
    table of fewer rows in one batch (a file's 100,000 distinct birthdays) is otherwise scanned by one."""
    threads = _database(os.getpid()).execute("SELECT current_setting('threads')").fetchone()[0]
    rows_per_thread = max(math.ceil(table.num_rows / threads), 1)
    return pa.Table.from_batches(table.to_batches(max_chunksize=rows_per_thread), table.schema)
