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
