"""An independent second reading of the rules, used by the asset checks. No Dagster.

The classification is SQL run by DuckDB; these checks re-derive each rule from the *output* columns
with pyarrow.compute, so a bug in one implementation shows up as a disagreement with the other.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time

import pyarrow as pa
import pyarrow.compute as pc

from memberflow_assets.membership.rules import MAX_FIELD_LENGTHS, MEMBERSHIP_ID_PATTERN, adult_cutoff

_EMAIL = r"^[^@\s]+@([A-Za-z0-9-]+\.)+([Cc][Oo][Mm]|[Nn][Ee][Tt])$"
# C0 and C1 controls (a successful value has no whitespace but single spaces) and the format characters
# that hide or reorder text, listed by code point rather than by Unicode category.
_CONTROL = r"[\x00-\x1f\x7f-\x9f\x{200b}-\x{200f}\x{202a}-\x{202e}\x{2060}-\x{2064}\x{2066}-\x{2069}\x{feff}]"


def _strings(table: pa.Table, column: str) -> pa.ChunkedArray:
    return pc.fill_null(table[column].cast(pa.large_string()), "")


def _count(flags: pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(flags, pa.int64())).as_py() or 0)


def successful_rule_violations(
    successful: pa.Table, as_of: date, id_suffixes: dict[str, str] | None = None
) -> dict[str, int]:
    """For rows classified successful: how many break each rule (all zero when the data is right).
    `id_suffixes`: a birthday's membership ID suffix by its text, kept across calls (a file's chunks)."""
    if successful.num_rows == 0:
        return {}
    name = _strings(successful, "name")
    first_name = _strings(successful, "first_name")
    last_name = _strings(successful, "last_name")
    birth = _strings(successful, "date_of_birth")
    mobile = _strings(successful, "mobile_no")
    email = _strings(successful, "email")
    membership_id = _strings(successful, "membership_id")

    # Birthdays repeat a lot: judge and hash each distinct one once, then look the results up per row.
    unique_births = pc.unique(birth)
    row_birth = pc.index_in(birth, value_set=unique_births)
    parsed = pc.strptime(unique_births, format="%Y%m%d", unit="s", error_is_null=True)
    # Arrow's strptime rolls 30 February over to March: a real date formats back to the same text.
    real_date = pc.fill_null(pc.equal(pc.strftime(parsed, format="%Y%m%d"), unique_births), False)
    cutoff = pa.scalar(datetime.combine(adult_cutoff(as_of), time()), type=pa.timestamp("s"))
    too_young = pc.fill_null(pc.greater(parsed, cutoff), True)
    known = {} if id_suffixes is None else id_suffixes
    days = unique_births.to_pylist()
    for day in days:
        if day not in known:
            known[day] = hashlib.sha256(day.encode()).hexdigest()[:5]
    suffixes = pa.array([known[day] for day in days], type=pa.large_string())
    expected_id = pc.binary_join_element_wise(
        last_name, pc.take(suffixes, row_birth), pa.scalar("_", pa.large_string())
    )
    too_long = [
        pc.greater(pc.utf8_length(name), MAX_FIELD_LENGTHS["name"]),
        pc.greater(pc.utf8_length(email), MAX_FIELD_LENGTHS["email"]),
    ]
    every_value = pc.binary_join_element_wise(first_name, last_name, email, mobile, pa.scalar("", pa.large_string()))

    checks = {
        "missing_last_name": pc.equal(pc.utf8_length(last_name), 0),
        # Arrow's own Unicode whitespace, not the rules' list: the last name must be one word by it too.
        "last_name_not_one_word": pc.not_equal(
            pc.list_value_length(pc.utf8_split_whitespace(last_name, max_splits=1)), 1
        ),
        "invalid_date_of_birth": pc.invert(pc.take(real_date, row_birth)),
        "under_18": pc.take(too_young, row_birth),
        "above_18_not_true": pc.invert(pc.fill_null(successful["above_18"], False)),
        "invalid_mobile_no": pc.invert(pc.match_substring_regex(mobile, r"^[0-9]{8}$")),
        "invalid_email": pc.invert(pc.match_substring_regex(email, _EMAIL)),
        "field_too_long": pc.or_(*too_long),
        "control_characters": pc.match_substring_regex(every_value, _CONTROL),
        "membership_id_mismatch": pc.not_equal(membership_id, expected_id),
        "rejection_reasons_not_empty": pc.not_equal(pc.utf8_length(_strings(successful, "rejection_reasons")), 0),
    }
    return {rule: _count(failed) for rule, failed in checks.items()}


def malformed_membership_ids(successful: pa.Table) -> int:
    """How many membership ids do not have the format <last_name>_<5 hex>."""
    ids = _strings(successful, "membership_id")
    return _count(pc.invert(pc.match_substring_regex(ids, MEMBERSHIP_ID_PATTERN)))
