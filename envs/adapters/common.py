"""What both adapters need: a quarantine for upstream code, the broken-upstream list, and a cached env listing."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

BROKEN_FILE = Path(__file__).with_name("broken_upstream.json")


@contextlib.contextmanager
def quarantine_upstream() -> Iterator[None]:
    """Run upstream generator and scorer code in a throwaway working directory, and put back the
    process-wide random/numpy/torch RNGs it reseeds.

    Some upstream items run dataset programs in-process (reasoning-gym's codeio `exec`s them), and some of
    those write files (`planet.com`, `*.csv`) into the working directory: the user's, without this. The
    directory change is process-wide, which is why env code runs in pool workers during training. In pool
    workers the RNG restore is belt and braces; in-process (e.g. `posttrain envs try`) it is what keeps a
    trainer's RNG stream untouched.
    """
    # Only libraries already imported can hold RNG state the caller relies on; importing torch here
    # just to save its state would cost seconds in every fresh worker.
    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    saved_py = random.getstate()
    saved_np = np.random.get_state() if np is not None else None
    saved_torch = torch.get_rng_state() if torch is not None else None
    saved_cuda = torch.cuda.get_rng_state_all() if torch is not None and torch.cuda.is_initialized() else None
    saved_hash = os.environ.get("PYTHONHASHSEED")
    try:
        with tempfile.TemporaryDirectory(prefix="posttrain-upstream-") as scratch, contextlib.chdir(scratch):
            yield
    finally:
        random.setstate(saved_py)
        if saved_np is not None:
            np.random.set_state(saved_np)
        if saved_torch is not None:
            torch.set_rng_state(saved_torch)
        if saved_cuda is not None:
            torch.cuda.set_rng_state_all(saved_cuda)
        if saved_hash is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = saved_hash


@cache
def broken_upstream(source: str) -> dict[str, str]:
    """Envs whose own reference answer fails their own verifier (name -> reason); see bench/envs_sweep.py."""
    if not BROKEN_FILE.is_file():
        return {}
    return json.loads(BROKEN_FILE.read_text()).get(source, {})


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of upstream parameters (numpy scalars, tuples, sets), for display and logging."""
    def fallback(v: Any) -> Any:
        if hasattr(v, "tolist"):
            return v.tolist()
        return sorted(v, key=repr) if isinstance(v, set | frozenset) else repr(v)

    return json.loads(json.dumps(value, default=fallback))


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "posttrain"


def cached_listing(source: str, package: str, compute: Callable[[], list]) -> list:
    """`compute()` (a JSON-able list), computed once per installed version of `package` and of posttrain.

    Listing an upstream gym means importing it, which takes seconds; `posttrain envs list` should not.
    An unreadable or corrupt cache is recomputed; an unwritable one is skipped.
    """
    try:
        key = f"{source}-{version(package)}-posttrain-{version('posttrain')}"
    except PackageNotFoundError:
        return compute()
    path = cache_dir() / "env-specs" / f"{key}.json"
    with contextlib.suppress(OSError, ValueError):
        listing = json.loads(path.read_text())
        if isinstance(listing, list):
            return listing
    listing = compute()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        staging.write_text(json.dumps(listing))
        staging.replace(path)
    return listing
