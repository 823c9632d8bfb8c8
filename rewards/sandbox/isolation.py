"""Which isolation this machine can give untrusted code, and the command line that sets it up.

Strongest first:
- `bwrap`: bubblewrap builds user/pid/net/ipc/uts namespaces and a root holding only read-only binds of
  the interpreter and system libraries, with a size-limited tmpfs `/tmp`;
- `unshare`: (root only) util-linux `unshare` gives mount/pid/net/ipc/uts namespaces and our jail builds
  the same minimal root itself and drops every child to a throwaway uid;
- `rlimits`: no namespaces: resource limits and, as root, a throwaway uid only (never root: when that uid
  cannot reach the interpreter, it runs a mirror of it, see `interpreter.py`, and if even that fails the
  level is unavailable). The network and the host's world-readable files stay reachable and, when not
  root, a daemon that re-parents itself may survive, so this level logs a loud warning.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from posttrain.errors import UserError
from posttrain.rewards.sandbox.interpreter import host_interpreter, unprivileged_interpreter

LEVELS = ("bwrap", "unshare", "rlimits")
_LOG = logging.getLogger("posttrain.rewards.sandbox")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf")
NO_SAFE_LEVEL = (
    "no safe code sandbox here: bubblewrap is missing or unusable, and as root the rlimits level has no "
    "interpreter an unprivileged uid can run (untrusted code is never run as root); install bubblewrap "
    "(e.g. apt-get install bubblewrap)"
)


def read_only_paths() -> tuple[list[str], list[tuple[str, str]]]:
    """Paths bound read-only into the sandbox root, and the top-level symlinks (merged /usr) to recreate."""
    paths, symlinks = ["/usr"], []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            symlinks.append((top, os.readlink(top)))
        elif os.path.isdir(top):
            paths.append(top)
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith("/usr/"):
        paths.append(prefix)
    executable_dir = os.path.dirname(host_interpreter())
    if not any(executable_dir == p or executable_dir.startswith(p + "/") for p in paths):
        paths.append(executable_dir)
    paths += [f for f in _ETC_FILES if os.path.isfile(f)]
    return paths, symlinks


def _probe(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def available_levels() -> tuple[str, ...]:
    """Every level that actually works here (each is tried once, then cached)."""
    found = []
    if shutil.which("bwrap") and _probe(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "true"]):
        found.append("bwrap")
    if os.geteuid() == 0 and shutil.which("unshare") and _probe(["unshare", *UNSHARE_FLAGS, "true"]):
        found.append("unshare")
    if os.geteuid() != 0 or unprivileged_interpreter() is not None:
        found.append("rlimits")
    return tuple(found)


UNSHARE_FLAGS = ("--mount", "--pid", "--net", "--ipc", "--uts", "--fork", "--kill-child", "--propagation", "private")


@functools.cache
def isolation_level(requested: str = "auto") -> str:
    """The level `run_code` uses: the strongest available for "auto", else the requested one if it works.

    `UserError` (one line naming the fix) when no level can run code without root; `ValueError` for a
    level that does not exist or is not available here.
    """
    available = available_levels()
    if (requested == "auto" and not available) or (requested == "rlimits" and requested not in available):
        raise UserError(NO_SAFE_LEVEL)
    if requested == "auto":
        level = available[0]
    elif requested in available:
        level = requested
    else:
        raise ValueError(f"sandbox isolation {requested!r} is not available here (available: {', '.join(available)})")
    if level == "rlimits":
        _LOG.warning(
            "CODE SANDBOX IS WEAK: isolation 'rlimits' has no namespaces, so untrusted code runs with resource limits "
            "and an unprivileged uid only; it can reach the network and read world-readable host files. "
            "Install bubblewrap."
        )
    else:
        _LOG.info("code sandbox isolation: %s", level)
    return level


def bwrap_command(tmpfs_mb: int) -> list[str]:
    paths, symlinks = read_only_paths()
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--uid", "65534"]
    argv += ["--gid", "65534", "--cap-drop", "ALL"]
    for path in paths:
        argv += ["--ro-bind", path, path]
    for link, dest in symlinks:
        argv += ["--symlink", dest, link]
    argv += ["--dev", "/dev", "--proc", "/proc", "--size", str(tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp"]
    return [*argv, "--remount-ro", "/", "--chdir", "/tmp", "--"]


def launch_command(level: str, tmpfs_mb: int) -> list[str]:
    """argv that runs the jail (its source passed with -c) under `level`."""
    jail = ["-I", "-c", (Path(__file__).parent / "jail.py").read_text()]
    if level == "bwrap":
        return [*bwrap_command(tmpfs_mb), host_interpreter(), *jail]
    if level == "unshare":
        return ["unshare", *UNSHARE_FLAGS, host_interpreter(), *jail]
    return [host_interpreter(), *jail]
