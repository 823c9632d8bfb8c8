"""`plugins=[...]`: modules or .py files imported before a run is checked, so that what they register (envs,
rewards, advantages, losses, stages) is known to the config checks."""

from __future__ import annotations

from collections.abc import Sequence

from posttrain.user_code import load_module


def load_plugins(names: Sequence[str]) -> None:
    for name in names:
        load_module(name, f"plugins: {name!r}")


def plugins_in(overrides: Sequence[str], config_file: str | None = None) -> list[str]:
    """The `plugins` a run names: the command line's last `plugins=[...]`, parsed the way the config parses it,
    else the `--config` file's `plugins:` (the command line wins, as it does for every key)."""
    from omegaconf import OmegaConf

    items = [o for o in overrides if o.startswith("plugins=")]
    if items:
        value = OmegaConf.to_container(OmegaConf.from_dotlist(items[-1:]))["plugins"]
    elif config_file is not None:
        from posttrain.config.load import read_user_file

        value = OmegaConf.to_container(read_user_file(config_file)).get("plugins") or []
    else:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
