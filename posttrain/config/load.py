"""Compose a run's config: schema <- configs/defaults.yaml <- configs/stages/<stage>.yaml <- a user's YAML
file (`--config`) <- key=value.

Every mistake a user can make here (an unknown key, a wrong type, an out-of-range value) becomes a
`UserError` naming the key and, for unknown keys, a close valid one or the section's valid keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from posttrain.config.schema import Config
from posttrain.errors import UserError


def _config_file(*parts: str) -> str:
    return (resources.files("posttrain.configs").joinpath(*parts)).read_text()


def schema_fields(schema: type = Config, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, type) of every field of the schema, sections (dataclasses) included."""
    hints = get_type_hints(schema)
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        yield key, hints[f.name]
        if is_dataclass(hints[f.name]):
            yield from schema_fields(hints[f.name], f"{key}.")


def valid_keys(schema: type = Config) -> Iterator[str]:
    """Every dotted key of the schema, sections included (used for 'did you mean')."""
    return (key for key, _ in schema_fields(schema))


def closest(word: str, choices: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


# Trainer argument names users bring from Hugging Face / TRL, and the key that does the job here.
HF_NAMES = {
    "learning_rate": "trainer.lr",
    "per_device_train_batch_size": "trainer.batch_size",
    "gradient_accumulation_steps": "trainer.grad_accum",
    "lr_scheduler_type": "trainer.lr_scheduler",
    "model_name_or_path": "model.path",
    "dataset_name": "data.path",
    "max_length": "data.max_seq_len",
    "max_seq_length": "data.max_seq_len",
    "output_dir": "run.dir",
}


def _near(word: str, choices: Sequence[str]) -> list[str]:
    """Choices one small typo away; short words need a lower ratio for the same single edit."""
    return difflib.get_close_matches(word, choices, n=3, cutoff=0.75 if len(word) > 4 else 0.6)


def _children(keys: Sequence[str], prefix: list[str]) -> list[str]:
    depth = len(prefix)
    return sorted({p[depth] for p in (k.split(".") for k in keys) if len(p) > depth and p[:depth] == prefix})


def _spelled(parts: list[str], keys: Sequence[str]) -> str | None:
    """`parts` with each unknown segment replaced by a close sibling, if that yields a valid key."""
    fixed: list[str] = []
    for part in parts:
        siblings = _children(keys, fixed)
        if part in siblings:
            fixed.append(part)
            continue
        near = _near(part, siblings)
        if not near:
            return None
        fixed.append(near[0])
    candidate = ".".join(fixed)
    return candidate if candidate in keys else None


def unknown_key_hint(typed: str, keys: Sequence[str]) -> str:
    """What to tell a user who typed an unknown key: a close valid key if there is one, else the nearest
    section's keys. `keys` are every valid dotted key, sections included (see `valid_keys`)."""
    keys = list(keys)
    parts = typed.split(".")
    spelled = _spelled(parts, keys)
    if spelled is not None:
        return f"did you mean '{spelled}'?"
    leaf = parts[-1]
    if leaf in HF_NAMES:
        return f"did you mean '{HF_NAMES[leaf]}'?"
    elsewhere = [f"'{k}'" for k in keys if k.rsplit(".", 1)[-1] == leaf and k != typed]
    if elsewhere:
        listed = elsewhere[0] if len(elsewhere) == 1 else f"{', '.join(elsewhere[:-1])} or {elsewhere[-1]}"
        return f"did you mean {listed}?"
    sections = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    depth = 0
    while depth < len(parts) - 1 and ".".join(parts[: depth + 1]) in sections:
        depth += 1
    if depth == 0:
        return f"valid top-level keys: {', '.join(_children(keys, []))}"
    section = ".".join(parts[:depth])
    return f"valid keys under '{section}': {', '.join(_children(keys, parts[:depth]))}"


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
        return f"unknown config key '{typed}'; {unknown_key_hint(typed, list(valid_keys()))}"
    if isinstance(exc, ValidationError) and typed:
        return f"bad value for '{typed}': {first_line}"
    return f"invalid config: {first_line}"


def _dotted(mapping: Any, prefix: str = "") -> list[str]:
    if not isinstance(mapping, dict) or not mapping:
        return [prefix.rstrip(".")] if prefix else []
    return [key for name, value in mapping.items() for key in _dotted(value, f"{prefix}{name}.")]


def user_file_keys(path: str | Path) -> list[str]:
    """The dotted keys a user's YAML file sets (a stage must read each of them)."""
    return [key for key in _dotted(OmegaConf.to_container(read_user_file(path))) if key != "stage"]


def read_user_file(path: str | Path) -> DictConfig:
    """A user's YAML config file, checked against the schema on its own so that errors name the file."""
    source = Path(path)
    if not source.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    try:
        content = yaml.safe_load(source.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise UserError(f"config file {str(path)!r} must hold a mapping of config keys, not {type(content).__name__}")
    try:
        layer = OmegaConf.create(content)
        OmegaConf.merge(OmegaConf.structured(Config), layer)
    except OmegaConfBaseException as exc:
        raise UserError(f"config file {str(path)!r}: {_describe(exc, _dotted(content))}") from None
    return layer


def compose(
    stage: str,
    overrides: Sequence[str] = (),
    layer_files: Sequence[str] | None = None,
    user_file: str | Path | None = None,
) -> DictConfig:
    """Merged, interpolation-resolved config as a DictConfig (what is written to config.yaml).

    Layers, later ones winning: the schema, configs/defaults.yaml, `layer_files` (paths under configs/;
    default: the stage's own file; commands that are not stages, `posttrain rsa` and `posttrain eval`,
    pass theirs), the user's YAML `user_file`, then the `key=value` overrides.
    """
    from posttrain.stagekit import check_stage_name

    if layer_files is None:
        check_stage_name(stage)
    override_keys = [item.split("=", 1)[0] for item in overrides]
    stage_file = resources.files("posttrain.configs").joinpath("stages", f"{stage}.yaml")
    files = ([f"stages/{stage}.yaml"] if stage_file.is_file() else []) if layer_files is None else list(layer_files)
    layers = [
        OmegaConf.create(_config_file("defaults.yaml")),
        *(OmegaConf.create(_config_file(*name.split("/"))) for name in files),
        *([read_user_file(user_file)] if user_file is not None else []),
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


def load_run_config(path: Path) -> Config:
    """A run's saved config.yaml as the typed `Config` it was run with."""
    return to_object(OmegaConf.merge(OmegaConf.structured(Config), load_saved(path)))
