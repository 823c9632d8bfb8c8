"""Compose a run's config: schema <- configs/defaults.yaml <- configs/stages/<stage>.yaml <- key=value.

Every mistake a user can make here (an unknown key, a wrong type, an out-of-range value) becomes a
`UserError` naming the key and, for unknown keys, the closest valid one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import get_type_hints

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from posttrain.config.schema import Config
from posttrain.errors import UserError


def _config_file(*parts: str) -> str:
    return (resources.files("posttrain.configs").joinpath(*parts)).read_text()


def valid_keys(schema: type = Config, prefix: str = "") -> Iterator[str]:
    """Every dotted key of the schema, sections included (used for 'did you mean')."""
    hints = get_type_hints(schema)
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        yield key
        if is_dataclass(hints[f.name]):
            yield from valid_keys(hints[f.name], f"{key}.")


def closest(word: str, choices: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def parse_overrides(overrides: Sequence[str]) -> DictConfig:
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" not in item or not key or key.strip() != key:
            raise UserError(f"expected key=value, got {item!r}")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        raise UserError(f"cannot parse overrides: {str(exc).splitlines()[0]}") from None


def _describe(exc: OmegaConfBaseException, override_keys: Sequence[str]) -> str:
    key = getattr(exc, "full_key", None) or ""
    # OmegaConf names the first unknown segment ('modle' for 'modle.path'); report what the user typed.
    typed = next((k for k in override_keys if k == key or k.startswith(f"{key}.")), key) if key else ""
    first_line = str(exc).splitlines()[0]
    if isinstance(exc, ConfigKeyError) or "not in" in str(exc):
        suggestion = closest(typed, list(valid_keys()))
        hint = f"; did you mean '{suggestion}'?" if suggestion else ""
        return f"unknown config key '{typed}'{hint}"
    if isinstance(exc, ValidationError) and typed:
        return f"bad value for '{typed}': {first_line}"
    return f"invalid config: {first_line}"


def compose(stage: str, overrides: Sequence[str] = (), layer_files: Sequence[str] | None = None) -> DictConfig:
    """Merged, interpolation-resolved config as a DictConfig (what is written to config.yaml).

    `layer_files` (paths under configs/) default to the stage's own file; commands that are not
    stages (`posttrain rsa`, `posttrain eval`) pass theirs.
    """
    override_keys = [item.split("=", 1)[0] for item in overrides]
    files = [f"stages/{stage}.yaml"] if layer_files is None else list(layer_files)
    layers = [
        OmegaConf.create(_config_file("defaults.yaml")),
        *(OmegaConf.create(_config_file(*name.split("/"))) for name in files),
        parse_overrides(overrides),
        {"stage": stage},
    ]
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), *layers)
        OmegaConf.resolve(merged)
    except OmegaConfBaseException as exc:
        raise UserError(_describe(exc, override_keys)) from None
    return merged


def to_object(cfg: DictConfig) -> Config:
    """Instantiate the dataclasses, which runs their range checks."""
    try:
        return OmegaConf.to_object(cfg)
    except UserError as exc:  # OmegaConf re-raises our error with its own detail lines appended
        raise UserError(str(exc).splitlines()[0]) from None
    except OmegaConfBaseException as exc:
        if isinstance(exc.__cause__, UserError):
            raise UserError(str(exc.__cause__).splitlines()[0]) from None
        raise UserError(_describe(exc, [])) from None


def save(cfg: DictConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, path)


def load_saved(path: Path) -> DictConfig:
    return OmegaConf.load(path)
