"""Read records from JSONL/JSON/parquet files, a saved `datasets` directory or a Hub dataset id (its `train`
split); SFT records as chat messages."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from posttrain.errors import UserError
from posttrain.hub import fetch, is_hub_id

T = TypeVar("T")

Messages = list[dict[str, str]]
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


def as_messages(value: Any, role: str) -> Messages:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise ValueError("expected a string or a list of {role, content} messages")


def to_messages(record: dict[str, Any]) -> Messages:
    if "messages" in record:
        return as_messages(record["messages"], "user")
    if "prompt" in record and "completion" in record:
        return as_messages(record["prompt"], "user") + as_messages(record["completion"], "assistant")
    raise ValueError(f"needs a 'messages' column or 'prompt' and 'completion' columns, has {sorted(record)}")


def read_records(path: str, *, key: str = "data.path") -> Any:
    """A `datasets.Dataset` from a JSONL/JSON/parquet file, a saved `datasets` directory or a Hub dataset id (its
    train split); `key` names the config key in errors."""
    import datasets

    source = Path(path)
    if not source.exists():
        if not (is_hub_id(path) and source.suffix not in FILE_SUFFIXES):
            raise UserError(f"{key}={path!r} does not exist")
        return fetch(key, path, "dataset", lambda: datasets.load_dataset(path, split="train"))
    try:
        if source.is_dir():
            loaded = datasets.load_from_disk(str(source))
            return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
        if source.suffix in (".jsonl", ".json"):
            return datasets.Dataset.from_json(str(source))
        if source.suffix == ".parquet":
            return datasets.Dataset.from_parquet(str(source))
    except Exception as exc:  # datasets raises many types for unreadable input
        raise UserError(f"{key}={path!r} is unreadable: {type(exc).__name__}: {str(exc)[:200]}") from None
    raise UserError(f"{key}={path!r}: unsupported format (use .jsonl, .json, .parquet or a datasets dir)")


def load_messages(path: str) -> list[Messages]:
    """All records as messages; any unreadable file or malformed record is a `UserError` naming the row."""
    return convert_records(path, read_records(path), to_messages, "records")


def convert_records(path: str, records: Iterable[Any], convert: Callable[[Any], T], what: str) -> list[T]:
    """`convert` applied to every record of `path`; a record it refuses (ValueError) is a `UserError` naming its
    row, and so is a file that yields none."""
    converted = []
    for row, record in enumerate(records):
        try:
            converted.append(convert(record))
        except ValueError as exc:
            raise UserError(f"data.path={path!r}, row {row}: {exc}") from None
    if not converted:
        raise UserError(f"data.path={path!r} holds no {what}")
    return converted
