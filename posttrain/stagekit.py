"""The stage interface and its registry: what `posttrain run stage=<name>` runs.

A stage is a thin composition of the engine. It declares the config keys it reads, so that a key the user sets
but the stage never reads is an error naming the key that does the job, and implements

    check(cfg)                       checks that need no model (run before a previous stage is built)
    prepare(cfg) -> prepared         loads and checks every input, writes nothing
    check_resume(cfg, checkpoint)    refuses a checkpoint this config cannot continue, before anything is written
    run(prepared, ctx) -> summary    the work, inside the run directory

Stage modules import the heavy engine inside these methods, so a mistyped key or stage name is reported
within a second. Builtin stages are registered by import path and loaded on first use; a plugin registers
its own with `@register_stage("name")`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from posttrain.errors import UserError

# Read by every stage (the run itself): never reported as unread.
COMMON_KEYS = ("stage", "seed", "resume", "device", "run", "logging", "plugins", "model.path")

# Pipeline order; `stage=all` runs these, chained by final/. `rm` is built on demand by `rlhf`.
ORDER = ("sft", "warmup", "rlve", "mathcode_phase1", "mathcode_phase2", "rlhf")  # rm: built on demand by rlhf
# A group runs its stages in order; `<group>.key=value` reaches each of them.
GROUPS = {"mathcode": ("mathcode_phase1", "mathcode_phase2")}
_BUILTIN = {
    "sft": "posttrain.stages.sft:SFT",
    "warmup": "posttrain.stages.warmup:Warmup",
    "rlve": "posttrain.stages.rlve:RLVE",
    "mathcode_phase1": "posttrain.stages.mathcode:MathCodePhase1",
    "mathcode_phase2": "posttrain.stages.mathcode:MathCodePhase2",
    "rm": "posttrain.stages.rm:RewardModelStage",
    "rlhf": "posttrain.stages.rlhf:RLHF",
}
STAGE_REGISTRY: dict[str, str | type[Stage]] = {}


class Stage:
    name: ClassVar[str] = ""
    reads: ClassVar[tuple[str, ...]] = ()  # dotted keys or section prefixes this stage reads
    # key the stage does not read -> the key that does that job in this stage (for the error message)
    instead: ClassVar[dict[str, str]] = {}
    previous: ClassVar[str | None] = None  # the stage whose final/ is model.path by default (None: pipeline order)

    def check(self, cfg: Any) -> None:
        """Checks that need no model; the default has none."""

    def prepare(self, cfg: Any) -> Any:
        raise NotImplementedError

    def needs(self, cfg: Any) -> list[tuple[str, str]]:
        """(stage, its final/ directory) this stage needs built first, besides model.path's previous stage."""
        return []

    def check_resume(self, cfg: Any, checkpoint: Path) -> None:
        """Refuse a checkpoint this config cannot continue; the default accepts any."""

    def run(self, prepared: Any, ctx: Any) -> dict:
        raise NotImplementedError

    def unread_keys(self, cfg: Any, keys: Iterable[str]) -> list[tuple[str, str | None]]:
        """(key, what to use instead) for each given key this stage would ignore under `cfg`."""
        return [(key, self._instead(key)) for key in keys if not reads(self.reads, key)]

    def _instead(self, key: str) -> str | None:
        return next((v for k, v in self.instead.items() if key == k or key.startswith(f"{k}.")), None)


def reads(prefixes: Iterable[str], key: str) -> bool:
    """Whether `key` is one of `prefixes` or lies under one (or is a section holding one, e.g. `model`)."""
    return any(
        key == p or key.startswith(f"{p}.") or p.startswith(f"{key}.") for p in (*COMMON_KEYS, *prefixes)
    )


def register_stage(name: str) -> Callable[[type[Stage]], type[Stage]]:
    """Class decorator: `posttrain run stage=<name>` runs this stage."""

    def add(cls: type[Stage]) -> type[Stage]:
        if name in STAGE_REGISTRY and STAGE_REGISTRY[name] is not cls and name not in _BUILTIN:
            raise ValueError(f"stage {name!r} is already registered")
        cls.name = name
        STAGE_REGISTRY[name] = cls
        return cls

    return add


def stage_names() -> list[str]:
    """Every runnable stage, builtin and registered, without importing any of them."""
    return list(dict.fromkeys([*_BUILTIN, *STAGE_REGISTRY]))


def get_stage(name: str) -> Stage:
    entry = STAGE_REGISTRY.get(name) or _BUILTIN.get(name)
    if entry is None:
        raise KeyError(name)
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        STAGE_REGISTRY[name] = entry
    return entry()


def group_of(stage: str) -> str | None:
    return next((group for group, members in GROUPS.items() if stage in members), None)


def check_stage_name(stage: str) -> None:
    """One line naming the closest stage, and every runnable name, for a stage that does not exist."""
    import difflib

    known = [*stage_names(), *GROUPS, "all"]
    if stage not in known:
        close = difflib.get_close_matches(stage, known, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(f"unknown stage '{stage}'{hint} (available: {', '.join(known)})")


def pipeline() -> list[str]:
    """The stages `stage=all` runs, in order."""
    return [name for name in ORDER if name in stage_names()]


def unread_error(stage: Stage, cfg: Any, keys: Iterable[str]) -> UserError | None:
    unread = stage.unread_keys(cfg, keys)
    if not unread:
        return None
    key, instead = unread[0]
    hint = "" if not instead else f"; {instead}" if " " in instead else f"; use '{instead}'"
    return UserError(f"stage={stage.name} does not read '{key}'{hint}")
