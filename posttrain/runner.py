"""`posttrain run`: compose the config, check every input, claim the run directory, run the stage.

All checks that can fail on user input happen before the run directory is touched, so a bad
command leaves nothing behind and overwrites nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posttrain.checkpoint import META_FILE, CheckpointManager, step_of
from posttrain.config import Config, closest, compose, load_saved, save, to_object
from posttrain.console import progress_enabled, quiet_library_progress_bars
from posttrain.errors import UserError
from posttrain.metrics import MetricsLogger
from posttrain.trackers import open_trackers


@dataclass
class RunContext:
    """What a stage needs from the run: its config, directory, checkpoints, metrics and resume point."""

    cfg: Config
    dir: Path
    checkpoints: CheckpointManager
    resume_from: Path | None
    progress: bool
    metrics: MetricsLogger

    @property
    def final(self) -> Path:
        return self.dir / "final"

    @property
    def plots(self) -> Path:
        return self.dir / "plots"


def _resume_point(cfg: Config, run_dir: Path, checkpoints: CheckpointManager) -> Path | None:
    """The checkpoint to continue from, or None for a fresh run; refuses to clobber another run."""
    resume = str(cfg.resume).lower()
    if resume == "auto":
        return checkpoints.latest()
    if resume == "false":
        if run_dir.exists() and any(run_dir.iterdir()) and not cfg.run.overwrite:
            raise UserError(
                f"run.dir={str(run_dir)!r} already holds a run; pass resume=auto to continue it "
                "or run.overwrite=true to replace it"
            )
        return None
    source = Path(cfg.resume)
    if (source / META_FILE).is_file():
        return source
    latest = CheckpointManager(source / "checkpoints", keep=1).latest()
    if latest is None:
        raise UserError(f"resume={cfg.resume!r} is neither a checkpoint nor a run directory with checkpoints")
    return latest


def _check_same_stage(cfg: Config, run_dir: Path) -> None:
    saved = run_dir / "config.yaml"
    if saved.is_file() and str(cfg.resume).lower() != "false":
        previous = load_saved(saved).get("stage")
        if previous != cfg.stage:
            raise UserError(f"run.dir={str(run_dir)!r} holds a '{previous}' run, not '{cfg.stage}'")


SHARED_KEYS = ("run.root", "seed", "device", "logging.progress")


def scoped_overrides(stage: str, overrides: Sequence[str]) -> list[str]:
    """The overrides that apply to `stage`: unscoped ones, then `<stage>.key=value` with the prefix cut.

    A prefix naming another pipeline stage (`sft.trainer.max_steps=30` while running rlve) is kept out of
    this stage's config; it reaches that stage when it runs (`stage=all`, or built on demand below).
    """
    from posttrain.stages import ORDER

    plain, mine = [], []
    for item in overrides:
        head, _, rest = item.partition(".")
        if head not in ORDER:
            plain.append(item)
        elif head == stage:
            mine.append(rest)
    return plain + mine


def previous_stage_final(stage: str, cfg: Config) -> tuple[str, str | None]:
    """`model.path` default: (the previous stage's final/ under run.root, that stage's name if it must be built)."""
    from posttrain.stages import ORDER, STAGES

    earlier = [s for s in ORDER[: ORDER.index(stage)] if s in STAGES]
    if not earlier:
        raise UserError(f"stage '{stage}' has no previous stage; set model.path")
    final = Path(cfg.run.root) / earlier[-1] / "final"
    return str(final), None if (final / "config.json").is_file() else earlier[-1]


def build_previous(previous: str, final: str, overrides: Sequence[str]) -> None:
    """Run `previous` with the shared keys and every stage-scoped override (resuming a partial run)."""
    from posttrain.stages import ORDER

    print(f"model.path not set and {final} does not exist: running stage '{previous}' first", flush=True)
    forwarded = [o for o in overrides if o.split("=", 1)[0] in SHARED_KEYS or o.partition(".")[0] in ORDER]
    run_stage(previous, [*forwarded, "resume=auto"])


def run_stage(stage: str, overrides: Sequence[str], config_file: str | None = None) -> dict:
    """Run one stage (or `all`, in pipeline order) and return its summary. `config_file`: a user's YAML,
    layered between the stage's defaults and `overrides`, for every stage `all` runs."""
    from posttrain.stages import ORDER, STAGES

    if stage == "all":
        summaries = {}
        for i, name in enumerate(s for s in ORDER if s in STAGES):
            # run.dir is per stage; a plain model.path is the pipeline's start, so only the first stage takes it
            dropped = ("run.dir=",) if i == 0 else ("run.dir=", "model.path=")
            summaries[name] = run_stage(name, [o for o in overrides if not o.startswith(dropped)], config_file)
        return summaries
    if stage not in STAGES:
        suggestion = closest(stage, list(STAGES))
        hint = f"; did you mean '{suggestion}'?" if suggestion else ""
        raise UserError(f"unknown stage '{stage}'{hint} (available: {', '.join([*STAGES, 'all'])})")
    module = STAGES[stage]
    raw: DictConfig = compose(stage, scoped_overrides(stage, overrides), user_file=config_file)
    cfg = to_object(raw)
    build = None
    if cfg.model.path is None:
        cfg.model.path, build = previous_stage_final(stage, cfg)
        raw.model.path = cfg.model.path
    run_dir = Path(cfg.run.dir)
    checkpoints = CheckpointManager(run_dir / "checkpoints", keep=cfg.trainer.keep_checkpoints)
    _check_same_stage(cfg, run_dir)
    resume_from = _resume_point(cfg, run_dir, checkpoints)
    replace = resume_from is None and run_dir.exists() and any(run_dir.iterdir())
    if replace and not (run_dir / "config.yaml").is_file():
        raise UserError(f"run.dir={str(run_dir)!r} is not empty and is not a posttrain run; refusing to replace it")
    if build is not None:
        if hasattr(module, "check"):  # the checks that need no model run before the previous stage's work
            module.check(cfg)
        build_previous(build, cfg.model.path, overrides)
    prepared = module.prepare(cfg)
    if resume_from is not None and hasattr(module, "check_resume"):  # does the checkpoint fit this config?
        module.check_resume(cfg, resume_from)  # the last check that can fail on user input; nothing written yet

    if replace:
        shutil.rmtree(run_dir)
    save(raw, run_dir / "config.yaml")
    resume_step = step_of(resume_from) if resume_from else None
    trackers = open_trackers(cfg.logging.report_to, run_dir, OmegaConf.to_container(raw), resume_step)
    metrics = MetricsLogger(run_dir / "metrics.jsonl", resume_step=resume_step, trackers=trackers)
    progress = progress_enabled(cfg.logging.progress)
    if not progress:
        quiet_library_progress_bars()
    ctx = RunContext(cfg, run_dir, checkpoints, resume_from, progress, metrics)
    try:
        summary = module.run(prepared, ctx)
    finally:
        metrics.close()
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
