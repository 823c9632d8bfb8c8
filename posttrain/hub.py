"""Hugging Face Hub ids as `model.path` / `data.path`, as TRL and verl take them: fetched into the usual HF
cache when online; with no network or an offline variable set, one line that says the id could not be fetched.

A value is a Hub id only when it is not an existing local path and has the Hub's `name` or `org/name` shape,
so `./my-model`, `/data/x` or `runs/sft/final` are never sent to the Hub.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from posttrain.errors import UserError

T = TypeVar("T")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def is_hub_id(value: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if Path(value).expanduser().exists() or value.startswith(("~", ".")):
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def offline_variable() -> str | None:
    """The offline variable that is set, if any (the values huggingface_hub treats as true)."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in ("1", "on", "true", "yes"):
            return name
    return None


def _probe(repo_id: str, repo_type: str) -> str | None:
    """Why `repo_id` cannot be fetched, or None. One request, no retries: a missing repository or no network
    shows in a second, where a download would retry for half a minute."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    api = HfApi()
    try:
        (api.model_info if repo_type == "model" else api.dataset_info)(repo_id, timeout=10)
    except GatedRepoError:
        return "it is gated: accept its terms on the Hub and log in with `hf auth login`"
    except RepositoryNotFoundError:
        return f"no such {repo_type} on the Hub (or it is private: log in with `hf auth login`)"
    except Exception as exc:  # network failures come as several transport-specific types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"the Hub is unreachable ({first}); with the files already cached, set HF_HUB_OFFLINE=1"
    return None


def fetch(key: str, repo_id: str, repo_type: str, load: Callable[[], T]) -> T:
    """`load()` the Hub id `repo_id` (from the cache, or downloading it); any failure is one `UserError` line."""
    offline = offline_variable()
    if offline is None:
        reason = _probe(repo_id, repo_type)
        if reason is not None:
            raise UserError(_message(key, repo_id, reason))
    try:
        return load()
    except Exception as exc:  # transformers and datasets raise OSError, ValueError, ConnectionError, ...
        if offline is not None:
            reason = f"it is not in the local cache and {offline}=1 is set"
        else:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(_message(key, repo_id, reason)) from None


def _message(key: str, repo_id: str, reason: str) -> str:
    return f"{key}={repo_id!r} is not a local path and could not be fetched from the Hugging Face Hub: {reason}"
