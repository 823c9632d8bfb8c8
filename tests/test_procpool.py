"""ProcessPool: one result per item whatever the callee does, hung workers killed, and no re-import of __main__."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from posttrain.procpool import ProcessPool
from tests.conftest import run_python
from tests.procpool_callees import behave, failing_initializer


def test_every_item_gets_exactly_one_result_in_order():
    # The timeout runs from dispatch to a started worker, never from process start, so 5 s is ample for
    # the quick items even on a loaded machine, and only the hang and the crash cost a worker.
    kinds = ["a", "hang", "b", "crash", "raise", "c", "unpicklable", "d"]
    with ProcessPool(2, timeout_s=5.0) as pool:
        results = pool.map(behave, [(k,) for k in kinds])
        assert [r.value for r in results if r.ok] == ["A", "B", "C", "D"]
        by_kind = dict(zip(kinds, results, strict=True))
        assert by_kind["hang"].error == "timeout after 5s"
        assert by_kind["crash"].error == "worker crashed (exit code 7)"
        assert by_kind["raise"].error == "ValueError: boom second line"  # one line; the traceback is separate
        assert "behave" in by_kind["raise"].traceback
        assert by_kind["unpicklable"].error.startswith("unpicklable result")
        assert pool.kills == 2
        assert pool.call(behave, "again").value == "AGAIN"  # replaced workers keep serving


def test_a_hung_call_returns_and_its_worker_is_killed(tmp_path: Path):
    pid_file = tmp_path / "pid"
    with ProcessPool(1, timeout_s=30) as pool:
        result = pool.call(behave, "hang", str(pid_file), timeout_s=0.5)
        assert (result.ok, result.error) == (False, "timeout after 0.5s")
        pid = int(pid_file.read_text())
        assert not psutil.pid_exists(pid)  # killed and reaped, not left spinning
        assert pool.kills == 1
        assert pool.call(behave, "next").value == "NEXT"


def test_a_failing_initializer_fails_each_call_without_respawning():
    with ProcessPool(1, initializer=failing_initializer) as pool:
        results = pool.map(behave, [("a",), ("b",)])
        assert [r.ok for r in results] == [False, False]
        assert all(r.error == "worker initializer failed: RuntimeError: no model here" for r in results)
        assert pool.kills == 0


def test_concurrent_maps_from_threads_each_get_their_own_results():
    outcomes: dict[int, list] = {}
    with ProcessPool(2, timeout_s=60) as pool:

        def work(n: int) -> None:
            outcomes[n] = [r.value for r in pool.map(behave, [(f"t{n}-{i}",) for i in range(20)])]

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert outcomes == {n: [f"T{n}-{i}" for i in range(20)] for n in range(4)}


@pytest.mark.parametrize("how", ["-c", "stdin", "script"])
def test_functions_defined_in_an_unguarded_main_run_in_workers(tmp_path: Path, how: str):
    """No `if __name__ == "__main__":` guard, and functions that exist only in __main__ (as in Jupyter)."""
    code = (
        "from posttrain.procpool import ProcessPool\n"
        "def square(x):\n"
        "    return x * x\n"
        "pool = ProcessPool(2, timeout_s=60)\n"
        "print([r.value for r in pool.map(square, [(i,) for i in range(6)])], pool.kills)\n"
        "pool.close()\n"
    )
    done = run_python(code, tmp_path, how=how)
    assert (done.returncode, done.stdout, done.stderr) == (0, "[0, 1, 4, 9, 16, 25] 0\n", "")


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path):
    code = (
        "import os, psutil\n"
        "from posttrain.procpool import ProcessPool\n"
        "pool = ProcessPool(2)\n"
        "pool.map(os.getpid, [()] * 2)\n"
        "print(' '.join(str(child.pid) for child in psutil.Process().children()), flush=True)\n"
        "os._exit(0)\n"  # no close(), no atexit: as if the parent were SIGKILLed
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    deadline = time.monotonic() + 60
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.monotonic() < deadline, "pool workers outlived their parent"
        time.sleep(0.2)
