import os
import time

from posttrain.procpool import ProcessPool


def behave(kind: str):
    if kind == "hang":
        time.sleep(60)
    if kind == "crash":
        os._exit(7)
    if kind == "raise":
        raise ValueError("boom")
    if kind == "unpicklable":
        return lambda: None
    return kind.upper()


def test_every_item_gets_exactly_one_result_in_order():
    kinds = ["a", "hang", "b", "crash", "raise", "c", "unpicklable", "d"]
    with ProcessPool(2, timeout_s=1.0) as pool:
        results = pool.map(behave, [(k,) for k in kinds])
        assert [r.value for r in results if r.ok] == ["A", "B", "C", "D"]
        by_kind = dict(zip(kinds, results, strict=True))
        assert "timeout" in by_kind["hang"].error
        assert "exit code 7" in by_kind["crash"].error
        assert by_kind["raise"].error.startswith("ValueError: boom")
        assert "unpicklable" in by_kind["unpicklable"].error
        assert pool.kills == 2
        # replaced workers keep serving
        assert pool.call(behave, "again").value == "AGAIN"


def test_the_caller_never_waits_for_a_hung_call_beyond_its_timeout():
    with ProcessPool(1, timeout_s=30) as pool:
        result = pool.call(behave, "hang", timeout_s=0.5)
    assert not result.ok and result.seconds < 30
