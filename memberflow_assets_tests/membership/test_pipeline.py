"""The membership assets and checks against real PostgreSQL and a local data dir."""

import hashlib

import dagster as dg
import psycopg2
import pytest

from memberflow_assets.membership.layout import batch_key
from memberflow_assets.membership.members_load import landed_at, read_successful, stage_batch, verify_batch
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.settings import Settings
from memberflow_assets_tests.helpers import (
    HEADER,
    check_results,
    land,
    materialized_metadata,
    members_rows,
    read_output,
    read_reason,
    run_batch,
    run_file,
)

TRICKY_CSV = (
    "\ufeffName , EMAIL,date_of_birth,mobile_no,referrer\r\n"
    '"John Smith, Jr.",john@example.com,1990-05-17,9123 4567,web\r\n'
    '"Mrs. Ann ""Annie"" Lee",ann@mail.net,02/03/1985,81234567,"shop, east"\r\n'
    "Bob Tan,bob@example.org,1990-01-01,81234567,\r\n"
    ",nobody@example.com,1990-01-01,81234567,web\r\n"
    "Carl Ng,carl@example.com,30-02-1990,garbage,web\r\n"
    "Dee Ong,dee@example.com,2004-01-02,8123456,web\r\n"
    "Short Row,short@example.com\r\n"
)


def test_a_file_is_read_classified_stored_and_loaded(instance, zones, memberflow_env, pg_dsn):
    land(zones, "batch_one.csv", TRICKY_CSV)

    result = run_batch(instance, "batch_one")

    assert result.success
    assert check_results(result) == {
        "rows_conserved": True,
        "membership_id_valid": True,
        "successful_rows_satisfy_rules": True,
        "members_match_batch": True,
        "membership_id_collisions": True,
    }
    successful = read_output(zones, "successful", "batch_one")
    unsuccessful = read_output(zones, "unsuccessful", "batch_one")
    # BOM, CRLF, quoted commas and doubled quotes, an extra column: all read correctly.
    assert list(successful["last_name"]) == ["Smith", "Lee"]
    assert list(successful["first_name"]) == ["John", 'Ann "Annie"']
    assert list(successful["date_of_birth"]) == ["19900517", "19850203"]
    assert list(successful["row_number"]) == [1, 2]
    assert set(successful["batch"]) == {"batch_one"}
    # Bad rows never fail the file: each is unsuccessful with its reasons, in file order.
    assert dict(zip(unsuccessful["row_number"], unsuccessful["rejection_reasons"], strict=True)) == {
        3: "invalid_email",
        4: "missing_name",
        5: "invalid_date_of_birth;invalid_mobile_no",
        6: "under_18;invalid_mobile_no",
        7: "invalid_date_of_birth;invalid_mobile_no;malformed_record",  # too few fields
    }
    assert list(unsuccessful["line_number"]) == [4, 5, 6, 7, 8]  # the header is line 1
    assert len(successful) + len(unsuccessful) == 7

    classified = materialized_metadata(result, "classified_applications")
    assert (classified["rows"], classified["successful"], classified["unsuccessful"]) == (7, 2, 5)
    assert classified["success_rate"] == pytest.approx(2 / 7, abs=1e-4)
    assert classified["rejections_by_reason"]["invalid_mobile_no"] == 3
    raw = materialized_metadata(result, "raw_applications")
    assert raw["sha256"] == hashlib.sha256(TRICKY_CSV.encode()).hexdigest()
    assert materialized_metadata(result, "successful_applications")["rows"] == 2

    rows = members_rows(pg_dsn)
    assert [row[0] for row in rows] == sorted(successful["membership_id"])
    assert (
        "Lee_" + hashlib.sha256(b"19850203").hexdigest()[:5],
        'Ann "Annie"',
        "Lee",
        "ann@mail.net",
        "1985-02-03",
        "81234567",
        "batch_one",
    ) in rows


def test_rerunning_a_partition_changes_nothing(instance, zones, pg_dsn):
    land(zones, "again.csv", f"{HEADER}\nAnn Lee,ann@mail.net,1985-02-03,81234567\nX,bad,bad,bad\n")
    first = run_batch(instance, "again")
    before = (
        read_output(zones, "successful", "again"),
        read_output(zones, "unsuccessful", "again"),
        members_rows(pg_dsn),
    )

    second = run_batch(instance, "again")

    assert first.success and second.success
    after = (
        read_output(zones, "successful", "again"),
        read_output(zones, "unsuccessful", "again"),
        members_rows(pg_dsn),
    )
    assert before[0].equals(after[0]) and before[1].equals(after[1])
    assert before[2] == after[2] and len(after[2]) == 1
    assert materialized_metadata(second, "members")["inserted"] == 0
    assert materialized_metadata(second, "members")["updated"] == 0


def test_the_same_person_in_two_files_is_one_member(instance, zones, pg_dsn):
    person = "Ann Lee,ann@mail.net,1985-02-03,81234567"
    land(zones, "week_1.csv", f"{HEADER}\n{person}\nBob Tan,bob@example.com,1970-01-01,91234567\n")
    land(zones, "week_2.csv", f"{HEADER}\nMs. Ann Lee,ann.lee@mail.net,02/03/1985 ,8123 4567\n")

    assert run_batch(instance, "week_1").success
    assert run_batch(instance, "week_2").success

    rows = members_rows(pg_dsn)
    assert len(rows) == 2
    ann = next(row for row in rows if row[2] == "Lee")
    assert ann[3] == "ann.lee@mail.net" and ann[6] == "week_2"  # the later batch's details win


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("no_columns.csv", "first,second\n1,2\n", "missing_columns"),
        ("latin1.csv", f"{HEADER},prénom\nJosé Núñez,jo@example.com,1990-01-01,91,J\n".encode("latin-1"), "not_utf8"),
        ("empty.csv", b"", "empty_file"),
        ("blank.csv", b"\n\n  \n", "empty_file"),
        ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "not_csv"),
        ("notes.txt", "Dear team,\nplease find attached\n", "missing_columns"),
        ("json.csv", '{"name": "Ann", "email": "a@b.com"}', "missing_columns"),
    ],
)
def test_an_unreadable_file_is_quarantined_with_its_reason(
    instance, zones, memberflow_env, pg_dsn, name, content, problem
):
    land(zones, name, content)
    land(zones, "good_neighbour.csv", f"{HEADER}\nAnn Lee,ann@mail.net,1985-02-03,81234567\n")

    bad = run_file(instance, name)
    good = run_file(instance, "good_neighbour.csv")

    assert not bad.success
    failure = next(event for event in bad.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.message
    assert name in message and problem in message
    assert str(memberflow_env) not in message  # no local path
    quarantined = memberflow_env / "quarantine" / "applications" / name
    assert quarantined.read_bytes() == (content.encode() if isinstance(content, str) else content)
    reason = read_reason(memberflow_env, name)
    assert reason["problem"] == problem and reason["file"] == name and reason["detail"]
    assert str(memberflow_env) not in reason["detail"]
    assert not zones.exists(f"members/successful/{batch_key(name)}.parquet")
    # the landing zone is never modified, and other files are unaffected
    assert zones.exists(f"landing/applications/{name}")
    assert good.success and len(read_output(zones, "successful", "good_neighbour")) == 1
    assert len(members_rows(pg_dsn)) == 1  # the neighbour's members step ran too


def test_a_header_only_file_is_an_empty_batch_not_an_error(instance, zones, pg_dsn):
    land(zones, "header_only.csv", HEADER + "\r\n")
    result = run_batch(instance, "header_only")
    assert result.success
    assert len(read_output(zones, "successful", "header_only")) == 0
    assert all(check_results(result).values())


def test_members_check_catches_a_table_that_drifted_from_the_files(instance, zones, pg_dsn):
    land(zones, "drift.csv", f"{HEADER}\nAnn Lee,ann@mail.net,1985-02-03,81234567\n")
    assert run_batch(instance, "drift").success
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("UPDATE sales.members SET email = 'tampered@example.com'")

    successful = read_successful(zones, "drift")
    with SalesDatabase.from_settings(Settings.from_env()).connect() as connection:
        stage_batch(connection, successful)
        verification = verify_batch(connection, "drift", landed_at(successful))

    assert not verification.passed
    assert (verification.missing, verification.different, verification.unrecorded_collisions) == (0, 1, 0)
