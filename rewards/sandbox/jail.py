"""The in-sandbox supervisor. It runs as `python -I -c <this file>` inside the namespaces; stdlib only.

It reads one job (JSON) on stdin, optionally builds a minimal read-only root and chroots into it (unshare
mode, where it is root in fresh mount/pid/net namespaces), then runs each test case as an unprivileged child
with rlimits, a wall-clock deadline and capped output, kills everything the case left behind, and prints one
JSON line: the verdict, tagged with the caller's nonce so that nothing a program prints can pose as it.
Children never inherit this process's stdout, and it makes itself non-dumpable so they cannot reach it
through /proc.
"""

import contextlib
import ctypes
import json
import math
import os
import resource
import secrets
import selectors
import signal
import subprocess
import sys
import time

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
STATUS_PRIORITY = ("timeout", "memory", "error", "fail")  # the first one any case hit is the run's status
HARNESS = r"""
import ast, os, sys, traceback
def _run():
    nonce = os.read(int(sys.argv[1]), 64).decode()
    os.close(int(sys.argv[1]))
    report = os.fdopen(int(sys.argv[2]), "w")
    del sys.argv[1:]
    def send(kind, passed, total):
        report.write(f"{nonce} {kind} {passed} {total}\n")
        report.flush()
    tree = ast.parse(open("tests.py").read())
    checks = [n for n in tree.body if isinstance(n, (ast.Assert, ast.Expr))]
    total = max(1, len(checks))
    namespace = {"__name__": "__main__"}
    try:
        exec(compile(open("solution.py").read(), "solution.py", "exec"), namespace)
    except MemoryError:
        return send("memory", 0, total)
    except BaseException:
        traceback.print_exc()
        return send("error", 0, total)
    passed, kind = 0, "ok"
    for node in tree.body:
        try:
            exec(compile(ast.Module([node], []), "tests.py", "exec"), namespace)
            passed += node in checks
        except MemoryError:
            kind = "memory"
        except BaseException:
            traceback.print_exc()
            if node not in checks:
                return send("error", 0, total)
            kind = "fail" if kind == "ok" else kind
    send(kind, passed if checks else int(kind == "ok"), total)
_run()
"""


def _libc_mount(source, target, fstype, flags, data=None):
    libc = ctypes.CDLL(None, use_errno=True)
    enc = [None if s is None else s.encode() for s in (source, target, fstype, data)]
    if libc.mount(enc[0], enc[1], enc[2], flags, enc[3]) != 0:
        raise OSError(ctypes.get_errno(), f"mount {source} -> {target}: {os.strerror(ctypes.get_errno())}")


def build_root(job):
    """Unshare mode: a tmpfs root holding read-only binds of the interpreter and system libraries only."""
    base = "/tmp"
    _libc_mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, f"size={job['tmpfs_mb']}m,mode=755")
    root = base + "/root"
    for path in job["ro_paths"]:
        target = root + path
        if os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").close()
        _libc_mount(path, target, None, MS_BIND | MS_REC)
        _libc_mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)
    for link, dest in job["symlinks"]:
        os.symlink(dest, root + link)
    for device in ("null", "zero", "urandom", "random"):
        os.makedirs(root + "/dev", exist_ok=True)
        open(root + "/dev/" + device, "w").close()
        _libc_mount("/dev/" + device, root + "/dev/" + device, None, MS_BIND)
    os.makedirs(root + "/proc")
    _libc_mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV)
    os.makedirs(root + "/tmp", mode=0o1777)
    os.chmod(root + "/tmp", 0o1777)
    os.chroot(root)


def _limits(job, uid):
    """preexec_fn of every untrusted child: own session, no privileges, hard resource limits."""

    def apply():
        os.setsid()
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        memory = job["memory_mb"] * 1024 * 1024
        cpu = math.ceil(job["timeout_s"]) + 1
        for limit, value in (
            (resource.RLIMIT_AS, memory),
            (resource.RLIMIT_DATA, memory),
            (resource.RLIMIT_CPU, cpu),
            (resource.RLIMIT_FSIZE, job["file_mb"] * 1024 * 1024),
            (resource.RLIMIT_NPROC, job["max_procs"]),
            (resource.RLIMIT_NOFILE, 256),
            (resource.RLIMIT_CORE, 0),
        ):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(limit, (value, value))

    return apply


def _collect(proc, streams, deadline, cap, buffers=None):
    """Read the child's pipes until they close, the child exits, the deadline passes or output exceeds cap.

    Called again after the leftovers are killed, to drain what the exited child wrote: no process can then
    hold the pipes open, so EOF comes promptly.
    """
    buffers = buffers if buffers is not None else {fd: bytearray() for fd in streams}
    selector = selectors.DefaultSelector()
    for fd in streams:
        selector.register(fd, selectors.EVENT_READ)
    overflow = timed_out = False
    while not overflow:
        now = time.monotonic()
        if now >= deadline:
            timed_out = proc.poll() is None
            break
        if not selector.get_map():  # pipes closed: wait for the child itself
            try:
                proc.wait(timeout=deadline - now)
            except subprocess.TimeoutExpired:
                timed_out = True
            break
        ready = selector.select(timeout=min(0.05, deadline - now))
        for key, _ in ready:
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fd)
                continue
            buffers[key.fd] += chunk
            overflow = overflow or len(buffers[key.fd]) > cap
        if not ready and proc.poll() is not None:
            break  # exited and nothing pending: a daemon may hold the pipes open, stop waiting on them
    selector.close()
    return buffers, timed_out, overflow


def _living_others():
    """Pids in this pid namespace other than init and us that are not zombies."""
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (1, os.getpid()):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in ("Z", "X"):
                alive.append(int(entry))
    return alive


def _reap():
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _kill_leftovers(job, uid, proc):
    """Every process the case started dies here, daemons and fork-bomb stragglers included."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()
    proc.wait()  # reap the case itself first, so the sweep below cannot steal its exit status
    if job["pid_namespace"]:
        for _ in range(500):  # kill(-1) can miss children forked during its sweep: repeat until none is left
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(-1, signal.SIGKILL)  # everything we may signal in this namespace except ourselves
            _reap()
            if not _living_others():
                break
            time.sleep(0.01)
    elif uid is not None:
        helper = os.fork()
        if helper == 0:  # a process with the sandbox uid can signal exactly the sandbox's processes
            with contextlib.suppress(BaseException):
                os.setuid(uid)
                for _ in range(500):  # a sweep can miss children forked during it: sweep until none is left
                    os.kill(-1, signal.SIGKILL)  # raises ProcessLookupError once there is nothing to signal
                    time.sleep(0.002)
            os._exit(0)
        os.waitpid(helper, 0)


def _status_from_exit(proc, stderr, timed_out):
    if timed_out or proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout" if timed_out or proc.returncode == -signal.SIGXCPU else "memory"
    if b"MemoryError" in stderr:
        return "memory"
    return "error" if proc.returncode != 0 else "ok"


def _spawn(argv, **options):
    """Popen, retrying a few times when the host is momentarily out of processes (EAGAIN) or memory."""
    for attempt in range(5):
        try:
            return subprocess.Popen(argv, **options)
        except (BlockingIOError, MemoryError):
            time.sleep(0.1 * (attempt + 1))
    return subprocess.Popen(argv, **options)


def run_case(job, uid, argv, stdin_path, expected):
    """One untrusted execution. Returns (passed, total, status)."""
    nonce = secrets.token_hex(16)
    nonce_r, nonce_w = os.pipe()
    result_r, result_w = os.pipe()
    os.write(nonce_w, nonce.encode())
    os.close(nonce_w)
    env = {"PATH": "/usr/bin:/bin", "HOME": job["workdir"], "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(job["env"])
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    proc = _spawn(
        [*argv, str(nonce_r), str(result_w)] if expected is None else argv,
        stdin=stdin,
        stdout=subprocess.DEVNULL if expected is None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=job["workdir"],
        pass_fds=(nonce_r, result_w) if expected is None else (),
        preexec_fn=_limits(job, uid),
    )
    os.close(nonce_r)
    os.close(result_w)
    if stdin_path:
        stdin.close()
    streams = [proc.stderr.fileno(), result_r] + ([proc.stdout.fileno()] if expected is not None else [])
    buffers, timed_out, overflow = _collect(proc, streams, time.monotonic() + job["timeout_s"], job["output_cap"])
    _kill_leftovers(job, uid, proc)
    if not (timed_out or overflow):
        _, _, overflow = _collect(proc, streams, time.monotonic() + 2.0, job["output_cap"], buffers)
    os.close(result_r)
    stderr = bytes(buffers[proc.stderr.fileno()])
    status = _status_from_exit(proc, stderr, timed_out)
    if overflow:
        return 0, 1, "fail"
    if expected is None:  # assert mode: only a report carrying the harness nonce counts
        fields = bytes(buffers[result_r]).decode(errors="replace").split()
        if status in ("timeout", "memory") or len(fields) != 4 or fields[0] != nonce:
            return 0, 1, status if status != "ok" else "error"
        return int(fields[2]), int(fields[3]), fields[1]
    if status != "ok":
        return 0, 1, status
    got = bytes(buffers[proc.stdout.fileno()]).decode(errors="replace")
    same = _lines(got) == _lines(expected)
    return int(same), 1, "ok" if same else "fail"


def _lines(text):
    """Output compared line by line, ignoring trailing whitespace and trailing blank lines."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def main():
    job = json.loads(sys.stdin.buffer.read())
    out = os.fdopen(os.dup(1), "w")
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    if job["build_root"]:
        build_root(job)
    os.makedirs(job["workdir"], exist_ok=True)
    os.chdir(job["workdir"])
    uid = job["uid"]
    with open("solution.py", "w") as f:
        f.write(job["program"])
    argv = [job["python"], "-I"]
    if isinstance(job["tests"], str):
        with open("tests.py", "w") as f:
            f.write(job["tests"])
        with open("harness.py", "w") as f:
            f.write(HARNESS)
        cases = [(None, None)]
        argv.append("harness.py")
    else:
        cases = [(str(c.get("input", "")), str(c.get("output", ""))) for c in job["tests"]]
        argv.append("solution.py")
    if uid is not None:
        os.chown(job["workdir"], uid, uid)
    passed = total = 0
    statuses = set()
    for index, (stdin_text, expected) in enumerate(cases):
        stdin_path = None
        if stdin_text is not None:
            stdin_path = os.path.join(job["workdir"], f".stdin-{index}")
            with open(stdin_path, "w") as f:
                f.write(stdin_text)
        case_passed, case_total, status = run_case(job, uid, argv, stdin_path, expected)
        passed, total = passed + case_passed, total + case_total
        statuses.add(status)
    status = next((s for s in STATUS_PRIORITY if s in statuses), "ok")
    out.write(json.dumps({"nonce": job["nonce"], "passed": passed, "total": total, "status": status}) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
