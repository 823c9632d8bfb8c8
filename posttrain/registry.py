"""verl-style registries: a new algorithm is one decorated function, found by name from the config."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def registrar(registry: dict[str, T], kind: str) -> Callable[[str], Callable[[T], T]]:
    """A `@register("name")` decorator that adds to `registry` and refuses a name twice."""

    def register(name: str) -> Callable[[T], T]:
        def wrap(fn: T) -> T:
            if name in registry:
                raise ValueError(f"{kind} {name!r} is already registered")
            registry[name] = fn
            return fn

        return wrap

    return register
