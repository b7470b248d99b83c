"""Each distinct text is judged once, and every caller gets the judgement of its own texts, row for row."""

import pyarrow as pa
import pyarrow.compute as pc

from memberflow_assets.membership.distinct import DistinctJudgements


def test_each_text_is_judged_once_and_answers_keep_the_callers_order():
    judged = []

    def shout(texts: pa.Array) -> pa.Table:
        judged.append(texts.to_pylist())
        return pa.table({"loud": pc.utf8_upper(texts)})

    memo = DistinctJudgements(shout)
    assert memo.of(pa.array(["a", "b"]))["loud"].to_pylist() == ["A", "B"]
    assert memo.of(pa.array(["c", "a", "d", "b"]))["loud"].to_pylist() == ["C", "A", "D", "B"]
    assert memo.of(pa.array(["b", "d"]))["loud"].to_pylist() == ["B", "D"]
    assert memo.of(pa.array([], pa.string()))["loud"].to_pylist() == []
    assert judged == [["a", "b"], ["c", "d"]]  # nothing judged twice, nothing judged when all are known
    assert "d" in memo and "z" not in memo


def test_positions_point_every_value_at_its_row_of_the_results():
    judged = []

    def length(texts: pa.Array) -> pa.Table:
        judged.append(texts.to_pylist())
        return pa.table({"length": pc.utf8_length(texts)})

    memo = DistinctJudgements(length)
    assert memo.positions(pa.array([], pa.string())).to_pylist() == []  # nothing yet: judged empty
    first = memo.positions(pa.chunked_array([["bb", "a", "bb"], ["a", "ccc"]]))  # repeats, in chunks
    again = memo.positions(pa.array(["ccc", "dddd", "a", "dddd"]))
    assert [memo.judged["length"][p].as_py() for p in first.to_pylist()] == [2, 1, 2, 1, 3]
    assert [memo.judged["length"][p].as_py() for p in again.to_pylist()] == [3, 4, 1, 4]
    assert judged == [[], ["bb", "a", "ccc"], ["dddd"]]  # each distinct value once, in first-seen order
