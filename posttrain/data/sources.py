"""Read records from JSONL/JSON/parquet files, a saved `datasets` directory or a hub id; SFT records as chat
messages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from posttrain.errors import UserError

Messages = list[dict[str, str]]


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


def _looks_like_hub_id(path: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", path) is not None and not path.startswith(".")


def read_dataset(path: str) -> Any:
    """A `datasets.Dataset` from a .jsonl/.json/.parquet file, a saved `datasets` directory, or a hub id
    (`owner/name`, its `train` split; needs the network). Anything unreadable is a one-line `UserError`."""
    import datasets

    source = Path(path)
    try:
        if source.is_dir():
            loaded = datasets.load_from_disk(str(source))
            return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
        if source.exists() and source.suffix in (".jsonl", ".json"):
            return datasets.Dataset.from_json(str(source))
        if source.exists() and source.suffix == ".parquet":
            return datasets.Dataset.from_parquet(str(source))
        if source.exists():
            raise UserError(f"data.path={path!r}: unsupported format (use .jsonl, .json, .parquet or a datasets dir)")
        if _looks_like_hub_id(path):
            return datasets.load_dataset(path, split="train")
    except UserError:
        raise
    except Exception as exc:  # datasets raises many types for unreadable input
        first_line = (str(exc).splitlines() or [""])[0][:200]
        raise UserError(f"data.path={path!r} is unreadable: {type(exc).__name__}: {first_line}") from None
    raise UserError(f"data.path={path!r} does not exist")


def load_messages(path: str) -> list[Messages]:
    """All records as messages; any unreadable file or malformed record is a `UserError` naming the row."""
    dataset = read_dataset(path)
    samples = []
    for row, record in enumerate(dataset):
        try:
            samples.append(to_messages(record))
        except ValueError as exc:
            raise UserError(f"data.path={path!r}, row {row}: {exc}") from None
    if not samples:
        raise UserError(f"data.path={path!r} holds no records")
    return samples
