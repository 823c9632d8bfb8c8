"""`plugins=[...]`: modules or .py files imported before a run is checked, so that what they register (envs,
rewards, advantages, losses, stages) is known to the config checks."""

from __future__ import annotations

from collections.abc import Sequence

from posttrain.user_code import load_module


def load_plugins(names: Sequence[str]) -> None:
    for name in names:
        load_module(name, f"plugins: {name!r}")


def plugins_in(overrides: Sequence[str]) -> list[str]:
    """The `plugins=[...]` value of a command line, parsed the way the config parses it."""
    from omegaconf import OmegaConf

    items = [o for o in overrides if o.startswith("plugins=")]
    if not items:
        return []
    value = OmegaConf.to_container(OmegaConf.from_dotlist(items[-1:]))["plugins"]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
