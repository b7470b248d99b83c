"""Judging each distinct text once, however often it recurs. No Dagster.

A million applications hold a few tens of thousands of distinct birthdays: what is worked out per
birthday (parsing the date, SHA-256 of the membership ID) is worked out once per file and looked up per row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class DistinctJudgements:
    """`judge`'s results on every distinct text seen so far; `judge` takes distinct texts (an Arrow string
    array) and returns a table with one row per text, in the same order."""

    def __init__(self, judge: Callable[[pa.Array], pa.Table]):
        self._judge = judge
        self._texts: pa.Array | None = None  # every text judged so far
        self._judged: pa.Table | None = None  # row for row with _texts

    def __contains__(self, text: str) -> bool:
        return self._texts is not None and pc.any(pc.equal(self._texts, text)).as_py()

    def of(self, texts: pa.Array) -> pa.Table:
        """The results for `texts` (distinct, no nulls), row for row; judges only the texts not seen before."""
        texts = texts.cast(pa.large_string())
        if self._texts is None:
            self._texts, self._judged = texts, self._judge(texts)
            return self._judged
        positions = pc.index_in(texts, value_set=self._texts)  # null: not seen before
        unseen = pc.is_null(positions)
        if pc.any(unseen).as_py():
            new = texts.filter(unseen)
            seen = len(self._texts)
            self._texts = pa.concat_arrays([self._texts, new])
            self._judged = pa.concat_tables([self._judged, self._judge(new)]).combine_chunks()
            # the new texts are judged in their order, after all the others
            positions = pc.replace_with_mask(
                positions, unseen, pa.array(np.arange(seen, seen + len(new), dtype=np.int32))
            )
        return self._judged.take(positions)
