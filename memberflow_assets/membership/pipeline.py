"""A readable file's records through the rules into the batch's two output files, chunk by chunk. No Dagster.

The file's lines are taken `chunk_lines` at a time. While DuckDB parses and classifies one chunk, the
chunk before it is split into its successful and unsuccessful rows, each part is appended to its file as
a row group, and the successful part is re-checked (`validation`): the single-threaded work (Parquet
writing, the checks) runs beside DuckDB's, and memory holds a few chunks instead of the whole file's rows
several times over. Both files are written under temporary names and appear only once every chunk is in
them (`Zones.writing_parquet`): a failure before then leaves neither an output file nor a temporary one
(the two are published one after the other: see docs/membership.md).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memberflow_assets.membership.reader import ApplicationFile, Records, read_records
from memberflow_assets.membership.rules import (
    INPUT_COLUMNS,
    OUTPUT_COLUMNS,
    REJECTION_REASONS,
    BirthdayVerdicts,
    classify_records,
)
from memberflow_assets.membership.validation import (
    BirthdayChecks,
    successful_rule_violations,
)
from memberflow_assets.zones import FileInfo, Zones

CHUNK_LINES = 262_144
# In both output files' footers: the SHA-256 of the content they were written from and when it landed
# (epoch seconds), so that a re-run of the same content keeps its landing time (`landing_time`).
LANDING_METADATA = b"memberflow.landing"
OUTPUTS = ("successful", "unsuccessful")
# The output columns whose values repeat: dictionary-encoded. The others (names, e-mail addresses,
# mobile numbers, IDs, row and line numbers) are mostly distinct: without a dictionary both files are
# written with ~22% less CPU and come out ~9% smaller (bench/membership.py, docs/membership.md).
DICTIONARY_COLUMNS = (
    "batch",
    "first_name",
    "last_name",
    "date_of_birth",
    "above_18",
    "is_successful",
    "rejection_reasons",
    "source_file",
    "landed_at",
)
# Row and line numbers ascend: stored as their differences, the successful file of bench/membership.py's
# 1M rows takes ~6% less CPU to write and comes out ~6% smaller than with plain values compressed.
ENCODINGS = {"row_number": "DELTA_BINARY_PACKED", "line_number": "DELTA_BINARY_PACKED"}
# The output columns whose row groups record their minimum and maximum, for readers that look rows up by
# them. Not the free text (names, e-mail addresses, mobile numbers, reasons, raw records): nobody selects
# row groups by it, its statistics cost ~10% of the writing, and they would copy personal data into each
# file's footer.
STATISTICS_COLUMNS = (
    "batch",
    "last_name",
    "date_of_birth",
    "above_18",
    "is_successful",
    "membership_id",
    "source_file",
    "row_number",
    "line_number",
    "landed_at",
)


def batch_rows(batch: str, landed: FileInfo, classified: pa.Table, row_numbers: np.ndarray | None = None) -> pa.Table:
    """The rows both output files hold: the batch, the rules' columns, then where each row came from
    (`row_numbers`: each record's row number in its file; by default 1, 2, ...)."""
    rows = classified.num_rows
    if row_numbers is None:
        row_numbers = np.arange(1, rows + 1, dtype=np.int64)
    return pa.table(
        {
            "batch": pa.repeat(pa.scalar(batch, pa.large_string()), rows),
            **{name: classified[name] for name in OUTPUT_COLUMNS},
            "source_file": pa.repeat(pa.scalar(landed.name, pa.large_string()), rows),
            "row_number": pa.array(row_numbers),
            "line_number": classified["line_number"],
            "landed_at": pa.repeat(
                pa.scalar(datetime.fromtimestamp(landed.changed_at, UTC), pa.timestamp("us", "UTC")), rows
            ),
            "raw_record": classified["raw_record"],
        }
    )


# A header-only file through the same reader, rules and batch_rows: the landed file's required columns
# (as text) and both output files' schema, as written.
_HEADER_ONLY = read_records((",".join(INPUT_COLUMNS) + "\n").encode(), "columns.csv").records
LANDED_SCHEMA = _HEADER_ONLY.select(list(INPUT_COLUMNS)).schema
OUTPUT_SCHEMA = batch_rows("", FileInfo("", 0, 0.0), classify_records(_HEADER_ONLY)).schema


def landing_time(zones: Zones, relpath: str, sha256: str, changed_at: float, now: float) -> float:
    """When a batch's file landed, which decides whose values win in sales.members: the time recorded in
    the batch's output at `relpath` when it was written from the same content, else the file's change
    time, never later than `now`. So a re-run of an older file whose time stamp changed since (a chmod, a
    copy by `cp -a` or `rsync -a`) does not make it the latest landing, nor does a time in the future."""
    try:
        recorded = json.loads((zones.parquet_footer(relpath).metadata or {}).get(LANDING_METADATA, b"{}"))
    except (FileNotFoundError, pa.ArrowInvalid, ValueError):  # no output yet, or one we cannot read
        recorded = {}
    if isinstance(recorded, dict) and recorded.get("sha256") == sha256 and isinstance(recorded.get("landed_at"), float):
        return recorded["landed_at"]
    return min(changed_at, now)


def rejection_counts(rejection_reasons: pa.ChunkedArray) -> dict[str, int]:
    """Rows per reason. Each distinct list of reasons (a few dozen at most) is counted, then split."""
    counts = dict.fromkeys(REJECTION_REASONS, 0)
    for row in pc.value_counts(rejection_reasons).to_pylist():
        for reason in (row["values"] or "").split(";"):
            if reason in counts:
                counts[reason] += row["counts"]
    return counts


def _add(totals: dict[str, int], counts: dict[str, int]) -> None:
    for key, count in counts.items():
        totals[key] = totals.get(key, 0) + count


@dataclass(frozen=True)
class StoredBatch:
    """What went into a batch's two files: counts, each file's first rows and the successful rows' checks."""

    records: int
    malformed: int
    blank_lines: int
    stored_rows: dict[str, int]  # per output, from the published file's footer
    heads: dict[str, pa.Table]  # per output, its first rows
    rejections: dict[str, int]  # unsuccessful rows per reason
    malformed_ids: int
    violations: dict[str, int]  # successful rows per rule they break ({} when there are none)


def _behind() -> None:
    """Lower this thread's priority (Linux: a thread's nice value is its own): the classification of the
    next chunk is the step's critical path, and the appending and checking beside it can wait for a core."""
    if sys.platform == "linux":
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(os.getpriority(os.PRIO_PROCESS, thread) + 5, 19))


def store_batch(
    zones: Zones,
    file: ApplicationFile,
    batch: str,
    landed: FileInfo,
    relpaths: dict[str, str],
    as_of: date,
    sha256: str,
    chunk_lines: int = CHUNK_LINES,
    head_rows: int = 5,
) -> StoredBatch:
    """Classify `file` (whose bytes' SHA-256 is `sha256`) and write its rows to `relpaths` (a zone path per
    output), `chunk_lines` lines at a time. `landed.changed_at` is the batch's landing time (`landing_time`)."""
    lines = len(file.body)
    birthdays = BirthdayVerdicts(as_of)  # shared by the chunks, which are classified one after another

    def classified(start: int) -> tuple[pa.Table, Records]:
        read = file.chunk(start, min(start + chunk_lines, lines))
        return classify_records(read.records, as_of, birthdays), read

    records = malformed = blank_lines = malformed_ids = 0
    rejections = dict.fromkeys(REJECTION_REASONS, 0)
    violations: dict[str, int] = {}
    heads = {output: OUTPUT_SCHEMA.empty_table() for output in OUTPUTS}

    births = BirthdayChecks(as_of)  # the checks' own, shared by the chunks like `birthdays`

    def check(successful: pa.Table) -> None:
        nonlocal malformed_ids
        found = successful_rule_violations(successful, as_of, births)
        malformed_ids += found.pop("membership_id_malformed", 0)  # a check of its own: membership_id_valid
        _add(violations, found)

    schema = OUTPUT_SCHEMA.with_metadata(
        {LANDING_METADATA: json.dumps({"sha256": sha256, "landed_at": landed.changed_at})}
    )
    with (
        zones.writing_parquet(
            relpaths["successful"], schema, DICTIONARY_COLUMNS, STATISTICS_COLUMNS, ENCODINGS
        ) as successful_file,
        zones.writing_parquet(
            relpaths["unsuccessful"], schema, DICTIONARY_COLUMNS, STATISTICS_COLUMNS, ENCODINGS
        ) as unsuccessful_file,
        # one thread reads and classifies ahead (with DuckDB's threads); one per file appends and one checks
        # the successful rows, behind it
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="membership-classify") as reading,
        ThreadPoolExecutor(max_workers=3, thread_name_prefix="membership-store", initializer=_behind) as pool,
    ):

        def store_unsuccessful(table: pa.Table) -> None:
            unsuccessful_file.write_table(table)
            _add(rejections, rejection_counts(table["rejection_reasons"]))

        stores: dict[str, Callable[[pa.Table], None]] = {
            "successful": successful_file.write_table,
            "unsuccessful": store_unsuccessful,
        }
        storing: list[Future] = []
        try:
            upcoming = reading.submit(classified, 0) if lines else None
            for start in range(0, lines, chunk_lines):
                table, read = upcoming.result()
                if start + chunk_lines < lines:
                    upcoming = reading.submit(classified, start + chunk_lines)
                row_numbers = np.arange(records + 1, records + 1 + table.num_rows, dtype=np.int64)
                records += table.num_rows
                malformed += int(pc.sum(table["malformed_record"]).as_py() or 0)
                blank_lines += read.blank_lines
                # split first, then add the columns that are the same in every row: they are not copied
                kinds = {"successful": table["is_successful"].to_numpy(zero_copy_only=False)}
                kinds["unsuccessful"] = ~kinds["successful"]
                parts = {
                    output: batch_rows(batch, landed, table.filter(kind), row_numbers[kind])
                    for output, kind in kinds.items()
                }
                del table, read
                for future in storing:  # the previous chunk is stored before this one is queued: memory stays bounded
                    future.result()
                storing = [pool.submit(stores[output], part) for output, part in parts.items() if part.num_rows]
                storing.append(pool.submit(check, parts["successful"]))
                for output, part in parts.items():
                    wanted = min(head_rows - heads[output].num_rows, part.num_rows)
                    if wanted > 0:  # a copy (take), so the chunk's memory is not kept for a few rows
                        heads[output] = pa.concat_tables([heads[output], part.take(np.arange(wanted))])
            for future in storing:
                future.result()
        except BaseException:
            for executor in (reading, pool):  # nothing queued starts; what runs finishes before the files close
                executor.shutdown(cancel_futures=True)
            raise
    return StoredBatch(
        records=records,
        malformed=malformed,
        blank_lines=blank_lines,
        stored_rows={output: zones.parquet_num_rows(relpath) for output, relpath in relpaths.items()},
        heads=heads,
        rejections=rejections,
        malformed_ids=malformed_ids,
        violations=violations,
    )
