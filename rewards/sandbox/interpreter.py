"""An interpreter that an unprivileged uid can run, for the `rlimits` level when we are root.

Without namespaces there is no private root to bind the interpreter into, so the throwaway uid that runs
untrusted code must reach the host's interpreter through the host's permissions. An interpreter under a
private directory (pyenv's `/root/.pyenv`, mode 700) is out of its reach; rather than run the code as
root, we mirror the interpreter, its shared library and the standard library (no site-packages) into a
root-owned, world-readable directory under the temp dir, hard-linked where the filesystem allows, once
per interpreter build. Each candidate is proven by running it as an unprivileged uid.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PROBE_UID = 199_999  # below the runner's throwaway uids: owns nothing, in no group
_PROBE = "import ast, collections, encodings, json, math, re"
_LEFT_OUT = ("site-packages", "test")  # third-party packages, and the stdlib's own 100+ MB test suite


@dataclass(frozen=True)
class Interpreter:
    path: str
    env: dict[str, str] = field(default_factory=dict)  # what the interpreter needs in a scrubbed environment


def host_interpreter() -> str:
    """The base interpreter (not a venv's), so the sandbox sees only the standard library's install."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def runs_unprivileged(interpreter: Interpreter) -> bool:
    """Whether an unprivileged uid can start `interpreter` and import from its standard library."""
    try:
        done = subprocess.run(
            [interpreter.path, "-I", "-c", _PROBE],
            user=PROBE_UID,
            group=PROBE_UID,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin", **interpreter.env},
            cwd="/",
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@functools.cache
def unprivileged_interpreter() -> Interpreter | None:
    """The host interpreter if a throwaway uid can run it, else a mirror of it, else None (root only)."""
    host = Interpreter(host_interpreter())
    if runs_unprivileged(host):
        return host
    for rebuild in (False, True):  # a mirror a temp-dir cleaner has thinned out is built again, once
        mirror = _mirror(rebuild)
        if mirror is not None and runs_unprivileged(mirror):
            return mirror
    return None


def _sources() -> tuple[Path, Path, Path | None]:
    """(base prefix, standard library dir, shared libpython or None)."""
    prefix = Path(sys.base_prefix).resolve()
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": sys.base_prefix})["stdlib"]).resolve()
    shared = None
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        candidate = Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("INSTSONAME")
        shared = candidate.resolve() if candidate.exists() else None
    return prefix, stdlib, shared


def _mirror(rebuild: bool = False) -> Interpreter | None:
    """The root-owned mirror under the temp dir, built on first use; None where it cannot be made."""
    prefix, stdlib, shared = _sources()
    executable = Path(host_interpreter())
    if not stdlib.is_relative_to(prefix):
        return None
    stat = executable.stat()
    key = hashlib.sha256(f"{executable}:{stat.st_size}:{stat.st_mtime_ns}:{sys.version}".encode()).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / f"posttrain-sandbox-python-{key}"
    if rebuild and _owned_by_us_only(root):
        shutil.rmtree(root, ignore_errors=True)
    if not root.exists():
        with contextlib.suppress(OSError):
            _build(root, executable, prefix, stdlib, shared)
    if not _owned_by_us_only(root):
        return None
    env = {"LD_LIBRARY_PATH": str(root / "lib")} if shared is not None else {}
    return Interpreter(str(root / "bin" / executable.name), env)


def _build(root: Path, executable: Path, prefix: Path, stdlib: Path, shared: Path | None) -> None:
    """Fill a private staging dir, then rename it into place (a concurrent builder's copy wins ties)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        (staging / "bin").mkdir()
        _link_or_copy(executable, staging / "bin" / executable.name)
        target = staging / stdlib.relative_to(prefix)
        ignore = shutil.ignore_patterns(*_LEFT_OUT)
        shutil.copytree(stdlib, target, symlinks=True, ignore=ignore, copy_function=_link_or_copy)
        if shared is not None:
            _link_or_copy(shared, staging / "lib" / shared.name)
        for path in [staging, *staging.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _owned_by_us_only(root: Path) -> bool:
    """A mirror someone else could have written to is not used (the temp dir is shared)."""
    try:
        info = root.lstat()
    except OSError:
        return False
    return root.is_dir() and not root.is_symlink() and info.st_uid == os.geteuid() and not info.st_mode & 0o022
