"""Deterministic synthetic membership applications that exercise every rule. No Dagster.

Used by the start command (sample files in the landing zone), the tests and the benchmark.
About two thirds of the rows are valid; the rest break one or more rules in every way the rules know.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_FIRST = ["John", "Jane", "Mary Ann", "Wei", "Aisha", "Carlos", "Olga", "Kenji", "Priya", "Liam", "Zoe", "Ahmad"]
_LAST = ["Smith", "Tan", "Garcia", "Nguyen", "Okafor", "Muller", "Rossi", "Kim", "Singh", "Brown", "Lee", "Lim"]
_TITLES = ["", "", "", "", "Mr. ", "Mrs ", "Ms. ", "Miss ", "Dr. ", "Mx ", "Prof "]
_SUFFIXES = ["", "", "", "", "", " Jr.", " Sr", " II", " III", " IV", " MD", " DDS", " DVM", " PhD", " Esq."]
_DOMAINS = ["example.com", "mail.net", "corp.example.com", "EXAMPLE.NET"]
_BAD_NAMES = ["", "   ", "Mr.", "Dr. Jr."]
_BAD_EMAILS = ["no-at-sign.com", "someone@example.org", "a@b", "two@@example.com", "x@example.com.sg"]
_BAD_DATES = ["1990-02-30", "31/12/1990", "1990-13-01", "not a date", "1990.01.01", ""]
_BAD_MOBILES = ["1234567", "123456789", "abcdefgh", "+65 9123 4567", ""]


def _format_dates(days: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Dates (days since 1970) as text in one of the four accepted shapes each; formats every
    distinct day once and looks the rest up, which keeps a million rows fast."""
    unique_days, positions = np.unique(days, return_inverse=True)
    stamps = pd.to_datetime(unique_days, unit="D")
    table = np.stack(
        [stamps.strftime(f).to_numpy(dtype=object) for f in ("%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%d-%m-%Y")]
    )
    return table[shapes, positions]


def generate_applications(rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` applications as text columns name, email, date_of_birth, mobile_no."""
    rng = np.random.default_rng(seed)
    pick = lambda options: np.asarray(options, dtype=object)[rng.integers(0, len(options), rows)]  # noqa: E731

    first, last = pick(_FIRST), pick(_LAST)
    names = pick(_TITLES) + first + " " + last + pick(_SUFFIXES)
    emails = (
        pd.Series(first).str.lower().str.replace(" ", "").to_numpy(dtype=object)
        + "."
        + pd.Series(last).str.lower().to_numpy(dtype=object)
        + rng.integers(1, 10_000, rows).astype(str).astype(object)
        + "@"
        + pick(_DOMAINS)
    )
    # Birthdays 1940..2010 (days since 1970): some under 18 on 2022-01-01, a few exactly on the boundary.
    days = rng.integers(-10_957, 14_610, rows)
    days[rng.random(rows) < 0.01] = 12_418  # 2004-01-01: the last day that is old enough
    dates = _format_dates(days, rng.integers(0, 4, rows))
    mobiles = rng.integers(10_000_000, 99_999_999, rows).astype(str).astype(object)
    spaced = rng.random(rows) < 0.2
    mobiles[spaced] = [f"{m[:4]} {m[4:]}" for m in mobiles[spaced]]

    # Break rules on purpose: each field independently, so some rows fail several rules at once.
    for column, bad_values, share in (
        (names, _BAD_NAMES, 0.04),
        (emails, _BAD_EMAILS, 0.08),
        (dates, _BAD_DATES, 0.06),
        (mobiles, _BAD_MOBILES, 0.06),
    ):
        broken = rng.random(rows) < share
        column[broken] = pick(bad_values)[broken]

    return pd.DataFrame({"name": names, "email": emails, "date_of_birth": dates, "mobile_no": mobiles}, dtype="str")
