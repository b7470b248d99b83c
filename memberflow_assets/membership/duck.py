"""The process's DuckDB for the membership code. No Dagster.

Opening a DuckDB database costs ~100 ms (it starts its thread pool); a cursor on an open one costs
~0.1 ms. Every caller gets its own cursor (a connection of its own: registrations and temporary
macros stay private, threads never share one) on one in-memory database per process.
"""

from __future__ import annotations

import functools
import os

import duckdb


@functools.cache
def _database(pid: int) -> duckdb.DuckDBPyConnection:  # per process: a forked child opens its own
    return duckdb.connect()


def connect() -> duckdb.DuckDBPyConnection:
    """A new connection (cursor) to the process's in-memory DuckDB; close it when done."""
    connection = _database(os.getpid()).cursor()
    connection.execute("SET enable_progress_bar = false")
    return connection
