"""Hostile input through the public membership_batch job (issue 9): no bad row or file can hurt another,
no record is merged away, no member is overwritten by someone else, and nothing personal reaches
Dagster. Every bad file is run beside a good one, which must still succeed end to end, members included."""

import hashlib
import os
import threading
import time
from datetime import UTC, datetime
from uuid import RFC_4122, UUID

import dagster as dg
import pandas as pd
import psycopg2
import pyarrow as pa

from memberflow_assets import cli
from memberflow_assets.membership.layout import batch_key
from memberflow_assets.membership.members_load import load_batch, stage_batch, verify_batch
from memberflow_assets.membership.reader import ApplicationFile, Records
from memberflow_assets.membership.samples import generate_applications
from memberflow_assets.membership.sensors import build_landing_applications_sensor
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.settings import Settings, read_sql
from memberflow_assets.zones import Zones
from memberflow_assets_tests.helpers import (
    HEADER,
    check_results,
    checks_failing_with_error,
    fetch_all,
    land,
    materialized_metadata,
    members_rows,
    read_output,
    read_reason,
    run_batch,
    run_file,
)
from memberflow_assets_tests.sales_data import migrated

GOOD_ROWS = "Ann Lee,ann@mail.net,1985-02-03,81234567\nBob Tan,bob@example.com,1970-01-01,91234567\n"


def member_id(last_name: str, birthday: str) -> str:
    return f"{last_name}_{hashlib.sha256(birthday.encode()).hexdigest()[:5]}"


def run_with_good_neighbour(instance, zones, name: str, content: bytes | str) -> dg.ExecuteInProcessResult:
    """Run `name` and a good file beside it; the good one must succeed end to end, members included."""
    land(zones, name, content)
    land(zones, "good_neighbour.csv", f"{HEADER}\n{GOOD_ROWS}")
    result = run_file(instance, name)
    neighbour = run_file(instance, "good_neighbour.csv")
    assert neighbour.success and not checks_failing_with_error(neighbour)
    assert materialized_metadata(neighbour, "members")["applicants"] == 2
    return result


def outcome(zones: Zones, name: str, line_number: int) -> dict:
    """The one output row of a file's line (successful or not)."""
    rows = []
    for kind in ("successful", "unsuccessful"):
        frame = read_output(zones, kind, batch_key(name))
        rows += frame[frame["line_number"] == line_number].to_dict("records")
    assert len(rows) == 1, rows
    return rows[0]


def collisions(dsn: str) -> list[tuple]:
    return fetch_all(
        dsn,
        "SELECT membership_id, batch, row_number, first_name, held_by_batch FROM sales.membership_id_collisions "
        "ORDER BY batch, row_number",
    )


def land_after(zones: Zones, name: str, content: str, earlier: str) -> None:
    """Land a file whose landing time is strictly later than the file `earlier` (coarse file clocks)."""
    before = zones.file_info(f"landing/applications/{earlier}").changed_at
    land(zones, name, content)
    while zones.file_info(f"landing/applications/{name}").changed_at <= before:
        land(zones, name, content)


# -- 1. a row PostgreSQL would refuse can never be successful; a load problem fails only its batch --
PAD_ROWS = 2000
PADDING = "".join(f"Pad Person{n},pad{n}@example.com,1980-01-01,8{n:07d}\n" for n in range(PAD_ROWS))  # > 64 KB


TAIL = ",x@example.com,1980-01-01,81234567"


POISON = [  # (row, successful, the rejection reasons or, for a successful row, the last name)
    # a NUL byte beyond the first 64 KB of the file
    ("Ann\x00 Nul" + TAIL, False, "control_characters"),
    # every Unicode whitespace is whitespace: inside the last word it splits the word
    ("John Smi\vth" + TAIL, True, "th"),
    ("Jane Smi\u3000ty" + TAIL, True, "ty"),
    ("John\u00a0Smith\u2003,n@example.com,1980-01-01,8123\u20074567", True, "Smith"),
    # a last name too long for PostgreSQL's index (and for the rules)
    ("John " + "X" * 3000 + TAIL, False, "field_too_long"),
    ("Eve Sm\u202eith" + TAIL, False, "control_characters"),
    ("Zed Zero\u200bWidth" + TAIL, False, "control_characters"),
    # names that show nothing: Hangul fillers, the blank Braille pattern
    ("\u3164 \u3164" + TAIL, False, "control_characters"),
    ("Ann \u2800" + TAIL, False, "control_characters"),
    ("Esc Ape,e\x1b@x.com,1980-01-01,81234567", False, "invalid_email;control_characters"),
]


def test_a_row_postgresql_would_refuse_is_unsuccessful_and_the_file_succeeds(instance, zones, pg_dsn):
    rows = "".join(f"{row}\n" for row, _, _ in POISON)
    content = f"{HEADER}\n{PADDING}{rows}Last Good,last@example.com,1980-01-01,81234567\n"
    result = run_with_good_neighbour(instance, zones, "poisoned.csv", content)

    assert result.success and not checks_failing_with_error(result)
    for line_number, (row, successful, detail) in enumerate(POISON, start=PAD_ROWS + 2):
        bad = outcome(zones, "poisoned.csv", line_number)
        assert bad["is_successful"] == successful, row
        assert (bad["last_name"] if successful else bad["rejection_reasons"]) == detail, row
    stored = len(read_output(zones, "successful", "poisoned"))
    assert stored == PAD_ROWS + 1 + sum(successful for _, successful, _ in POISON)
    assert materialized_metadata(result, "members")["applicants"] == stored
    assert len(members_rows(pg_dsn)) == stored + 2  # the neighbour's two as well


def test_a_load_problem_of_one_batch_fails_only_that_batch(instance, zones, pg_dsn):
    with psycopg2.connect(migrated(pg_dsn)) as connection, connection.cursor() as cursor:
        # a value the rules accept but the database refuses (a stand-in for anything PostgreSQL may refuse)
        cursor.execute("ALTER TABLE sales.members ADD CONSTRAINT refuses CHECK (email <> 'refused@example.com')")
    connection.close()

    poisoned = run_with_good_neighbour(
        instance, zones, "poisoned.csv", f"{HEADER}\n{GOOD_ROWS}Rae Fused,refused@example.com,1980-01-01,81234567\n"
    )

    assert not poisoned.success  # its own members step fails, and only that
    assert materialized_metadata(poisoned, "successful_applications")["rows"] == 3
    land(zones, "later.csv", f"{HEADER}\nCat Ng,cat@example.com,1990-01-01,81234567\n")
    assert run_file(instance, "later.csv").success  # later files are unaffected too
    assert run_file(instance, "good_neighbour.csv").success


# -- 2. records are never merged: one record per line, counted in the bytes --------------------------
def test_an_unclosed_quote_breaks_only_its_own_record_early_or_late(instance, zones, pg_dsn):
    lines = generate_applications(31_000 - 1, seed=3).to_csv(index=False).splitlines()
    broken = {n: f'"Unclosed Quote{n},quote@example.com,1980-01-01,81234567' for n in (3, 30_001)}
    for record_number, line in sorted(broken.items()):
        lines.insert(record_number, line)  # lines[0] is the header: record n is line n + 1
    result = run_with_good_neighbour(instance, zones, "quote.csv", "\n".join(lines) + "\n")

    assert result.success and not checks_failing_with_error(result)
    assert materialized_metadata(result, "classified_applications")["rows"] == 31_001
    for record_number, line in broken.items():
        row = outcome(zones, "quote.csv", line_number=record_number + 1)
        assert row["rejection_reasons"] == "malformed_record" and row["raw_record"] == line
        assert row["row_number"] == record_number
    last = outcome(zones, "quote.csv", line_number=31_002)  # the file's last record is its own row
    assert last["row_number"] == 31_001 and pd.isna(last["raw_record"])


def test_a_quoted_field_over_two_lines_gives_no_applicant_made_of_its_second_line(instance, zones, pg_dsn):
    """An RFC 4180 export with a line break inside a quoted name: its second line has four fields of an
    application of its own (`Lee",...`), which must not become a member."""
    opening, fragment = '"Kim', 'Lee",kim@example.com,1980-01-01,81234567'
    content = f"{HEADER}\n{GOOD_ROWS}{opening}\n{fragment}\nLast Good,last@example.com,1980-01-01,81234567\n"
    result = run_with_good_neighbour(instance, zones, "multiline.csv", content)

    assert result.success and not checks_failing_with_error(result)
    for line_number, line in ((4, opening), (5, fragment)):
        row = outcome(zones, "multiline.csv", line_number)
        assert "malformed_record" in row["rejection_reasons"].split(";") and row["raw_record"] == line
    assert outcome(zones, "multiline.csv", 6)["is_successful"]
    assert "kim@example.com" not in {row[3] for row in members_rows(pg_dsn)}


def test_rows_that_are_not_utf8_are_unsuccessful_rows_of_their_own_early_or_late(instance, zones, pg_dsn):
    """A Latin-1 export's accents (or any stray byte), early and beyond the first 64 KB, beside a NUL."""
    bad = {3: "Jos\xe9 N\xfa\xf1ez" + TAIL, PAD_ROWS + 5: "Ren\xe9e Lee" + TAIL, PAD_ROWS + 7: "\xff\xfe\xfd"}
    lines = [HEADER, "Cat Ng,cat@mail.net,1985-02-03,81234567", bad[3], *PADDING.splitlines()]
    lines += ["Nul\x00 Row" + TAIL, bad[PAD_ROWS + 5], "Last Good,last@example.com,1980-01-01,81234567"]
    lines.append(bad[PAD_ROWS + 7])
    content = "\n".join(lines).encode("latin-1") + b"\n"
    result = run_with_good_neighbour(instance, zones, "latin1_rows.csv", content)

    assert result.success and not checks_failing_with_error(result)
    for line_number, line in bad.items():
        row = outcome(zones, "latin1_rows.csv", line_number)
        assert not row["is_successful"] and "malformed_record" in row["rejection_reasons"], row
        assert row["raw_record"] == line.encode("latin-1").decode("utf-8", "backslashreplace")
    assert outcome(zones, "latin1_rows.csv", PAD_ROWS + 4)["rejection_reasons"] == "control_characters"
    stored = len(read_output(zones, "successful", "latin1_rows"))
    assert stored == PAD_ROWS + 2  # Cat, the padding and the last good row
    assert materialized_metadata(result, "members")["applicants"] == stored
    assert len(members_rows(pg_dsn)) == stored + 2  # the neighbour's two as well


def test_lines_ending_with_a_cr_alone_are_records_of_their_own(instance, zones, pg_dsn):
    """A row pasted from an old Mac file ends with a CR alone: it was merged with the next line into one
    malformed row (and a whole CR-only file was refused), so applicants vanished into another's row."""
    rows = ["Ann Lee,ann@mail.net,1985-02-03,81234567", "Bob Tan,bob@example.com,1970-01-01,91234567"]
    rows += ["Cat Ng,cat@example.com,1990-01-01,81234567", "Dee Ox,dee@example.com,1991-01-01,81234567"]
    mixed = f"{HEADER}\n{rows[0]}\r{rows[1]}\r\n{rows[2]}\r\r\n{rows[3]}\r"
    result = run_with_good_neighbour(instance, zones, "mixed.csv", mixed)
    land(zones, "old_mac.csv", "\r".join([HEADER, *rows]) + "\r")
    old_mac = run_file(instance, "old_mac.csv")

    for ran, name, lines in ((result, "mixed.csv", [2, 3, 4, 6]), (old_mac, "old_mac.csv", [2, 3, 4, 5])):
        assert ran.success and not checks_failing_with_error(ran)
        successful = read_output(zones, "successful", batch_key(name))
        assert list(successful["last_name"]) == ["Lee", "Tan", "Ng", "Ox"]
        assert list(successful["line_number"]) == lines
        assert materialized_metadata(ran, "members")["applicants"] == 4
    assert len(members_rows(pg_dsn)) == 4  # the neighbour's Ann and Bob are the same people


def test_rows_conserved_fails_when_the_parser_merges_records(instance, zones, pg_dsn, monkeypatch):
    real_chunk = ApplicationFile.chunk

    def merging_parser(file: ApplicationFile, start: int, stop: int) -> Records:
        read = real_chunk(file, start, stop)
        if stop < len(file.body):
            return read
        merged = read.records.slice(0, read.records.num_rows - 1)  # the last record swallowed by another
        return Records(merged, read.blank_lines)

    monkeypatch.setattr(ApplicationFile, "chunk", merging_parser)
    land(zones, "merged.csv", f"{HEADER}\n{GOOD_ROWS}")

    result = run_file(instance, "merged.csv")

    assert not result.success
    assert check_results(result)["rows_conserved"] is False
    assert members_rows(migrated(pg_dsn)) == []  # the blocking check stopped the load


def test_a_3_mb_line_is_one_unsuccessful_row(instance, zones, pg_dsn):
    huge = "Huge " + "Y" * 3_000_000 + ",huge@example.com,1980-01-01,81234567"
    result = run_with_good_neighbour(instance, zones, "huge.csv", f"{HEADER}\n{GOOD_ROWS}{huge}\n{GOOD_ROWS}")

    assert result.success
    assert outcome(zones, "huge.csv", line_number=4)["rejection_reasons"] == "field_too_long"
    assert len(read_output(zones, "successful", "huge")) == 4
    preview = materialized_metadata(result, "unsuccessful_applications")["preview"]
    assert len(preview) < 2000  # previews cut values short


def test_leading_blank_lines_are_skipped_and_line_numbers_stay_right(instance, zones, pg_dsn):
    content = "\n" * 100_000 + " \t\r\n" + f"{HEADER}\r\n\r\n{GOOD_ROWS}"
    result = run_with_good_neighbour(instance, zones, "blank_lines.csv", content)

    assert result.success and not checks_failing_with_error(result)
    assert materialized_metadata(result, "raw_applications")["header_line"] == 100_002
    assert list(read_output(zones, "successful", "blank_lines")["line_number"]) == [100_004, 100_005]
    assert list(read_output(zones, "successful", "blank_lines")["row_number"]) == [1, 2]


def test_file_level_reasons_name_the_right_line_and_no_local_path(instance, zones, memberflow_env, pg_dsn):
    unreadable = {  # file: (content, problem, what the detail says)
        "latin1.csv": (f"\n\n\n{HEADER},pr\xe9nom\n{GOOD_ROWS}".encode("latin-1"), "not_utf8", "line 4 (the header)"),
        "quote.csv": (b"\n\n" + f'"name,email,date_of_birth,mobile_no\n{GOOD_ROWS}'.encode(), "not_csv", "line 3"),
        "headerless.csv": (b"\n \n" + GOOD_ROWS.encode(), "missing_columns", "line 3"),
        "blank.csv": ("\n" * 100_000, "empty_file", "no content"),
    }
    for name, (content, _, _) in unreadable.items():
        land(zones, name, content)
    results = {name: run_file(instance, name) for name in unreadable}
    land(zones, "good_neighbour.csv", f"{HEADER}\n{GOOD_ROWS}")
    assert run_file(instance, "good_neighbour.csv").success

    for name, (_, problem, detail) in unreadable.items():
        assert not results[name].success
        reason = read_reason(memberflow_env, name)
        assert reason["problem"] == problem and detail in reason["detail"], reason
        failure = next(e for e in results[name].all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        for text in (reason["detail"], failure.step_failure_data.error.message):
            assert str(memberflow_env) not in text and "/tmp" not in text


def test_an_unreadable_file_with_a_very_long_name_is_quarantined_under_a_name_that_fits(
    instance, zones, memberflow_env, pg_dsn
):
    """A local file name may have 255 bytes: `<it>.reason.txt` (and the temporary file written first) would
    not fit, and the quarantine failed with an OSError naming the local path."""
    long_name = "é" * 100 + "a" * 50 + ".csv"  # 254 bytes
    landing = memberflow_env / "landing" / "applications"
    landing.mkdir(parents=True)
    (landing / long_name).write_bytes(f"\n\n\n{HEADER},pr\xe9nom\n{GOOD_ROWS}".encode("latin-1"))
    (landing / ("b" * 250 + ".csv")).write_text(f"{HEADER}\n{GOOD_ROWS}")  # a long name that is readable

    result = run_with_good_neighbour(instance, zones, "short.csv", f"{HEADER}\n{GOOD_ROWS}")
    unreadable = run_file(instance, long_name)
    readable = run_file(instance, "b" * 250 + ".csv")

    assert result.success and readable.success and not unreadable.success
    failure = next(e for e in unreadable.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.message
    assert "not_utf8" in message and "line 4" in message and str(memberflow_env) not in message
    reason = read_reason(memberflow_env, f"~{batch_key(long_name)}")
    assert reason["file"] == long_name and reason["problem"] == "not_utf8"
    quarantined = (memberflow_env / "quarantine" / "applications" / f"~{batch_key(long_name)}").read_bytes()
    assert quarantined == (landing / long_name).read_bytes()


def test_no_two_quarantined_files_share_a_name(instance, zones, memberflow_env, pg_dsn):
    """A long name's quarantined copy, a file named like its key, a file named like another's reason file:
    each file's copy and reason survive the others."""
    long_name = "q" * 250 + ".txt"
    names = [long_name, batch_key(long_name), "bad.csv", "bad.csv.reason.txt"]
    for number, name in enumerate(names):
        land(zones, name, f"not a header {number}\n")  # missing_columns, each file its own bytes
    results = {name: run_file(instance, name) for name in names}

    assert not any(result.success for result in results.values())
    quarantine = memberflow_env / "quarantine" / "applications"
    assert len(list(quarantine.iterdir())) == 2 * len(names)
    for number, name in enumerate(names):
        failure = next(e for e in results[name].all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        target = failure.step_failure_data.user_failure_data.metadata["quarantined_to"].value
        copy = quarantine / target.rsplit("/", 1)[-1]
        assert copy.read_text() == f"not a header {number}\n"
        assert read_reason(memberflow_env, copy.name)["file"] == name


# -- 3. membership ID collisions are kept visible and lose nobody ------------------------------------
WILLIAMSON = member_id("Williamson", "19540310")


def test_two_people_with_one_membership_id_are_both_kept(instance, zones, pg_dsn):
    """The public data's case: Kenneth (applications_dataset_1) and Bethany (applications_dataset_2)
    Williamson, both born 1954-03-10, both get Williamson_2b72a."""
    land(zones, "dataset_1.csv", f"{HEADER}\n{GOOD_ROWS}Kenneth Williamson,ken@example.com,1954-03-10,81110000\n")
    land_after(
        zones, "dataset_2.csv", f"{HEADER}\nBethany Williamson,beth@example.com,03/10/1954,82220000\n", "dataset_1.csv"
    )

    first = run_file(instance, "dataset_1.csv")
    second = run_file(instance, "dataset_2.csv")
    again = run_file(instance, "dataset_2.csv")

    assert first.success and check_results(first)["membership_id_collisions"] is True
    assert second.success and again.success  # a collision warns, it does not fail the batch
    williamson = [row for row in members_rows(pg_dsn) if row[0] == WILLIAMSON]
    assert [(row[1], row[3]) for row in williamson] == [("Kenneth", "ken@example.com")]  # nobody overwritten
    assert collisions(pg_dsn) == [(WILLIAMSON, "dataset_2", 1, "Bethany", "dataset_1")]  # recorded once
    evaluation = next(e for e in again.get_asset_check_evaluations() if e.check_name == "membership_id_collisions")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["colliding_ids"].value == 1
    assert WILLIAMSON in evaluation.metadata["ids"].value
    assert check_results(again)["members_match_batch"] is True

    # the same person again (same ID, same first name in any case) updates their member as before
    again_kenneth = "KENNETH Williamson,ken.new@example.com,1954-03-10,81110000"
    land_after(zones, "dataset_3.csv", f"{HEADER}\n{again_kenneth}\n", "dataset_2.csv")
    assert run_file(instance, "dataset_3.csv").success
    williamson = [row for row in members_rows(pg_dsn) if row[0] == WILLIAMSON]
    assert [(row[1], row[3], row[6]) for row in williamson] == [("KENNETH", "ken.new@example.com", "dataset_3")]
    assert len(collisions(pg_dsn)) == 1


def test_a_collision_inside_one_file_keeps_the_first_applicant(instance, zones, pg_dsn):
    rows = "Ann Lee,ann@mail.net,1985-02-03,81234567\nBea Lee,bea@mail.net,1985-02-03,91234567\n"
    land(zones, "twins.csv", f"{HEADER}\n{rows}Ann Lee,ann.new@mail.net,1985-02-03,81234567\n")

    result = run_file(instance, "twins.csv")

    assert result.success and check_results(result)["membership_id_collisions"] is False
    assert [(row[1], row[3]) for row in members_rows(pg_dsn)] == [("Ann", "ann.new@mail.net")]  # her latest row
    assert collisions(pg_dsn) == [(member_id("Lee", "19850203"), "twins", 2, "Bea", "twins")]


# -- 4. members costs O(the batch), with an order-independent winner and a full rebuild ---------------
def test_members_reads_only_its_own_batch(instance, zones, pg_dsn):
    land(zones, "old.csv", f"{HEADER}\n{GOOD_ROWS}")
    assert run_file(instance, "old.csv").success
    zones.write_bytes("members/successful/old.parquet", b"not parquet any more")  # history unreadable

    result = run_with_good_neighbour(instance, zones, "new.csv", f"{HEADER}\nCat Ng{TAIL}\n")

    assert result.success and materialized_metadata(result, "members")["applicants"] == 1


def test_the_latest_landed_file_wins_whatever_order_batches_run_in(instance, zones, pg_dsn):
    land(zones, "early.csv", f"{HEADER}\nAnn Lee,ann.early@mail.net,1985-02-03,81234567\nBob Tan{TAIL}\n")
    land_after(zones, "late.csv", f"{HEADER}\nMs. Ann Lee,ann.late@mail.net,02/03/1985,8123 4567\n", "early.csv")

    assert run_file(instance, "early.csv").success and run_file(instance, "late.csv").success
    in_order = members_rows(pg_dsn)
    clear_members(pg_dsn)
    assert run_file(instance, "late.csv").success and run_file(instance, "early.csv").success
    out_of_order = members_rows(pg_dsn)

    assert in_order == out_of_order
    ann = next(row for row in in_order if row[2] == "Lee")
    assert (ann[3], ann[6]) == ("ann.late@mail.net", "late")
    assert run_file(instance, "early.csv").success and members_rows(pg_dsn) == in_order  # rerun: no change

    # disaster recovery: the members table rebuilt from the files alone
    land(zones, "twins.csv", f"{HEADER}\nBea Lee,bea@mail.net,1985-02-03,91234567\n")
    assert run_file(instance, "twins.csv").success
    before = (members_rows(pg_dsn), collisions(pg_dsn))
    clear_members(pg_dsn)
    assert cli.main(["members-rebuild"]) == 0
    assert (members_rows(pg_dsn), collisions(pg_dsn)) == before


def test_a_rerun_of_an_older_file_whose_time_stamps_changed_does_not_make_it_the_latest(
    instance, zones, memberflow_env, pg_dsn
):
    """A chmod (or a copy by `cp -a`, `rsync -a`) moves a file's ctime, which counts as its change time: a
    re-run of the same content keeps the landing time its outputs recorded. A file stamped in the future
    lands now, not then."""
    land(zones, "older.csv", f"{HEADER}\nAnn Lee,old@mail.net,1985-02-03,81234567\n")
    land_after(zones, "newer.csv", f"{HEADER}\nAnn Lee,new@mail.net,1985-02-03,81234567\n", "older.csv")
    assert run_file(instance, "older.csv").success and run_file(instance, "newer.csv").success
    recorded = read_output(zones, "successful", "older")["landed_at"].iloc[0]

    os.chmod(memberflow_env / "landing" / "applications" / "older.csv", 0o640)
    assert run_file(instance, "older.csv").success

    assert [row[3] for row in members_rows(pg_dsn)] == ["new@mail.net"]
    assert read_output(zones, "successful", "older")["landed_at"].iloc[0] == recorded

    land(zones, "skewed.csv", f"{HEADER}\nAnn Lee,skewed@mail.net,1985-02-03,81234567\n")
    future = time.time() + 30 * 86400
    os.utime(memberflow_env / "landing" / "applications" / "skewed.csv", (future, future))
    before = pd.Timestamp.now(tz="UTC")
    assert run_file(instance, "skewed.csv").success
    assert read_output(zones, "successful", "skewed")["landed_at"].iloc[0] <= pd.Timestamp.now(tz="UTC")
    assert read_output(zones, "successful", "skewed")["landed_at"].iloc[0] >= before - pd.Timedelta(seconds=1)


def test_member_key_stays_with_the_member_through_updates_reruns_and_rebuild(instance, zones, pg_dsn):
    def keys() -> dict[str, str]:
        return dict(fetch_all(pg_dsn, "SELECT membership_id, member_key::text FROM sales.members"))

    land(zones, "first.csv", f"{HEADER}\n{GOOD_ROWS}")
    assert run_file(instance, "first.csv").success
    first = keys()
    second = f"{HEADER}\nAnn Lee,ann.new@mail.net,1985-02-03,81234567\nCat Ng{TAIL}\n"
    land_after(zones, "second.csv", second, "first.csv")
    assert run_file(instance, "second.csv").success and run_file(instance, "first.csv").success
    assert cli.main(["members-rebuild"]) == 0

    after = keys()
    ann = member_id("Lee", "19850203")
    email = fetch_all(pg_dsn, f"SELECT email FROM sales.members WHERE membership_id = '{ann}'")
    assert email == [("ann.new@mail.net",)]
    assert {membership_id: after[membership_id] for membership_id in first} == first  # existing members keep theirs
    assert len(after) == 3 and len(set(after.values())) == 3 and all(after.values())  # the new member got its own


def clear_members(dsn: str) -> None:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM sales.membership_id_collisions; DELETE FROM sales.members")
    connection.close()


def test_concurrent_batches_with_the_same_new_ids_neither_block_nor_lose_anyone(memberflow_env, pg_dsn):
    # the same person in half of the IDs, a different person in the other half
    tables = {"left": applicants(["Ann"] * 300), "right": applicants(["Ann"] * 150 + ["Bea"] * 150)}
    landed = {"left": datetime(2026, 1, 1, tzinfo=UTC), "right": datetime(2026, 1, 2, tzinfo=UTC)}
    migrated(pg_dsn)
    database = SalesDatabase.from_settings(Settings.from_env())
    start = threading.Barrier(2)
    results, errors = {}, []

    def load(name: str) -> None:
        try:
            with database.connect() as connection:
                start.wait()
                results[name] = load_batch(connection, name, tables[name], landed[name])
        except Exception as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=load, args=(name,)) for name in tables]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors and not any(thread.is_alive() for thread in threads)
    assert results["left"].inserted + results["right"].inserted == 300
    assert len(members_rows(pg_dsn)) == 300
    for name, table in tables.items():
        with database.connect() as connection:
            stage_batch(connection, table)
            assert verify_batch(connection, name, landed[name]).passed
    held_by_bea = sum(row[1] == "Bea" for row in members_rows(pg_dsn))
    assert len(collisions(pg_dsn)) == 150 and held_by_bea in (0, 150)  # whoever came first keeps each ID


def applicants(first_names: list[str], start: int = 0) -> pa.Table:
    """Successful rows, as members_load stages them, of Person<start>, Person<start + 1>, ... born
    1980-01-01, with these first names."""
    numbers = range(start, start + len(first_names))
    return pa.table(
        {
            "membership_id": [member_id(f"Person{n}", "19800101") for n in numbers],
            "first_name": first_names,
            "last_name": [f"Person{n}" for n in numbers],
            "email": [f"p{n}@example.com" for n in numbers],
            "date_of_birth": ["19800101"] * len(numbers),
            "mobile_no": ["81234567"] * len(numbers),
            "above_18": [True] * len(numbers),
            "row_number": list(range(1, len(numbers) + 1)),
        }
    )


def rows_visited(plan: dict) -> int:
    """Rows an EXPLAIN ANALYZE plan's nodes produced or filtered away, over all their loops."""
    loops = plan.get("Actual Loops", 1)
    counted = ("Actual Rows", "Rows Removed by Filter", "Rows Removed by Join Filter")
    own = sum(plan.get(count, 0) for count in counted)
    return round(own * loops) + sum(rows_visited(child) for child in plan.get("Plans", []))


def test_verifying_a_batch_of_collisions_costs_o_the_batch(memberflow_env, pg_dsn):
    """Once the members table is 10x a batch, its statements look members up by key; the check's look-up
    of the batch's just-recorded collisions must then not scan them all for every row of the batch."""
    migrated(pg_dsn)
    holders, batch = applicants(["Ann"] * 6000), applicants(["Bea"] * 400)  # all 400 collide
    landed = datetime(2026, 1, 1, tzinfo=UTC)
    with SalesDatabase.from_settings(Settings.from_env()).connect() as connection:
        load_batch(connection, "holders", holders, landed)
    with SalesDatabase.from_settings(Settings.from_env()).connect() as connection:
        assert load_batch(connection, "b", batch, landed).collisions == 400
        assert verify_batch(connection, "b", landed).passed
        with connection.cursor() as cursor:
            cursor.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + read_sql("membership/verify_batch.sql"),
                {"batch": "b", "landed_at": landed},
            )
            [[plan]] = cursor.fetchall()[0]
    assert rows_visited(plan["Plan"]) < 20 * batch.num_rows  # the batch times its collisions: 160,000


def test_new_member_keys_hold_their_creation_time_and_nothing_of_the_batch_order(memberflow_env, pg_dsn):
    """member_key is time-ordered (new keys go to one end of its index): UUIDv7's layout with the
    member's creation time (member_since), and random bits that do not follow membership_id order."""
    migrated(pg_dsn)
    for name, start in (("first", 0), ("second", 200)):
        with SalesDatabase.from_settings(Settings.from_env()).connect() as connection:
            load_batch(connection, name, applicants(["Ann"] * 200, start), datetime(2026, 1, 1, tzinfo=UTC))
    rows = fetch_all(
        pg_dsn,
        "SELECT source_batch, member_key::text, floor(extract(epoch FROM created_at) * 1000)::bigint "
        "FROM sales.members ORDER BY membership_id",
    )
    keys = {batch: [UUID(key) for source, key, _ in rows if source == batch] for batch in ("first", "second")}
    assert all(key.version == 7 and key.variant == RFC_4122 for key in keys["first"] + keys["second"])
    assert all(UUID(key).int >> 80 == created_ms for _, key, created_ms in rows)  # the time: member_since's
    assert len({key for _, key, _ in rows}) == 400
    assert max(keys["first"]) < min(keys["second"])  # a later batch's keys come after
    assert keys["first"] != sorted(keys["first"])  # within a batch, they are in no particular order


# -- 5. one file, one partition ----------------------------------------------------------------------
def test_names_that_differ_only_in_extension_or_case_are_separate_partitions(instance, zones, monkeypatch):
    monkeypatch.setenv("MEMBERFLOW_LANDING_SETTLE_SECONDS", "0")
    # and names ending with a newline: neither a plain key (`dup_c\n`) nor a file still being written
    names = ["dup_a.csv", "dup_a.CSV", "dup_b", "dup_b.csv", "Dup_A.csv", "dup_c\n.csv", "dup_d.tmp\n"]
    for number, name in enumerate(names):
        land(zones, name, f"{HEADER}\nPerson Number{number},p{number}@example.com,1980-01-01,81234567\n")
    context = dg.build_sensor_context(instance=instance, resources={"zones": Zones.from_settings()})

    tick = build_landing_applications_sensor(Settings.from_env())(context)

    requests = {request.tags["memberflow/source_file"]: request for request in tick.run_requests}
    assert set(requests) == set(names)
    assert len({request.partition_key for request in requests.values()}) == len(names)
    assert not any("\n" in request.partition_key for request in requests.values())
    instance.add_dynamic_partitions("application_files", [r.partition_key for r in requests.values()])
    for number, name in enumerate(names):  # each run reads exactly its own file
        request = requests[name]
        assert run_batch(instance, request.partition_key, tags=request.tags).success
        output = read_output(zones, "successful", request.partition_key)
        assert list(output["source_file"]) == [name] and list(output["last_name"]) == [f"Number{number}"]


# -- 6. nothing personal in Dagster's event log -------------------------------------------------------
def test_no_email_mobile_or_birthday_reaches_dagster(instance, zones, pg_dsn):
    people = "Pia Secret,pia.secret@example.com,1977-07-19,87654321\nQuo Private,quo@private.net,31-12-1966,86543210\n"
    land(zones, "personal.csv", f"{HEADER}\n{people}Bad Row,not-an-email,1999-99-99,12 34\n")
    land(zones, "headerless.csv", people)  # the first line, taken for a header, is personal data

    ran = [run_file(instance, "personal.csv"), run_file(instance, "headerless.csv")]

    assert ran[0].success and not ran[1].success
    logged = "\n".join(repr(entry) for result in ran for entry in instance.all_logs(result.run_id))
    assert "Secret" in logged or "Pia" in logged  # names are not what this hides: the log is really read
    for secret in ("pia.secret", "quo@private", "87654321", "86543210", "1977-07-19", "19770719", "31-12-1966",
                   "19661231", "not-an-email", "1999-99-99", "12 34"):  # fmt: skip
        assert secret not in logged, secret
    # nor the birthday's hash in a membership ID, which names the birthday to whoever hashes every date
    for last_name, birthday in (("Secret", "19770719"), ("Private", "19661231")):
        suffix = hashlib.sha256(birthday.encode()).hexdigest()[:5]
        assert f"_{suffix}" not in logged.replace("\\", ""), last_name
    assert "Secret\\_•••••" in materialized_metadata(ran[0], "successful_applications")["preview"]


def test_personal_data_in_the_name_column_is_masked_too(instance, zones, pg_dsn):
    """A row that lost a field, a row with name and e-mail swapped, a file with its columns in another
    order: e-mail, mobile number and birthday end up where the previews show names."""
    rows = [
        "pia.secret@example.com,1977-07-19,87654321",
        "quo@private.net,Quo Private,1966-12-31,86543210",
        "Ann 86543211,ann@mail.net,1985-02-03,81234567",  # successful: digits in a name
    ]
    land(zones, "shifted.csv", f"{HEADER}\n" + "\n".join(rows) + "\n")
    land(zones, "reordered.csv", "mobile_no,name,email,date_of_birth\nRae Tan,86543299,rae@x.com,1990-01-01\n")

    ran = [run_file(instance, "shifted.csv"), run_file(instance, "reordered.csv")]

    assert all(result.success for result in ran)
    logged = "\n".join(repr(entry) for result in ran for entry in instance.all_logs(result.run_id))
    assert "unsuccessful_applications" in logged  # the previews are in what was read
    for secret in ("pia.secret", "quo@private", "1977-07-19", "1966-12-31", "86543210", "86543211", "86543299"):
        assert secret not in logged, secret
