"""Membership application rules: the engineers' classification code that the pipeline hosts.

Plain code, no Dagster: `classify_applications` takes the applications as text and returns one
classified row per input row, in the same order. The rules themselves are SQL
(`sql/membership/classify_applications.sql`) run by DuckDB, vectorised over the whole frame.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd

from memberflow_assets.frames import arrow_to_pandas
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
# In the order `rejection_reasons` lists them.
REJECTION_REASONS = (
    "missing_name",
    "missing_last_name",
    "invalid_date_of_birth",
    "under_18",
    "invalid_mobile_no",
    "invalid_email",
)
DEFAULT_AS_OF = date(2022, 1, 1)
MEMBERSHIP_ID_PATTERN = r"^\S+_[0-9a-f]{5}$"

_CLASSIFY_SQL = read_sql("membership/classify_applications.sql")


def adult_cutoff(as_of: date) -> date:
    """The latest birth date of someone 18 or older on `as_of` (29 February falls back to the 28th)."""
    try:
        return as_of.replace(year=as_of.year - 18)
    except ValueError:
        return as_of.replace(year=as_of.year - 18, day=28)


def classify_applications(df: pd.DataFrame, as_of: date = DEFAULT_AS_OF) -> pd.DataFrame:
    """Classify membership applications as successful or unsuccessful.

    `df` needs the text columns name, email, date_of_birth, mobile_no (other columns are ignored;
    missing values count as empty). Returns the columns in `OUTPUT_COLUMNS`, one row per input row in
    the same order; `rejection_reasons` is a ';'-joined list of `REJECTION_REASONS`, empty when successful.
    """
    missing = [column for column in INPUT_COLUMNS if column not in df.columns]
    if missing:
        raise ValueError(f"applications are missing required column(s): {', '.join(missing)}")
    applications = df[list(INPUT_COLUMNS)].astype("str")  # no copy when already text
    with duckdb.connect() as connection:
        connection.execute("SET enable_progress_bar = false")
        connection.register("applications", applications)
        result = connection.sql(_CLASSIFY_SQL, params={"cutoff": adult_cutoff(as_of)}).to_arrow_table()
    classified = arrow_to_pandas(result)
    classified["is_successful"] = classified["is_successful"].astype(bool)
    classified.index = df.index
    return classified
