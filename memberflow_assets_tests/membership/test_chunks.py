"""A file is read, classified and written a chunk of lines at a time (membership/pipeline.py): through the
public job with a small chunk size, the outputs must be those of one chunk, and a failure in any chunk must
publish nothing."""

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from memberflow_assets.membership.layout import SOURCE_FILE_TAG, batch_key
from memberflow_assets_tests.helpers import (
    HEADER,
    check_results,
    land,
    materialized_metadata,
    read_output,
    read_reason,
    run_partition,
)

# 17 lines after the header: good and bad rows on both sides of every boundary of 4-line chunks
# (after lines 5, 9, 13, 17), blank lines among them, one chunk (lines 10-13) without a single record.
LINES = [
    "Ann Lee,ann@mail.net,1985-02-03,81234567",  # line 2
    '"Unclosed Quote,q@example.com,1980-01-01,81234567',
    "Bob Tan,bob@example.com,1970-01-01,91234567",
    "Kid Young,kid@example.com,2010-01-01,81234567",  # line 5: under 18, the last line of the first chunk
    "Cat Ng,cat@example.com,1990-01-01,81234567",  # line 6: the first of the second chunk
    "",
    "Nul\x00 Byte,nul@example.com,1980-01-01,81234567",
    "Dee Ong,dee@example.com,1991-02-03,81234567",  # line 9
    "",
    "  \t",
    "",
    "",  # line 13
    "Short Row,short@example.com",  # line 14
    "Eve Lim,eve@example.com,1992-03-04,8123 4567",
    "Fay Ong,fay@example.com,1993-04-05,81234567",
    "Gus Tan,not-an-email,1994-05-06,81234567",  # line 17
    "Hal Lee,hal@example.net,1995-06-07,91234567",  # line 18: a chunk of its own
]
CONTENT = HEADER + "\n" + "\n".join(LINES) + "\n"
EXPECTED = {  # line: (row_number, rejection_reasons)
    2: (1, ""),
    3: (2, "malformed_record"),
    4: (3, ""),
    5: (4, "under_18"),
    6: (5, ""),
    8: (6, "control_characters"),
    9: (7, ""),
    14: (8, "invalid_date_of_birth;invalid_mobile_no;malformed_record"),
    15: (9, ""),
    16: (10, ""),
    17: (11, "invalid_email"),
    18: (12, ""),
}


def run_chunked(instance: dg.DagsterInstance, name: str, chunk_lines: int | None) -> dg.ExecuteInProcessResult:
    """The file's batch as the sensor runs it, `chunk_lines` lines at a time (None: the default)."""
    config = {} if chunk_lines is None else {"chunk_lines": chunk_lines}
    return run_partition(
        instance,
        "membership_batch",
        batch_key(name),
        tags={SOURCE_FILE_TAG: name},
        run_config={"ops": {"application_batch": {"config": config}}},
    )


def outputs(zones, batch: str) -> dict:
    return {kind: zones.read_parquet(f"members/{kind}/{batch}.parquet") for kind in ("successful", "unsuccessful")}


def observed(result: dg.ExecuteInProcessResult) -> dict:
    """What the run told Dagster: every asset's metadata but the paths, and every check's outcome."""
    assets = ("raw_applications", "classified_applications", "successful_applications", "unsuccessful_applications")
    metadata = {asset: materialized_metadata(result, asset) for asset in assets}
    for values in metadata.values():
        values.pop("path", None)
        values.pop("source", None)
    checks = {e.check_name: (e.passed, dict(e.metadata)) for e in result.get_asset_check_evaluations()}
    return {"metadata": metadata, "checks": checks}


def output_bytes(zones, kind: str, batch: str) -> bytes:
    return Path(zones.path(f"members/{kind}/{batch}.parquet")).read_bytes()


def temporary_files(data_dir: Path) -> list[Path]:
    return [path for path in data_dir.rglob("*") if path.is_file() and ".tmp" in path.parts]


@pytest.mark.parametrize("chunk_lines", [1, 4])
def test_chunks_give_the_rows_and_metadata_of_one_chunk(instance, zones, memberflow_env, pg_dsn, chunk_lines):
    land(zones, "chunked.csv", CONTENT)
    whole = run_chunked(instance, "chunked.csv", None)  # 18 lines: one chunk
    whole_outputs = outputs(zones, "chunked")

    chunked = run_chunked(instance, "chunked.csv", chunk_lines)

    assert whole.success and chunked.success
    assert all(check_results(chunked).values())
    chunked_outputs = outputs(zones, "chunked")
    for kind, table in chunked_outputs.items():
        assert table.equals(whole_outputs[kind]), kind  # the same rows in the same order, the same schema
        row_groups = pq.ParquetFile(zones.path(f"members/{kind}/chunked.parquet")).metadata.num_row_groups
        chunks = {(line - 2) // chunk_lines for line in table["line_number"].to_pylist()}
        assert row_groups == len(chunks)  # one per chunk with rows of this kind
    assert observed(chunked) == observed(whole)  # counts, previews, check results

    rows = {}
    for table in chunked_outputs.values():
        for row in table.select(["line_number", "row_number", "rejection_reasons"]).to_pylist():
            rows[row["line_number"]] = (row["row_number"], row["rejection_reasons"] or "")
    assert rows == EXPECTED  # row numbers run on across chunks; every bad row has its own reasons
    assert materialized_metadata(chunked, "raw_applications")["blank_lines"] == 5
    assert not temporary_files(memberflow_env)


def test_footers_hold_no_personal_data_but_keep_the_lookup_statistics(instance, zones, pg_dsn):
    """Row group statistics (minimum and maximum) for the columns rows are looked up by, none for the free
    text: a footer must not copy an e-mail address or a mobile number out of the rows."""
    land(zones, "footers.csv", CONTENT)
    assert run_chunked(instance, "footers.csv", 4).success
    for kind in ("successful", "unsuccessful"):
        metadata = pq.ParquetFile(zones.path(f"members/{kind}/footers.parquet")).metadata
        for group in range(metadata.num_row_groups):
            columns = {
                metadata.schema.column(index).name: metadata.row_group(group).column(index)
                for index in range(metadata.num_columns)
            }
            for name in ("name", "first_name", "email", "mobile_no", "rejection_reasons", "raw_record"):
                assert not columns[name].is_stats_set, (kind, name)
            for name in ("batch", "row_number", "line_number", "landed_at"):
                assert columns[name].is_stats_set and columns[name].statistics.has_min_max, (kind, name)


@pytest.fixture
def published(instance, zones, pg_dsn):
    """A batch whose outputs are published from an earlier version of its file."""
    land(zones, "again.csv", CONTENT)
    assert run_chunked(instance, "again.csv", 4).success
    return {kind: output_bytes(zones, kind, "again") for kind in ("successful", "unsuccessful")}


def test_a_file_level_error_in_a_new_version_publishes_nothing(instance, zones, memberflow_env, published):
    latin1_header = (CONTENT.replace(HEADER, HEADER + ",pr\xe9nom", 1).replace("\x00", "")).encode("latin-1")
    land(zones, "again.csv", latin1_header)

    result = run_chunked(instance, "again.csv", 4)

    assert not result.success
    reason = read_reason(memberflow_env, "again.csv")
    assert reason["problem"] == "not_utf8" and "line 1 (the header)" in reason["detail"]
    for kind, content in published.items():  # the earlier outputs stay as they were
        assert output_bytes(zones, kind, "again") == content
    assert not temporary_files(memberflow_env)


@pytest.mark.parametrize("chunk_lines", [1, 4])
def test_lines_that_are_not_utf8_are_rows_of_their_own_in_any_chunk(instance, zones, pg_dsn, chunk_lines):
    late = "Jos\xe9 Lee,jose@example.com,1990-01-01,91234567\nAnn Tan,ann@example.com,1990-01-01,91234567\n\xff\n"
    land(zones, "latin1.csv", (CONTENT + late).encode("latin-1"))  # with the NUL of line 8 as well
    whole = run_chunked(instance, "latin1.csv", None)
    whole_outputs = outputs(zones, "latin1")

    chunked = run_chunked(instance, "latin1.csv", chunk_lines)

    assert whole.success and chunked.success and all(check_results(chunked).values())
    for kind, table in outputs(zones, "latin1").items():
        assert table.equals(whole_outputs[kind]), kind
    unsuccessful = whole_outputs["unsuccessful"].to_pandas().set_index("line_number")
    assert unsuccessful.loc[19, "raw_record"] == "Jos\\xe9 Lee,jose@example.com,1990-01-01,91234567"
    assert unsuccessful.loc[21, "raw_record"] == "\\xff"
    assert 20 in set(whole_outputs["successful"]["line_number"].to_pylist())


def test_a_write_failure_mid_way_publishes_nothing(instance, zones, memberflow_env, published, monkeypatch):
    real_write = pq.ParquetWriter.write_table
    calls = []

    def failing_write(writer, table, *args, **kwargs):
        calls.append(table.num_rows)
        if len(calls) == 5:  # the first write of lines 14-17: two chunks of rows are in the files already
            raise OSError("No space left on device")
        return real_write(writer, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing_write)
    land(zones, "again.csv", CONTENT.replace("Ann Lee", "Ann Leigh"))

    result = run_chunked(instance, "again.csv", 4)

    assert not result.success and len(calls) >= 5
    failure = next(event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "No space left on device" in failure.step_failure_data.error.cause.message
    for kind, content in published.items():  # neither file replaced, not even the one written first
        assert output_bytes(zones, kind, "again") == content
    assert not temporary_files(memberflow_env)
    assert list(read_output(zones, "successful", "again")["last_name"])[0] == "Lee"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"chunk_lines": 0}, "chunk_lines must be at least 1, not 0"),
        ({"chunk_lines": -5}, "chunk_lines must be at least 1, not -5"),
        ({"reference_date": "01/01/2022"}, "reference_date must be a date as YYYY-MM-DD"),
    ],
)
def test_bad_run_config_is_refused_with_its_reason_and_writes_nothing(instance, zones, memberflow_env, config, message):
    land(zones, "configured.csv", CONTENT)
    result = run_partition(
        instance,
        "membership_batch",
        batch_key("configured.csv"),
        tags={SOURCE_FILE_TAG: "configured.csv"},
        run_config={"ops": {"application_batch": {"config": config}}},
    )
    assert not result.success
    failure = next(event for event in result.all_events if event.event_type_value == "STEP_FAILURE")
    assert message in str(failure.event_specific_data.error)
    assert not (memberflow_env / "members").exists() or not any((memberflow_env / "members").rglob("*.parquet"))
