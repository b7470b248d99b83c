"""Membership application rules: the engineers' classification code that the pipeline hosts.

Plain code, no Dagster: `classify_applications` takes the applications as text and returns one
classified row per input row, in the same order. The rules themselves are SQL
(`sql/membership/classify_applications.sql`) run by DuckDB, vectorised over the whole frame.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from memberflow_assets.arrow_pandas import arrow_to_pandas
from memberflow_assets.membership import duck
from memberflow_assets.membership.distinct import DistinctJudgements
from memberflow_assets.settings import read_sql

INPUT_COLUMNS = ("name", "email", "date_of_birth", "mobile_no")
OUTPUT_COLUMNS = (
    "name",
    "first_name",
    "last_name",
    "email",
    "date_of_birth",
    "mobile_no",
    "above_18",
    "is_successful",
    "membership_id",
    "rejection_reasons",
)
# In the order `rejection_reasons` lists them: the business rules, then a value that is not storable
# as given (too long, control characters), then a record the reader could not split into its fields.
REJECTION_REASONS = (
    "missing_name",
    "missing_last_name",
    "invalid_date_of_birth",
    "under_18",
    "invalid_mobile_no",
    "invalid_email",
    "field_too_long",
    "control_characters",
    "malformed_record",
)
# The longest value a field may have, in characters, after its whitespace is cleaned.
MAX_FIELD_LENGTHS = {"name": 200, "email": 254, "date_of_birth": 64, "mobile_no": 64}
DEFAULT_AS_OF = date(2022, 1, 1)
MEMBERSHIP_ID_PATTERN = r"^\S+_[0-9a-f]{5}$"

_CLASSIFY_SQL = read_sql("membership/classify_applications.sql")
_CLASSIFY_BIRTHDAYS_SQL = read_sql("membership/classify_birthdays.sql")
_CHARACTERS_SQL = read_sql("membership/characters.sql")  # the macro both use
# classify_birthdays.sql's columns, as the row-level rules receive them
_BIRTHDAY_VERDICTS = {
    "valid": "_dob_valid",
    "above_18": "_above_18",
    "id_suffix": "_id_suffix",
    "has_control": "_dob_control",
    "too_long": "_dob_too_long",
}


def adult_cutoff(as_of: date) -> date:
    """The latest birth date of someone 18 or older on `as_of` (29 February falls back to the 28th)."""
    try:
        return as_of.replace(year=as_of.year - 18)
    except ValueError:
        return as_of.replace(year=as_of.year - 18, day=28)


class BirthdayVerdicts:
    """The date_of_birth rules' verdicts (classify_birthdays.sql) on every distinct text judged so far, for
    one reference date. The chunks of a file share one: a birthday that recurs in later chunks (most do)
    is judged, and its SHA-256 computed, once for the file."""

    def __init__(self, as_of: date = DEFAULT_AS_OF):
        self.as_of = as_of
        self._verdicts = DistinctJudgements(self._judge)

    def _judge(self, texts: pa.Array) -> pa.Table:
        with duck.connect() as connection:
            connection.execute(_CHARACTERS_SQL)
            connection.register("birthdays", duck.split_for_threads(pa.table({"date_of_birth": texts})))
            params = {"cutoff": adult_cutoff(self.as_of), "max_date_of_birth": MAX_FIELD_LENGTHS["date_of_birth"]}
            return connection.sql(_CLASSIFY_BIRTHDAYS_SQL, params=params).to_arrow_table()

    def positions(self, texts: pa.Array) -> pa.Array:
        """For each of `texts` (no nulls), the row of `verdicts` with its verdict."""
        return self._verdicts.positions(texts)

    @property
    def verdicts(self) -> pa.Table:
        """classify_birthdays.sql's verdict on every text judged so far."""
        return self._verdicts.judged


def classify_records(
    applications: pa.Table, as_of: date = DEFAULT_AS_OF, birthdays: BirthdayVerdicts | None = None
) -> pa.Table:
    """The rules over an Arrow table: the text columns `INPUT_COLUMNS`, a boolean `malformed_record`
    (the reader could not split the record into its fields) and any other columns. Returns
    `OUTPUT_COLUMNS` followed by the other columns (malformed_record among them), row for row.
    `birthdays`: the verdicts already known (for `as_of`), e.g. from earlier chunks of the same file."""
    birthdays = birthdays or BirthdayVerdicts(as_of)
    if birthdays.as_of != as_of:
        raise ValueError(f"birthday verdicts for {birthdays.as_of}, not {as_of}")
    # Each distinct birthday is judged once; the verdicts go to the rows by position.
    positions = birthdays.positions(pc.fill_null(applications["date_of_birth"], ""))
    verdicts = birthdays.verdicts
    rules_input = applications.select([*INPUT_COLUMNS, "malformed_record"])
    for column, name in _BIRTHDAY_VERDICTS.items():
        rules_input = rules_input.append_column(name, verdicts[column].take(positions))
    with duck.connect() as connection:
        connection.execute(_CHARACTERS_SQL)
        connection.register("applications", rules_input)
        lengths = {f"max_{field}": limit for field, limit in MAX_FIELD_LENGTHS.items() if field != "date_of_birth"}
        classified = connection.sql(_CLASSIFY_SQL, params=lengths).to_arrow_table()
    # The birthday as shown (the verdict's) and the record's other columns go beside the rules' columns,
    # row for row as the rules keep the rows' order, without a copy through the query.
    classified = classified.add_column(
        OUTPUT_COLUMNS.index("date_of_birth"), "date_of_birth", verdicts["shown"].take(positions)
    )
    for name in applications.column_names:
        if name not in INPUT_COLUMNS:
            classified = classified.append_column(applications.schema.field(name), applications[name])
    return classified


def classify_applications(df: pd.DataFrame, as_of: date = DEFAULT_AS_OF) -> pd.DataFrame:
    """Classify membership applications as successful or unsuccessful.

    `df` needs the text columns name, email, date_of_birth, mobile_no (other columns are ignored;
    missing values count as empty). Returns the columns in `OUTPUT_COLUMNS`, one row per input row in
    the same order; `rejection_reasons` is a ';'-joined list of `REJECTION_REASONS`, empty when successful.
    """
    missing = [column for column in INPUT_COLUMNS if column not in df.columns]
    if missing:
        raise ValueError(f"applications are missing required column(s): {', '.join(missing)}")
    applications = pa.Table.from_pandas(df[list(INPUT_COLUMNS)].astype("str"), preserve_index=False)
    applications = applications.append_column("malformed_record", pa.repeat(False, applications.num_rows))
    classified = arrow_to_pandas(classify_records(applications, as_of).select(list(OUTPUT_COLUMNS)))
    classified["is_successful"] = classified["is_successful"].astype(bool)
    classified.index = df.index
    return classified
