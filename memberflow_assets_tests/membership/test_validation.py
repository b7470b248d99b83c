"""The checks' independent second reading of the rules catches wrong output, not only passes right output."""

from datetime import date

import pyarrow as pa
import pytest

from memberflow_assets.membership.rules import classify_applications
from memberflow_assets.membership.samples import generate_applications
from memberflow_assets.membership.validation import (
    BirthdayChecks,
    successful_rule_violations,
)

AS_OF = date(2022, 1, 1)


@pytest.fixture(scope="module")
def successful() -> pa.Table:
    classified = classify_applications(generate_applications(5000, seed=7))
    return pa.Table.from_pandas(classified[classified["is_successful"]], preserve_index=False)


def replace_value(table: pa.Table, column: str, row: int, value) -> pa.Table:
    values = table[column].to_pylist()
    values[row] = value
    return table.set_column(
        table.schema.get_field_index(column), column, pa.array(values, table.schema.field(column).type)
    )


def test_correct_output_has_no_violations(successful):
    assert successful.num_rows > 3000
    violations = successful_rule_violations(successful, AS_OF)
    assert set(violations.values()) == {0} and "membership_id_malformed" in violations


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("last_name", "", "missing_last_name"),
        ("date_of_birth", "19900230", "invalid_date_of_birth"),
        ("date_of_birth", "1990-01-01", "invalid_date_of_birth"),
        ("date_of_birth", "20040102", "under_18"),
        ("above_18", False, "above_18_not_true"),
        ("mobile_no", "1234 5678", "invalid_mobile_no"),
        ("email", "someone@example.org", "invalid_email"),
        ("membership_id", "Nobody_00000", "membership_id_mismatch"),
        ("membership_id", "Lee 0e3c4", "membership_id_malformed"),
        ("membership_id", "Lee_0E3C4", "membership_id_malformed"),
        ("rejection_reasons", "invalid_email", "rejection_reasons_not_empty"),
        ("last_name", "Smi\u3000th", "last_name_not_one_word"),
        ("last_name", "Smi\x0bth", "last_name_not_one_word"),
        ("last_name", "Smi\x00th", "control_characters"),
        ("first_name", "Ann\u202e", "control_characters"),
        ("last_name", "\u3164", "control_characters"),  # a Hangul filler: a letter that shows nothing
        ("email", "a\x1b@example.com", "control_characters"),
        ("name", "A " + "b" * 200, "field_too_long"),
        ("email", "a" * 250 + "@b.com", "field_too_long"),
    ],
)
def test_each_kind_of_wrong_output_is_caught(successful, column, value, rule):
    violations = successful_rule_violations(replace_value(successful, column, 10, value), AS_OF)
    assert violations[rule] == 1


@pytest.mark.parametrize("first_name", ["Zoë", "Ærø Åsa", "李"])
def test_text_beyond_ascii_is_not_a_control_character(successful, first_name):
    violations = successful_rule_violations(replace_value(successful, "first_name", 10, first_name), AS_OF)
    assert violations["control_characters"] == 0


def test_length_limits_count_characters_not_bytes(successful):
    """A name of 150 two-byte characters (300 bytes) is within the 200-character limit."""
    violations = successful_rule_violations(replace_value(successful, "name", 10, "A " + "é" * 150), AS_OF)
    assert violations["field_too_long"] == 0


def test_birthdays_kept_across_chunks_still_catch_a_wrong_id(successful):
    """A file's chunks share the checks' reading of each birthday: one seen in an earlier chunk is not
    read (nor hashed) again, and a wrong ID with it is still caught."""
    first, second = successful.slice(0, 2000), successful.slice(2000)
    known = set(first["date_of_birth"].to_pylist())
    row = next(n for n, day in enumerate(second["date_of_birth"].to_pylist()) if day in known)
    births = BirthdayChecks(AS_OF)
    assert set(successful_rule_violations(first, AS_OF, births).values()) == {0}
    assert second["date_of_birth"][row].as_py() in births
    tampered = replace_value(second, "membership_id", row, second["membership_id"][row].as_py()[:-1] + "x")
    assert successful_rule_violations(tampered, AS_OF, births)["membership_id_mismatch"] == 1
    with pytest.raises(ValueError, match="birthday checks for"):
        successful_rule_violations(second, date(2023, 1, 1), births)
