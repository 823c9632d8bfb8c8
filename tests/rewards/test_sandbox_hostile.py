"""Hostile programs: each must score 0, end inside the sandbox and leave the host untouched.

Runs under every namespace-based isolation level this machine offers (bubblewrap and/or unshare).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid

import psutil
import pytest

from posttrain.rewards import run_code
from posttrain.rewards.sandbox import available_levels, run_code_many

LEVELS = [level for level in available_levels() if level != "rlimits"]
pytestmark = pytest.mark.skipif(not LEVELS, reason="no namespace isolation on this machine")


@pytest.fixture(params=LEVELS)
def level(request: pytest.FixtureRequest) -> str:
    return request.param


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        alive = proc.info["status"] not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
        if alive and any(marker in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_fork_bomb_is_contained(level: str) -> None:
    program = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run_code(program, "assert True", timeout_s=2, memory_mb=256, isolation=level)
    assert result.passed == 0 and result.status != "ok"
    assert not _processes_with("harness.py")
    assert run_code("x = 1", "assert x == 1", isolation=level).status == "ok"  # the host can still run work


def test_memory_bomb_reports_memory(level: str) -> None:
    program = "blocks = [bytearray(50 * 2**20) for _ in range(200)]\n"
    result = run_code(program, "assert len(blocks) == 200", timeout_s=5, memory_mb=256, isolation=level)
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
        result = run_code(program, "assert True", timeout_s=3, isolation=level)
        # the same program on the host does reach the listener, so the check above is meaningful
        exec(compile(program, "probe", "exec"), {})
    finally:
        done.set()
        thread.join()
        server.close()
    assert (result.passed, result.status) == (0, "error")
    assert accepted == [b"pwned"]  # only the host's own probe got through


def test_files_outside_the_workdir_are_untouchable(level: str, tmp_path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    victim.chmod(0o666)
    tmp_path.chmod(0o777)
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
    result = run_code(program, "assert hits > 0", isolation=level)
    assert (result.passed, result.status) == (0, "fail")
    assert victim.read_text() == "original"
    assert os.path.exists(repo_file) and not os.path.exists(repo_file + ".pwned")
    assert os.path.exists("/usr/bin/env") and not os.path.exists("/usr/pwned") and not os.path.exists("/pwned")


def test_parent_secrets_are_unreadable(level: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    result = run_code(program, [{"input": "", "output": secret}], isolation=level)
    assert (result.passed, result.status) == (0, "fail")
    # the same program run on the host does find the secret, so the check above is meaningful
    unsandboxed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert secret in unsandboxed.stdout


def test_killing_the_parent_leaves_the_host_alive(level: str) -> None:
    program = (
        "import os, signal\n"
        f"for pid in (os.getppid(), 1, {os.getpid()}, {os.getppid()}):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass\n"
        "os.kill(-1, signal.SIGKILL)\n"
    )
    result = run_code(program, "assert True", timeout_s=2, isolation=level)
    assert result.passed == 0 and result.status in ("error", "fail")
    assert psutil.pid_exists(os.getppid())


def test_daemon_does_not_outlive_the_run(level: str) -> None:
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
    result = run_code(program, "assert False", timeout_s=3, isolation=level)
    assert result.status == "fail"
    assert not _processes_with(marker)


def test_exit_before_the_tests_does_not_pass(level: str) -> None:
    for escape in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n"):
        assert run_code(escape, "assert False", isolation=level).passed == 0
    forged = 'import json\nprint(json.dumps({"nonce": "0" * 32, "passed": 1, "total": 1, "status": "ok"}))\n'
    assert run_code(forged, "assert False", isolation=level).passed == 0


def test_parallel_hostile_batch_stays_bounded(level: str) -> None:
    jobs = [("while True:\n    pass\n", "assert True"), ("x = 2", "assert x == 2")] * 3
    results = run_code_many(jobs, timeout_s=1, isolation=level)
    assert [r.status for r in results] == ["timeout", "ok"] * 3
