"""Find an env by name.

Names resolve in this order:

* `rlve:<Identifier>` and `rg:<dataset>`: the rlve-gym and reasoning-gym adapters;
* `package.module:Class` or `path/to/file.py:Class`: a user's `Env` subclass, no registration needed;
* a registered name: builtin envs, `@register_env` in user code, and the `posttrain.envs` entry-point
  group, which is how a pip-installed package adds envs (`[project.entry-points."posttrain.envs"]
  myenv = "mypkg.envs:MyEnv"`).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import logging
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

from posttrain.envs.api import Env
from posttrain.errors import UserError
from posttrain.user_code import load_module

log = logging.getLogger("posttrain.envs")

ENTRY_POINT_GROUP = "posttrain.envs"
SOURCES = ("builtin", "plugin", "rlve", "rg")

_REGISTRY: dict[str, tuple[type[Env], str]] = {}  # name -> (class, source)
_loaded = {"builtin": False, "plugins": False}
E = TypeVar("E", bound=type[Env])


@dataclass(frozen=True)
class EnvSpec:
    name: str
    source: str
    tags: tuple[str, ...]
    min_difficulty: int
    max_difficulty: int | None  # None: unbounded
    broken: str | None = None  # why the env is excluded from default mixes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def register_env(cls: E | None = None, *, name: str | None = None, source: str = "plugin") -> Any:
    """Class decorator: `@register_env` or `@register_env(name="x")`. The name defaults to `cls.name`."""

    def wrap(env_cls: E) -> E:
        if not (isinstance(env_cls, type) and issubclass(env_cls, Env)):
            raise TypeError(f"register_env expects an Env subclass, got {env_cls!r}")
        key = name or env_cls.name
        if not key:
            raise ValueError(f"{env_cls.__name__} has no name: set the class attribute `name`")
        if ":" in key:
            raise ValueError(f"env name {key!r} may not contain ':' (reserved for adapters and import paths)")
        if key != env_cls.name:
            env_cls = type(env_cls.__name__, (env_cls,), {"name": key, "__module__": env_cls.__module__})
        _REGISTRY[key] = (env_cls, source)
        return env_cls

    return wrap(cls) if cls is not None else wrap


def runtime_registrations() -> dict[str, tuple[type[Env], str]]:
    """Envs registered in this process beyond the builtin ones: what a pool worker must be handed.

    A worker never imports the user's script, so an env that script registers reaches the worker only
    this way (its class travels by value when it lives in `__main__`).
    """
    return {name: entry for name, entry in _REGISTRY.items() if entry[1] != "builtin"}


def add_registrations(entries: dict[str, tuple[type[Env], str]]) -> None:
    _REGISTRY.update(entries)


def _load_builtin() -> None:
    if not _loaded["builtin"]:
        _loaded["builtin"] = True
        importlib.import_module("posttrain.envs.builtin")


def _load_plugins() -> None:
    """Entry points are loaded once; a broken plugin is logged and skipped, never fatal."""
    if _loaded["plugins"]:
        return
    _loaded["plugins"] = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = point.load()
            if isinstance(target, type) and issubclass(target, Env):
                register_env(target, name=point.name, source="plugin")
        except Exception as exc:
            log.warning("skipping env entry point %r (%s): %s", point.name, point.value, exc)


def _registered() -> dict[str, tuple[type[Env], str]]:
    _load_builtin()
    _load_plugins()
    return _REGISTRY


def _load_class(reference: str) -> type[Env]:
    """`module:Class` or `path/to/file.py:Class`."""
    location, _, attr = reference.rpartition(":")
    module = load_module(location, f"env {reference!r}")
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Env)):
        raise UserError(f"{reference!r}: {attr!r} is not an Env subclass in {location}")
    return cls


def _adapter(prefix: str) -> Any:
    module = {"rlve": "posttrain.envs.adapters.rlve", "rg": "posttrain.envs.adapters.reasoning_gym"}[prefix]
    return importlib.import_module(module)


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def make_env(name: str) -> Env:
    """An env instance for `name`; `UserError` with the closest valid name when nothing matches."""
    if not isinstance(name, str) or not name:
        raise UserError(f"env name must be a non-empty string, got {name!r}")
    prefix, sep, rest = name.partition(":")
    if sep and prefix in ("rlve", "rg"):
        return _adapter(prefix).make(rest)
    if sep:
        cls = _load_class(name)
        return type(cls.__name__, (cls,), {"name": name, "__module__": cls.__module__})()
    registered = _registered()
    if name not in registered:
        raise UserError(f"unknown env {name!r}{_suggest(name, sorted(registered))} (see `posttrain envs list`)")
    return registered[name][0]()


@functools.cache
def env_label(name: str) -> str:
    """What metrics and tables call an env: a `path.py:Class` / `module:Class` reference shows as the class's
    own `name` when it declares one (the reference still resolves it); every other name as itself."""
    prefix, sep, _ = name.partition(":")
    if not sep or prefix in ("rlve", "rg"):
        return name
    try:
        return _load_class(name).name or name
    except UserError:
        return name


def suggest_adapter_name(prefix: str, name: str, names: list[str]) -> UserError:
    """The error an adapter raises for an unknown upstream name."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f"; did you mean {prefix + ':' + close[0]!r}?" if close else ""
    return UserError(f"unknown env {prefix}:{name}{hint}")


def list_envs(source: str | None = None) -> list[EnvSpec]:
    """Specs of every env (builtin, plugins, then the rlve and rg adapters), or only those of one source.

    Adapter listings come from a cache computed once per upstream version, so listing imports no gym.
    """
    if source is not None and source not in SOURCES:
        raise UserError(f"unknown env source {source!r}; choose one of {', '.join(SOURCES)}")
    specs = [
        EnvSpec(name, src, tuple(cls.tags), 0, cls.max_difficulty)
        for name, (cls, src) in sorted(_registered().items())
        if source in (None, src)
    ]
    for prefix in ("rlve", "rg"):
        if source in (None, prefix):
            specs.extend(_adapter(prefix).specs())
    return specs


def expand_names(names: list[str]) -> list[str]:
    """Config shorthands: `builtin`, `rlve` and `rg` stand for every non-broken env of that source."""
    out: list[str] = []
    for name in names:
        if name in ("builtin", "rlve", "rg"):
            out.extend(spec.name for spec in list_envs(name) if spec.broken is None)
        else:
            out.append(name)
    return list(dict.fromkeys(out))

