"""`plugins=[...]`: modules or .py files imported before a run is checked, so that what they register (envs,
rewards, advantages, losses, stages) is known to the config checks."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from posttrain.errors import UserError


def load_plugins(names: Sequence[str]) -> None:
    for name in names:
        if name.endswith(".py"):
            path = Path(name)
            if not path.is_file():
                raise UserError(f"plugins: {name} does not exist")
            module_name = f"posttrain_plugin_{path.stem}"
            if module_name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise UserError(f"plugins: cannot import {name!r}: {exc}") from None


def plugins_in(overrides: Sequence[str]) -> list[str]:
    """The `plugins=[...]` value of a command line, parsed the way the config parses it."""
    from omegaconf import OmegaConf

    items = [o for o in overrides if o.startswith("plugins=")]
    if not items:
        return []
    value = OmegaConf.to_container(OmegaConf.from_dotlist(items[-1:]))["plugins"]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
