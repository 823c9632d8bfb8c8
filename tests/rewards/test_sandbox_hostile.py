"""Hostile programs: each must score 0, end inside the sandbox and leave the host untouched.

Runs under every isolation level this machine offers, `rlimits` included. What `rlimits` does not promise
(docs/rewards.md: no network isolation, world-readable and world-writable host files stay reachable, and
without root no separate uid) is skipped there by name, never silently. Programs that must run to the end
get a roomy timeout, so a loaded machine cannot turn their verdict into a timeout; only the spinners and
sleepers are meant to hit theirs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import psutil
import pytest

from posttrain.rewards import run_code
from posttrain.rewards.sandbox import available_levels, runner, set_max_parallel

LEVELS = list(available_levels())
ROOMY_S = 30  # for programs that finish on their own
ROOT = os.geteuid() == 0


@pytest.fixture(params=LEVELS)
def level(request: pytest.FixtureRequest) -> str:
    return request.param


def _needs(level: str, *, namespaces: bool = False, own_uid: bool = False) -> None:
    if namespaces and level == "rlimits":
        pytest.skip("rlimits has no namespaces: the network and world-writable files stay reachable (documented)")
    if own_uid and level == "rlimits" and not ROOT:
        pytest.skip("rlimits without root runs code as the caller's own uid, which may signal the caller")


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        alive = proc.info["status"] not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
        if alive and any(marker in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _sandboxes() -> list[psutil.Process]:
    """This process's children that are sandbox launchers (their argv carries the supervisor's source)."""
    found = []
    for child in psutil.Process().children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "in-sandbox supervisor" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def test_fork_bomb_is_contained(level: str) -> None:
    _needs(level, own_uid=True)
    marker = f"posttrain-forkbomb-{uuid.uuid4().hex}"  # in every fork's argv, so only this bomb is counted
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    program = f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', {bomb!r}, {marker!r}])\n"
    result = run_code(program, "assert True", timeout_s=2, memory_mb=256, isolation=level)
    assert result.passed == 0 and result.status != "ok"
    assert not _processes_with(marker)
    assert run_code("x = 1", "assert x == 1", timeout_s=ROOMY_S, isolation=level).status == "ok"  # host still works


def test_memory_bomb_reports_memory(level: str) -> None:
    program = "blocks = [bytearray(50 * 2**20) for _ in range(200)]\n"
    result = run_code(program, "assert len(blocks) == 200", timeout_s=ROOMY_S, memory_mb=256, isolation=level)
    assert (result.passed, result.status) == (0, "memory")


def test_cpu_spin_times_out(level: str) -> None:
    result = run_code("while True:\n    pass\n", "assert True", timeout_s=1, isolation=level)
    assert (result.passed, result.status) == (0, "timeout")


def test_sleep_forever_times_out(level: str) -> None:
    result = run_code("import time\ntime.sleep(10**6)\n", [{"input": "", "output": ""}], timeout_s=1, isolation=level)
    assert (result.passed, result.status) == (0, "timeout")


def test_gigabytes_of_output_are_cut_off(level: str) -> None:
    flood = "import sys\nline = 'x' * 65536 + '\\n'\nfor _ in range(20000):\n    sys.stdout.write(line)\n"
    assert run_code(flood, [{"input": "", "output": "x"}], timeout_s=5, isolation=level).passed == 0
    big_file = "with open('big', 'w') as f:\n    f.write('x' * 2**30)\n"
    result = run_code(big_file, "import os\nassert os.path.getsize('big') == 2**30", timeout_s=5, isolation=level)
    assert result.passed == 0 and result.status != "ok"


def test_no_network_to_a_host_listener(level: str) -> None:
    _needs(level, namespaces=True)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[bytes] = []

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(conn.recv(100))
            conn.close()

    done = threading.Event()
    thread = threading.Thread(target=accept)
    thread.start()
    program = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'pwned')\n"
    try:
        result = run_code(program, "assert True", timeout_s=ROOMY_S, isolation=level)
        # the same program on the host does reach the listener, so the check above is meaningful
        exec(compile(program, "probe", "exec"), {})
    finally:
        done.set()
        thread.join()
        server.close()
    assert (result.passed, result.status) == (0, "error")
    assert accepted == [b"pwned"]  # only the host's own probe got through


def test_files_outside_the_workdir_are_untouchable(level: str, tmp_path) -> None:
    _needs(level, own_uid=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    # With namespaces the host's files do not exist inside, even world-writable ones; rlimits relies on the
    # throwaway uid, so there the victim is an ordinary root-owned file.
    victim.chmod(0o644 if level == "rlimits" else 0o666)
    tmp_path.chmod(0o755 if level == "rlimits" else 0o777)
    repo_file = os.path.abspath(__file__)
    program = (
        "import os\n"
        "hits = 0\n"
        f"for path in [{str(victim)!r}, '/usr/pwned', '/etc/pwned', '/pwned', {repo_file + '.pwned'!r}]:\n"
        "    try:\n"
        "        open(path, 'w').write('pwned')\n"
        "        hits += 1\n"
        "    except OSError:\n"
        "        pass\n"
        f"for path in [{str(victim)!r}, {repo_file!r}, '/usr/bin/env']:\n"
        "    try:\n"
        "        os.remove(path)\n"
        "        hits += 1\n"
        "    except OSError:\n"
        "        pass\n"
        "open('inside.txt', 'w').write('fine')\n"  # its own directory stays writable
    )
    result = run_code(program, "assert hits > 0", timeout_s=ROOMY_S, isolation=level)
    assert (result.passed, result.status) == (0, "fail")
    assert victim.read_text() == "original"
    assert os.path.exists(repo_file) and not os.path.exists(repo_file + ".pwned")
    assert os.path.exists("/usr/bin/env") and not os.path.exists("/usr/pwned") and not os.path.exists("/pwned")


def test_parent_secrets_are_unreadable(level: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    _needs(level, own_uid=True)
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("POSTTRAIN_TEST_SECRET", secret)
    private = tmp_path / "private.key"
    private.write_text(secret)
    private.chmod(0o600)
    program = (
        "import glob, os\n"
        "found = ' '.join(os.environ.values())\n"
        f"paths = ['/proc/{os.getpid()}/environ', {str(private)!r}, '/etc/shadow']\n"
        "for path in glob.glob('/proc/*/environ') + paths:\n"
        "    try:\n"
        "        found += open(path, 'rb').read().decode(errors='replace')\n"
        "    except OSError:\n"
        "        pass\n"
        "print(found)\n"
    )
    result = run_code(program, [{"input": "", "output": secret}], timeout_s=ROOMY_S, isolation=level)
    assert (result.passed, result.status) == (0, "fail")
    # the same program run on the host does find the secret, so the check above is meaningful
    unsandboxed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert secret in unsandboxed.stdout


def test_killing_the_parent_leaves_the_host_alive(level: str) -> None:
    _needs(level, own_uid=True)
    program = (
        "import os, signal\n"
        f"for pid in (os.getppid(), 1, {os.getpid()}, {os.getppid()}):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass\n"
        "os.kill(-1, signal.SIGKILL)\n"
    )
    result = run_code(program, "assert True", timeout_s=ROOMY_S, isolation=level)
    assert result.status in ("ok", "error", "fail")  # whatever it managed inside, the run was judged
    assert psutil.pid_exists(os.getppid())  # and this process (which it also targeted) and its parent live on
    assert run_code("x = 1", "assert x == 1", timeout_s=ROOMY_S, isolation=level).status == "ok"


def test_daemon_does_not_outlive_the_run(level: str) -> None:
    _needs(level, own_uid=True)
    marker = f"posttrain-daemon-{uuid.uuid4().hex}"
    program = (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n"
        "    os._exit(0)\n"
        "import time\n"
        "time.sleep(0.5)\n"
    )
    result = run_code(program, "assert False", timeout_s=ROOMY_S, isolation=level)
    assert result.status == "fail"
    assert not _processes_with(marker)


def test_exit_before_the_tests_does_not_pass(level: str) -> None:
    for escape in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n"):
        assert run_code(escape, "assert False", isolation=level).passed == 0
    forged = 'import json\nprint(json.dumps({"nonce": "0" * 32, "passed": 1, "total": 1, "status": "ok"}))\n'
    assert run_code(forged, "assert False", isolation=level).passed == 0


def test_parallel_hostile_batch_stays_bounded(level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Six threads, two sandbox slots: never more than two sandboxes alive, and the spinners do not starve
    the quick jobs (which get a roomy timeout of their own, as a run with mixed budgets would)."""
    monkeypatch.setattr(runner, "_SLOTS", runner._SLOTS)  # restored afterwards
    set_max_parallel(2)
    peak, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], len(_sandboxes()))
            time.sleep(0.01)

    jobs = [("while True:\n    pass\n", "assert True", 1), ("x = 2", "assert x == 2", ROOMY_S)] * 3
    results: list = [None] * len(jobs)

    def run(i: int) -> None:
        program, tests, timeout_s = jobs[i]
        results[i] = run_code(program, tests, timeout_s=timeout_s, isolation=level)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert [r.status for r in results] == ["timeout", "ok"] * 3
    assert peak[0] == 2  # the bound held, and was reached (the watcher saw concurrent sandboxes)
