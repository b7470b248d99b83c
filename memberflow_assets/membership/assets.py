"""Membership applications: landed file -> raw records -> classified rows -> output files -> members table.

The assets are thin: reading is `reader`, the rules are `rules`, the checks' second opinion is
`validation`, the chunked way from a file to its two outputs is `pipeline`, loading members is
`members_load`; this module finds the files and reports what happened to Dagster. Nothing personal
(e-mail, mobile number, birthday) goes into Dagster's metadata or logs: they stay in the zones and the
database.
"""

import dataclasses
import hashlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import dagster as dg
import pyarrow as pa
import pydantic

from memberflow_assets import column_schemas
from memberflow_assets.membership import layout
from memberflow_assets.membership.members_load import (
    COUNT_CAP,
    collision_summary,
    landed_at,
    load_batch,
    read_successful,
    verify_batch,
)
from memberflow_assets.membership.partitions import application_files
from memberflow_assets.membership.pipeline import (
    CHUNK_LINES,
    LANDED_SCHEMA,
    OUTPUT_SCHEMA,
    landing_time,
    store_batch,
)
from memberflow_assets.membership.reader import ApplicationFile, ApplicationFileError, open_file
from memberflow_assets.membership.rules import DEFAULT_AS_OF
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.zones import FileInfo, Zones

GROUP = "membership"
PREVIEW_ROWS = 5
# What a preview shows: no e-mail, mobile number or birthday (nor the birthday's hash in the membership ID),
# and every value cut short. A name field can hold any of them too (a row that lost a field, columns in
# another order): its words with an @ and its digits are masked (`_masked_text`).
PREVIEW_COLUMNS = ("row_number", "line_number", "first_name", "last_name", "membership_id", "rejection_reasons")
PREVIEW_NAME_COLUMNS = ("first_name", "last_name")
PREVIEW_CHARACTERS = 40
HEADER_COLUMNS_SHOWN = 20
COLLISION_IDS_SHOWN = 50


class ClassificationConfig(dg.Config):
    reference_date: str = DEFAULT_AS_OF.isoformat()  # applicants must be 18 or older on this date
    chunk_lines: int = CHUNK_LINES  # lines read, classified and written at a time (memory: a few chunks)

    @pydantic.field_validator("reference_date")
    @classmethod
    def _a_date(cls, value: str) -> str:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"reference_date must be a date as YYYY-MM-DD, not {value!r}") from None
        return value

    @pydantic.field_validator("chunk_lines")
    @classmethod
    def _at_least_one_line(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"chunk_lines must be at least 1, not {value}")
        return value

    @property
    def as_of(self) -> date:
        return date.fromisoformat(self.reference_date)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()#<>|!~])")


def _shorten(value: object, masked: bool = False) -> str:
    """A value as one short line of printable text (applicants control what is in their fields); `masked`:
    without what could be personal data (`_masked_text`)."""
    # cut first, so the masking's regular expression only ever reads a few hundred characters (but enough
    # that an e-mail address starting in the shown part is seen whole, @ included)
    cut = str(value)[: PREVIEW_CHARACTERS * 2 + (320 if masked else 0)]
    words = " ".join((_masked_text(cut) if masked else cut).split())
    text = "".join(character if character.isprintable() else "\ufffd" for character in words)
    return text if len(text) <= PREVIEW_CHARACTERS else text[: PREVIEW_CHARACTERS - 1] + "…"


def _markdown_row(values) -> str:
    """A Markdown table row whose cells are plain text: no links, markup or HTML from the data."""
    return "| " + " | ".join(_MARKDOWN_SPECIAL.sub(r"\\\1", _shorten(value)) for value in values) + " |"


_EMAIL_LIKE_WORD = re.compile(r"\S*@\S*")
_DIGIT = re.compile(r"\d")


def _masked_text(text: str) -> str:
    """`text` without what could be an e-mail address (a word with an @), a mobile number or a date (digits)."""
    return _DIGIT.sub("•", _EMAIL_LIKE_WORD.sub("•@•", text))


def _id_shown(membership_id: str, birthday_hidden: bool) -> str:
    """A membership ID with its last name part masked (`_masked_text`); `birthday_hidden`: without its
    birthday part too (five hex characters of the birthday's SHA-256 name the birthday itself to anyone
    who hashes the ~40,000 plausible dates) — kept where an operator needs the ID to look a collision up."""
    last_name, _, suffix = membership_id.rpartition("_")
    shown = "•" * len(suffix) if birthday_hidden else suffix
    return f"{_shorten(last_name, masked=True)}_{shown}" if last_name else shown


def _preview(table: pa.Table) -> dg.MetadataValue:
    """The first rows as a Markdown table for the Dagster UI, without personal data."""
    head = table.slice(0, PREVIEW_ROWS).select(list(PREVIEW_COLUMNS)).to_pylist()
    for row in head:
        if row["membership_id"] is not None:
            row["membership_id"] = _id_shown(row["membership_id"], birthday_hidden=True)
        for column in PREVIEW_NAME_COLUMNS:
            if row[column] is not None:
                row[column] = _shorten(row[column], masked=True)
    lines = [_markdown_row(PREVIEW_COLUMNS), _markdown_row("---" for _ in PREVIEW_COLUMNS)]
    lines += [_markdown_row("" if row[column] is None else row[column] for column in PREVIEW_COLUMNS) for row in head]
    return dg.MetadataValue.md("\n".join(lines))


def find_landed_file(zones: Zones, batch: str, source_file: str | None) -> FileInfo:
    """The one landed file whose partition key is `batch`: the file the run was requested for."""
    names = [name for name in (source_file, layout.plain_file_name(batch)) if name]
    for name in names:
        if "/" not in name and layout.batch_key(name) == batch:
            info = zones.file_info(f"{layout.LANDING_PREFIX}/{name}")
            if info is not None:
                return info
    if layout.plain_file_name(batch) is None:  # a hashed key launched without the sensor's tag
        for info in zones.list_files(layout.LANDING_PREFIX):
            if layout.is_batch_file(info.name) and layout.batch_key(info.name) == batch:
                return info
    raise dg.Failure(
        description=f"batch {batch!r}: no file for it in {layout.LANDING_PREFIX}/ any more",
        allow_retries=False,
    )


def quarantine(zones: Zones, landed: FileInfo, error: ApplicationFileError, sha256: str, run_id: str) -> str:
    """Copy a file that cannot be read to the quarantine zone, with a reason file beside it."""
    target = f"{layout.QUARANTINE_PREFIX}/{layout.quarantine_name(landed.name)}"
    zones.copy(landed.relpath, target)
    reason = {
        "file": landed.name,
        "problem": error.problem,
        "detail": error.detail,
        "sha256": sha256,
        "size_bytes": landed.size,
        "quarantined_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dagster_run_id": run_id,
    }
    zones.write_bytes(f"{target}{layout.REASON_SUFFIX}", (json.dumps(reason, indent=2) + "\n").encode())
    return target


def open_landed_file(context: dg.AssetExecutionContext, zones: Zones) -> tuple[FileInfo, str, ApplicationFile]:
    """The landed file of this partition, its SHA-256 and the file checked whole (every file-level problem
    is found before any output is written); quarantines an unreadable file."""
    landed = find_landed_file(zones, context.partition_key, context.run.tags.get(layout.SOURCE_FILE_TAG))
    data = zones.read_bytes(landed.relpath)
    with ThreadPoolExecutor(max_workers=1) as pool:  # hashing releases the GIL: it runs beside the parsing
        digest = pool.submit(lambda: hashlib.sha256(data).hexdigest())
        try:
            file = open_file(data, landed.name)
        except ApplicationFileError as error:
            target = quarantine(zones, landed, error, digest.result(), context.run.run_id)
            context.log.error(f"{error} -> quarantined to {zones.url(target)}")
            raise dg.Failure(
                description=str(error),
                metadata={
                    "file": landed.name,
                    "problem": error.problem,
                    "quarantined_to": dg.MetadataValue.path(zones.url(target)),
                },
                allow_retries=False,
            ) from error
    return landed, digest.result(), file


LANDED_COLUMNS = column_schemas.from_arrow(LANDED_SCHEMA)
OUTPUT_FILE_COLUMNS = column_schemas.from_arrow(OUTPUT_SCHEMA)


@dg.multi_asset(
    partitions_def=application_files,
    group_name=GROUP,
    specs=[
        dg.AssetSpec(
            "raw_applications",
            kinds={"csv"},
            metadata={column_schemas.COLUMN_SCHEMA: LANDED_COLUMNS},
            description="The landed file's records exactly as read (one per non-blank line after the header): "
            "every field as text. Its stored form is the landed file itself (never modified; its SHA-256 is "
            "recorded). An unreadable file is quarantined and fails its partition.",
        ),
        dg.AssetSpec(
            "classified_applications",
            deps=["raw_applications"],
            kinds={"duckdb"},
            metadata={column_schemas.COLUMN_SCHEMA: OUTPUT_FILE_COLUMNS},
            description="Every application with the rules applied (classify_applications) and its batch; "
            "stored as the union of the successful and unsuccessful files.",
        ),
        dg.AssetSpec(
            "successful_applications",
            deps=["classified_applications"],
            kinds={"parquet"},
            metadata={column_schemas.COLUMN_SCHEMA: OUTPUT_FILE_COLUMNS},
            description="`members/successful/<batch>.parquet`: applicants that passed every rule.",
        ),
        dg.AssetSpec(
            "unsuccessful_applications",
            deps=["classified_applications"],
            kinds={"parquet"},
            metadata={column_schemas.COLUMN_SCHEMA: OUTPUT_FILE_COLUMNS},
            description="`members/unsuccessful/<batch>.parquet`: the others, with rejection_reasons.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "rows_conserved",
            asset="classified_applications",
            blocking=True,
            description="Lines after the header, counted in the file's bytes = rows in the successful file + rows "
            "in the unsuccessful file + blank lines: no record dropped or merged into another.",
        ),
        dg.AssetCheckSpec(
            "membership_id_valid",
            asset="successful_applications",
            blocking=True,
            description="Every membership_id has the format `<last_name>_<5 hex>` (IDs shared by different "
            "people, across batches, are the members check membership_id_collisions).",
        ),
        dg.AssetCheckSpec(
            "successful_rows_satisfy_rules",
            asset="successful_applications",
            blocking=True,
            description="Each successful row re-checked against every rule, independently of the SQL.",
        ),
    ],
)
def application_batch(context: dg.AssetExecutionContext, config: ClassificationConfig, zones: dg.ResourceParam[Zones]):
    """One landed file, read -> classified -> stored, in one step: the intermediate data never needs a
    copy of its own (raw = the landed file, classified = the two output files)."""
    batch = context.partition_key
    landed, sha256, file = open_landed_file(context, zones)
    relpaths = {
        "successful": f"{layout.SUCCESSFUL_PREFIX}/{batch}.parquet",
        "unsuccessful": f"{layout.UNSUCCESSFUL_PREFIX}/{batch}.parquet",
    }
    landing = landing_time(zones, relpaths["successful"], sha256, landed.changed_at, time.time())
    stored = store_batch(
        zones,
        file,
        batch,
        dataclasses.replace(landed, changed_at=landing),
        relpaths,
        config.as_of,
        sha256,
        chunk_lines=config.chunk_lines,
        head_rows=PREVIEW_ROWS,
    )
    context.log.info(f"read {stored.records} records ({stored.malformed} malformed) from {zones.url(landed.relpath)}")
    yield dg.MaterializeResult(
        asset_key="raw_applications",
        metadata={
            "source": dg.MetadataValue.path(zones.url(landed.relpath)),
            "sha256": sha256,
            "size_bytes": landed.size,
            "rows": stored.records,
            "header_line": file.header_line,
            "blank_lines": stored.blank_lines,
            "malformed_records": stored.malformed,
            "columns": ", ".join(_shorten(column, masked=True) for column in file.columns[:HEADER_COLUMNS_SHOWN])
            + (
                f" (+{len(file.columns) - HEADER_COLUMNS_SHOWN} more)"
                if len(file.columns) > HEADER_COLUMNS_SHOWN
                else ""
            ),
        },
    )

    rows = stored.records
    successful = stored.stored_rows["successful"]
    yield dg.MaterializeResult(
        asset_key="classified_applications",
        metadata={
            "rows": rows,
            "successful": successful,
            "unsuccessful": rows - successful,
            "success_rate": round(successful / rows, 4) if rows else 0.0,
            "rejections_by_reason": dg.MetadataValue.json(stored.rejections),
            "reference_date": config.reference_date,
        },
    )
    for output, relpath in relpaths.items():
        yield dg.MaterializeResult(
            asset_key=f"{output}_applications",
            metadata={
                "path": dg.MetadataValue.path(zones.url(relpath)),
                "rows": stored.stored_rows[output],
                "preview": _preview(stored.heads[output]),
            },
        )

    # Lines are counted in the file's bytes, not by the parser: a parser that merged records would fail.
    rows_stored = sum(stored.stored_rows.values())
    read_lines, blank_lines = file.lines_after_header, stored.blank_lines
    yield dg.AssetCheckResult(
        check_name="rows_conserved",
        asset_key="classified_applications",
        passed=read_lines == rows_stored + blank_lines,
        metadata={
            "lines_after_header": read_lines,
            "blank_lines": blank_lines,
            "rows_stored": rows_stored,
            **{f"{output}_applications": count for output, count in stored.stored_rows.items()},
        },
    )

    yield dg.AssetCheckResult(
        check_name="membership_id_valid",
        asset_key="successful_applications",
        passed=stored.malformed_ids == 0,
        metadata={"malformed_ids": stored.malformed_ids},
    )

    yield dg.AssetCheckResult(
        check_name="successful_rows_satisfy_rules",
        asset_key="successful_applications",
        passed=not any(stored.violations.values()),
        metadata={"rows_checked": successful, "violations": dg.MetadataValue.json(stored.violations)},
    )


@dg.asset(
    partitions_def=application_files,
    deps=["successful_applications"],
    group_name=GROUP,
    kinds={"postgres"},
    metadata={column_schemas.COLUMN_SCHEMA: column_schemas.MEMBERS_TABLE},
    description="sales.members: the batch's successful applicants loaded (only this batch's rows are read). "
    "One row per membership_id; the values of the latest-landed file win; an applicant whose ID another "
    "person holds goes to sales.membership_id_collisions instead.",
    check_specs=[
        dg.AssetCheckSpec(
            "members_match_batch",
            asset="members",
            blocking=True,
            description="Every successful applicant of the batch is a member with their values (unless a file "
            "that landed later updated them), or is recorded as a membership ID collision.",
        ),
        dg.AssetCheckSpec(
            "membership_id_collisions",
            asset="members",
            description="Warns while any membership ID is wanted by two different people (across all batches): "
            "the later applicants are in sales.membership_id_collisions, not in sales.members.",
        ),
    ],
)
def members(context: dg.AssetExecutionContext, zones: dg.ResourceParam[Zones], sales_db: SalesDatabase):
    batch = context.partition_key
    successful = read_successful(zones, batch)
    landed = landed_at(successful)
    with sales_db.connect() as connection:
        loaded = load_batch(connection, batch, successful, landed)
        verification = verify_batch(connection, batch, landed)
        colliding_applicants, colliding_ids, sample = collision_summary(connection, COLLISION_IDS_SHOWN)
    context.log.info(
        f"members: {loaded.inserted} inserted, {loaded.updated} updated, {loaded.collisions} membership ID "
        f"collision(s) recorded, from {loaded.applicants} successful applicant(s)"
    )
    yield dg.MaterializeResult(
        metadata={
            "applicants": loaded.applicants,
            "inserted": loaded.inserted,
            "updated": loaded.updated,
            "collisions": loaded.collisions,
        }
    )
    yield dg.AssetCheckResult(
        check_name="members_match_batch",
        passed=verification.passed,
        metadata={
            "missing_in_table": verification.missing,
            "different_in_table": verification.different,
            "collisions_not_recorded": verification.unrecorded_collisions,
        },
    )
    yield dg.AssetCheckResult(
        check_name="membership_id_collisions",
        passed=colliding_applicants == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "colliding_ids": colliding_ids,
            "applicants_not_loaded": colliding_applicants,
            "this_batch": loaded.collisions,
            "counted_up_to": COUNT_CAP,
            "ids": ", ".join(_id_shown(membership_id, birthday_hidden=False) for membership_id in sample)
            + (" ..." if colliding_ids > len(sample) else ""),
            "table": "sales.membership_id_collisions",
        },
    )
