"""Analysts as the tests meet them: other processes that hold the warehouse open, or keep opening it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from memberflow_assets_tests.helpers import wait_until

DUCKDB_SHELL = str(Path(sys.executable).parent / "duckdb")  # the CLI installed into the venv (duckdb-cli)

# Holds one read-only connection for its whole life and answers each SQL line with a JSON line.
HOLDING_READER = """
import json, sys, duckdb
connection = duckdb.connect(sys.argv[1], read_only=True)
print(json.dumps("open"), flush=True)
for line in sys.stdin:
    try:
        print(json.dumps(connection.execute(line).fetchall(), default=str), flush=True)
    except Exception as error:
        print(json.dumps({"error": str(error)}), flush=True)
"""

# Opens a new read-only connection again and again until `stop` exists; prints what happened.
OPENING_READERS = """
import json, os, sys, duckdb
path, stop, query = sys.argv[1:4]
opened, refused = 0, []
while not os.path.exists(stop):
    try:
        with duckdb.connect(path, read_only=True) as connection:
            connection.execute(query).fetchall()
        opened += 1
    except Exception as error:
        refused.append(str(error))
print(json.dumps({"opened": opened, "refused": refused}))
"""


class HoldingReader:
    def __init__(self, process: subprocess.Popen):
        self.process = process

    def ask(self, sql: str):
        self.process.stdin.write(sql.replace("\n", " ") + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())


@contextmanager
def holding_reader(path: str) -> Iterator[HoldingReader]:
    """A process (Python DuckDB, like a notebook) that has the warehouse open read-only throughout."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDING_READER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert json.loads(process.stdout.readline()) == "open"
        yield HoldingReader(process)
    finally:
        process.stdin.close()
        process.wait(timeout=30)


@contextmanager
def holding_shell(path: str, cwd: str | None = None) -> Iterator[subprocess.Popen]:
    """The DuckDB shell (`duckdb -readonly PATH`) left open, as an analyst leaves it."""
    process = subprocess.Popen(
        [DUCKDB_SHELL, "-readonly", path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd
    )
    try:
        version = os.path.realpath(os.path.join(cwd or ".", path))
        shell = psutil.Process(process.pid)  # a Python launcher; the DuckDB binary is its child

        def opened() -> bool:
            assert process.poll() is None, "the shell exited before it opened the warehouse"
            return any(
                file.path == version for each in (shell, *shell.children(recursive=True)) for file in each.open_files()
            )

        wait_until(opened, 30, "the shell to open the warehouse", every=0.05)
        yield process
    finally:
        process.stdin.close()
        process.wait(timeout=30)


@contextmanager
def opening_readers(path: str, stop_file: Path, query: str) -> Iterator[dict]:
    """A process opening new read-only connections until the block ends; the dict gets its counts."""
    process = subprocess.Popen([sys.executable, "-c", OPENING_READERS, path, str(stop_file), query],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    counts: dict = {}
    try:
        yield counts
    finally:
        stop_file.touch()
        output, _ = process.communicate(timeout=60)
        counts.update(json.loads(output))
