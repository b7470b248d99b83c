"""Reading a landed applications file into text columns, with clear errors for files that are not one.

Plain code, no Dagster. A file-level problem raises `ApplicationFileError` (the whole file is
quarantined); a row-level problem (too few fields, garbage values) never does — the row is read with
empty fields and the rules reject it with reasons.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from memberflow_assets.frames import arrow_to_pandas
from memberflow_assets.membership.rules import INPUT_COLUMNS

PROVENANCE_COLUMNS = ("source_file", "row_number")


class ApplicationFileError(ValueError):
    """A landed file that cannot be read as membership applications."""

    def __init__(self, source_file: str, problem: str, detail: str):
        self.source_file = source_file
        self.problem = problem  # a short code: empty_file, not_utf8, not_csv, missing_columns
        self.detail = detail
        super().__init__(f"{source_file}: {problem}: {detail}")


def check_content(source_file: str, head: bytes, size: int) -> None:
    """Refuse, before parsing, what is evidently not a text CSV (empty, binary)."""
    if size == 0 or not head.strip():
        raise ApplicationFileError(source_file, "empty_file", "the file has no content")
    if b"\x00" in head:
        raise ApplicationFileError(source_file, "not_csv", "the file contains NUL bytes: it is binary, not CSV")


def read_applications(local_path: str, source_file: str) -> pd.DataFrame:
    """The applications in a CSV file, every field as text (never null), in file order.

    Columns: the required `INPUT_COLUMNS` (header names matched case- and space-insensitively),
    any extra columns as they were named, then `source_file` and `row_number` (1-based, header
    excluded). Handles a UTF-8 BOM, CRLF line ends, quoted fields with commas and short rows.
    """
    with open(local_path, "rb") as handle:
        head = handle.read(65536)
        size = handle.seek(0, 2)
    check_content(source_file, head, size)

    with duckdb.connect() as connection:
        connection.execute("SET enable_progress_bar = false")
        try:
            relation = connection.read_csv(
                local_path,
                header=True,
                all_varchar=True,
                delimiter=",",
                quotechar='"',
                escapechar='"',
                null_padding=True,  # a short row is read with empty fields and rejected by the rules
                strict_mode=False,
                encoding="utf-8",
            )
            canonical = {str(column).strip().lower(): column for column in relation.columns}
            missing = [column for column in INPUT_COLUMNS if column not in canonical]
            if missing:
                found = ", ".join(str(column) for column in relation.columns[:10])
                raise ApplicationFileError(
                    source_file,
                    "missing_columns",
                    f"required column(s) {', '.join(missing)} not in the header (found: {found})",
                )
            required = {canonical[column] for column in INPUT_COLUMNS}
            extra = [column for column in relation.columns if column not in required]
            # Every field as text, never null; extra columns keep their names unless they would clash.
            projection = [f"coalesce({_quote(canonical[column])}, '') AS {column}" for column in INPUT_COLUMNS] + [
                f"coalesce({_quote(column)}, '') AS {_quote(_extra_name(column))}" for column in extra
            ]
            table = relation.select(", ".join(projection)).to_arrow_table()
        except duckdb.Error as error:
            message = str(error)
            problem = "not_utf8" if "not utf-8 encoded" in message else "not_csv"
            first_line = message.strip().splitlines()[0] if message.strip() else type(error).__name__
            raise ApplicationFileError(source_file, problem, first_line) from error

    frame = arrow_to_pandas(table)
    frame["source_file"] = source_file
    frame["row_number"] = np.arange(1, len(frame) + 1)
    return frame


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _extra_name(column: str) -> str:
    return f"extra_{column}" if column.strip().lower() in (*INPUT_COLUMNS, *PROVENANCE_COLUMNS) else column
