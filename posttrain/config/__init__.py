"""Typed configuration: the schema, and composition of YAML layers with `key=value` overrides."""

from posttrain.config.load import (
    closest,
    compose,
    load_run_config,
    load_saved,
    read_user_file,
    save,
    to_object,
    unknown_key_hint,
    valid_keys,
)
from posttrain.config.schema import Config

__all__ = [
    "Config",
    "closest",
    "compose",
    "load_run_config",
    "load_saved",
    "read_user_file",
    "save",
    "to_object",
    "unknown_key_hint",
    "valid_keys",
]
