"""Judging each distinct text once, however often it recurs. No Dagster.

A million applications hold a few tens of thousands of distinct birthdays: what is worked out per
birthday (parsing the date, SHA-256 of the membership ID) is worked out once per file and looked up per row.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc


class DistinctJudgements:
    """`judge`'s results on every distinct text seen so far, one row of `judged` per text; `judge` takes
    distinct texts (an Arrow string array) and returns a table with one row per text, in the same order."""

    def __init__(self, judge: Callable[[pa.Array], pa.Table]):
        self._judge = judge
        self._texts: pa.Array | None = None  # every text judged so far
        self.judged: pa.Table | None = None  # row for row with _texts

    def __contains__(self, text: str) -> bool:
        return self._texts is not None and pc.any(pc.equal(self._texts, text)).as_py()

    def positions(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """For each of `values` (texts, no nulls, repeats and all), the row of `judged` with its result;
        judges the distinct values not seen before, once each. One hash lookup per value: the rows take
        their results straight from `judged`, with no table of the distinct values in between."""
        values = values.cast(pa.large_string())
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if self._texts is None:
            known, unseen, new_values = None, None, values
        else:
            known = pc.index_in(values, value_set=self._texts)  # null: not seen before
            unseen = pc.is_null(known)
            if not pc.any(unseen).as_py():
                return known
            new_values = values.filter(unseen)
        new = pc.dictionary_encode(new_values)  # the new distinct texts, in the order they first appear
        seen = 0 if self._texts is None else len(self._texts)
        judged = self._judge(new.dictionary)
        self._texts = new.dictionary if self._texts is None else pa.concat_arrays([self._texts, new.dictionary])
        self.judged = judged if self.judged is None else pa.concat_tables([self.judged, judged]).combine_chunks()
        new_positions = pc.add(new.indices, pa.scalar(seen, pa.int32())) if seen else new.indices
        return new_positions if known is None else pc.replace_with_mask(known, unseen, new_positions)

    def of(self, values: pa.Array | pa.ChunkedArray) -> pa.Table:
        """The results for `values` (texts, no nulls), row for row."""
        positions = self.positions(values)
        return self.judged.take(positions)
