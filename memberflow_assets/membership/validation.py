"""An independent second reading of the rules, used by the asset checks. No Dagster.

The classification is SQL run by DuckDB; these checks re-derive each rule from the *output* columns
with pyarrow.compute, so a bug in one implementation shows up as a disagreement with the other.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time

import pyarrow as pa
import pyarrow.compute as pc

from memberflow_assets.membership.distinct import DistinctJudgements
from memberflow_assets.membership.rules import MAX_FIELD_LENGTHS, MEMBERSHIP_ID_PATTERN, adult_cutoff

_EMAIL = r"^[^@\s]+@([A-Za-z0-9-]+\.)+([Cc][Oo][Mm]|[Nn][Ee][Tt])$"
# C0 and C1 controls (a successful value has no whitespace but single spaces), the format characters
# that hide or reorder text and the letters that show nothing (Hangul fillers, the blank Braille pattern),
# listed by code point rather than by Unicode category.
_CONTROL = (
    r"[\x00-\x1f\x7f-\x9f\x{200b}-\x{200f}\x{202a}-\x{202e}\x{2060}-\x{2064}\x{2066}-\x{2069}\x{feff}"
    r"\x{115f}\x{1160}\x{2800}\x{3164}\x{ffa0}]"
)


def _strings(table: pa.Table, column: str) -> pa.ChunkedArray:
    return pc.fill_null(table[column].cast(pa.large_string()), "")


def _count(flags: pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(flags, pa.int64())).as_py() or 0)


class BirthdayChecks:
    """The checks' own reading of every distinct date_of_birth seen so far (a real date? under 18? its ID
    suffix), for one reference date; the chunks of a file share one, so each birthday is read once per file."""

    def __init__(self, as_of: date):
        self.as_of = as_of
        self._cutoff = pa.scalar(datetime.combine(adult_cutoff(as_of), time()), type=pa.timestamp("s"))
        self._read = DistinctJudgements(self._judge)

    def __contains__(self, date_of_birth: str) -> bool:
        return date_of_birth in self._read

    def _judge(self, births: pa.Array) -> pa.Table:
        parsed = pc.strptime(births, format="%Y%m%d", unit="s", error_is_null=True)
        return pa.table(
            {
                # Arrow's strptime rolls 30 February over to March: a real date formats back to the same text.
                "real_date": pc.fill_null(pc.equal(pc.strftime(parsed, format="%Y%m%d"), births), False),
                "too_young": pc.fill_null(pc.greater(parsed, self._cutoff), True),
                "id_suffix": pa.array(
                    [hashlib.sha256(day.encode()).hexdigest()[:5] for day in births.to_pylist()], pa.large_string()
                ),
            }
        )

    def of(self, births: pa.ChunkedArray) -> pa.Table:
        """The reading of each row's `births`, row for row."""
        return self._read.of(births)


def _has_control_characters(values: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    # In ASCII text (nearly all of it) a control character is exactly a non-printable one: a scan much
    # cheaper than the regular expression, which only the other values need.
    flags = pc.invert(pc.ascii_is_printable(values))
    if not pc.any(flags).as_py():  # all printable ASCII, as nearly always: one scan suffices, no copy
        return flags
    values, flags = values.combine_chunks(), flags.combine_chunks()
    others = pc.invert(pc.string_is_ascii(values))
    if not pc.any(others).as_py():
        return flags
    return pc.replace_with_mask(flags, others, pc.match_substring_regex(values.filter(others), _CONTROL))


def _longer_than(values: pa.ChunkedArray, characters: int) -> pa.ChunkedArray:
    # a value has at least as many bytes as characters: only a file with a value of more bytes than the
    # limit pays for counting characters
    longer = pc.greater(pc.binary_length(values), characters)
    return pc.greater(pc.utf8_length(values), characters) if pc.any(longer).as_py() else longer


def successful_rule_violations(
    successful: pa.Table, as_of: date, births: BirthdayChecks | None = None
) -> dict[str, int]:
    """For rows classified successful: how many break each rule (all zero when the data is right), and
    `membership_id_malformed`: how many IDs lack the format <last_name>_<5 hex> (the check
    membership_id_valid). `births`: the birthdays read so far (for `as_of`), kept across calls (a file's chunks)."""
    if successful.num_rows == 0:
        return {}
    births = births or BirthdayChecks(as_of)
    if births.as_of != as_of:
        raise ValueError(f"birthday checks for {births.as_of}, not {as_of}")
    name = _strings(successful, "name")
    first_name = _strings(successful, "first_name")
    last_name = _strings(successful, "last_name")
    birth = births.of(_strings(successful, "date_of_birth"))
    mobile = _strings(successful, "mobile_no")
    email = _strings(successful, "email")
    membership_id = _strings(successful, "membership_id")
    expected_id = pc.binary_join_element_wise(last_name, birth["id_suffix"], pa.scalar("_", pa.large_string()))
    too_long = [_longer_than(name, MAX_FIELD_LENGTHS["name"]), _longer_than(email, MAX_FIELD_LENGTHS["email"])]

    checks = {
        "missing_last_name": pc.equal(last_name, ""),
        # Arrow's own Unicode whitespace, not the rules' list: the last name must be one word by it too.
        "last_name_not_one_word": pc.not_equal(
            pc.list_value_length(pc.utf8_split_whitespace(last_name, max_splits=1)), 1
        ),
        "invalid_date_of_birth": pc.invert(birth["real_date"]),
        "under_18": birth["too_young"],
        "above_18_not_true": pc.invert(pc.fill_null(successful["above_18"], False)),
        "invalid_mobile_no": pc.invert(pc.match_substring_regex(mobile, r"^[0-9]{8}$")),
        "invalid_email": pc.invert(pc.match_substring_regex(email, _EMAIL)),
        "field_too_long": pc.or_(*too_long),
        "control_characters": pc.or_(
            pc.or_(_has_control_characters(first_name), _has_control_characters(last_name)),
            pc.or_(_has_control_characters(email), _has_control_characters(mobile)),
        ),
        "membership_id_mismatch": pc.not_equal(membership_id, expected_id),
        "rejection_reasons_not_empty": pc.not_equal(_strings(successful, "rejection_reasons"), ""),
    }
    counts = {rule: _count(failed) for rule, failed in checks.items()}
    # An ID equal to its one-word last name + "_" + 5 hex of a SHA-256 has the format: the regular
    # expression reads only the others (none, when the data is right).
    unproven = pc.or_(
        pc.or_(checks["membership_id_mismatch"], checks["last_name_not_one_word"]), checks["missing_last_name"]
    )
    counts["membership_id_malformed"] = _count(
        pc.invert(pc.match_substring_regex(membership_id.filter(unproven), MEMBERSHIP_ID_PATTERN))
    )
    return counts
