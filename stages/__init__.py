"""The post-training stages, in pipeline order. Each is a thin composition of the engine.

A stage module has `prepare(cfg)`, which checks and loads every input without writing anything, and
`run(prepared, ctx) -> summary`, which does the work inside the run directory. An optional
`check(cfg)` holds the checks that need no model, so they run before a previous stage is built; an
optional `check_resume(cfg, checkpoint_dir)` refuses, before anything is written, a checkpoint this
config cannot continue.
"""

from types import ModuleType

from posttrain.stages import rlve, rm, sft

ORDER = ("sft", "warmup", "rlve", "mathcode", "rlhf")
STAGES: dict[str, ModuleType] = {"sft": sft, "rlve": rlve, "rm": rm}

__all__ = ["ORDER", "STAGES"]
