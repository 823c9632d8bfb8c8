"""User code named by where it lives: a module (`my_pkg.rewards`) or a Python file (`path/to/file.py`).

One loader for every `module:attr` / `file.py:attr` the config takes (reward functions, env classes, plugins).
A file is imported once per process under a name derived from its resolved path, registered in `sys.modules`
before it runs: dataclasses and pickling look modules up by name, and Ray workers or pool processes that
unpickle something defined there load the same file again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from posttrain.errors import UserError


def is_file_location(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def file_path(where: str) -> Path:
    return Path(where).expanduser().resolve()


def load_module(where: str, what: str) -> ModuleType:
    """The module at `where`; every failure is one `UserError` line that starts with `what`."""
    if is_file_location(where):
        return _load_file(file_path(where), what)
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name is not None and where.startswith(exc.name):
            raise UserError(f"{what}: no module named {where!r}") from None
        raise UserError(f"{what}: importing {where!r} raised {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        raise UserError(f"{what}: importing {where!r} raised {type(exc).__name__}: {exc}") from None


def _load_file(path: Path, what: str) -> ModuleType:
    module_name = f"posttrain_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    if not path.is_file():
        raise UserError(f"{what}: no such file {str(path)!r}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise UserError(f"{what}: loading {str(path)!r} raised {type(exc).__name__}: {exc}") from None
    return module
