"""`posttrain run`: compose the config, check every input, claim the run directory, run the stage.

All checks that can fail on user input happen before the run directory is touched, so a bad command leaves
nothing behind and overwrites nothing. A failure after the start is reported on one line naming its cause and
the log that holds the traceback (`<run.dir>/error.log`); a run that failed before its first checkpoint does
not block a rerun. `resume=auto` on a finished run says so and changes nothing.
"""

from __future__ import annotations

import json
import shutil
import traceback
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posttrain.checkpoint import META_FILE, CheckpointManager, step_of
from posttrain.config import Config, compose, load_saved, save, to_object
from posttrain.config.load import read_user_file, user_file_keys
from posttrain.console import progress_enabled, quiet_library_progress_bars
from posttrain.errors import UserError
from posttrain.stagekit import (
    GROUPS,
    ORDER,
    Stage,
    check_stage_name,
    get_stage,
    group_of,
    pipeline,
    stage_names,
    unread_error,
)

ERROR_LOG, SUMMARY = "error.log", "summary.json"


class StageFailed(Exception):
    """A stage broke after it started; the message is one line, the traceback is in the run's error.log."""


def _holds_run(run_dir: Path, checkpoints: CheckpointManager) -> bool:
    """A run directory worth protecting: it finished, or it has a checkpoint to resume from."""
    return (run_dir / SUMMARY).is_file() or checkpoints.latest() is not None


def _resume_point(cfg: Config, run_dir: Path, checkpoints: CheckpointManager) -> Path | None:
    """The checkpoint to continue from, or None for a fresh run; refuses to clobber another run."""
    resume = str(cfg.resume).lower()
    if resume == "auto":
        return checkpoints.latest()
    if resume == "false":
        if _holds_run(run_dir, checkpoints) and not cfg.run.overwrite:
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


def _finished(cfg: Config, run_dir: Path) -> dict | None:
    """The summary of a run that already reached trainer.max_steps, when resuming it (nothing left to do)."""
    summary_file = run_dir / SUMMARY
    if str(cfg.resume).lower() != "auto" or not summary_file.is_file():
        return None
    summary = json.loads(summary_file.read_text())
    return summary if summary.get("steps", -1) >= cfg.trainer.max_steps else None


SHARED_KEYS = ("run.root", "seed", "device", "logging.progress", "plugins")


def scoped_overrides(stage: str, overrides: Sequence[str]) -> list[str]:
    """The overrides that apply to `stage`: unscoped ones, then `<stage>.key=value` with the prefix cut.

    A prefix naming another stage (`sft.trainer.max_steps=30` while running rlve) is kept out of this stage's
    config; it reaches that stage when it runs (`stage=all`, or built on demand below).
    """
    names, group = {*stage_names(), *ORDER, *GROUPS}, group_of(stage)
    plain, grouped, mine = [], [], []
    for item in overrides:
        head, _, rest = item.partition(".")
        if head not in names:
            plain.append(item)
        elif head == group:
            grouped.append(rest)
        elif head == stage:
            mine.append(rest)
    return plain + grouped + mine


def previous_stage_final(stage: str, kit: Stage, cfg: Config) -> tuple[str, str | None]:
    """`model.path` default: (the previous stage's final/ under run.root, that stage's name if it must be built)."""
    if kit.previous is not None:
        earlier = [kit.previous]
    else:
        order = [s for s in ORDER if s in stage_names()]
        earlier = order[: order.index(stage)] if stage in order else []
    if not earlier:
        raise UserError(f"stage '{stage}' has no previous stage; set model.path")
    final = Path(cfg.run.root) / earlier[-1] / "final"
    return str(final), None if (final / "config.json").is_file() else earlier[-1]


def build_previous(previous: str, final: str, overrides: Sequence[str], config_file: str | None = None) -> None:
    """Run `previous` with the shared keys (from the `--config` file, then the command line) and every
    stage-scoped override (resuming a partial run)."""
    names = {*stage_names(), *ORDER}
    print(f"{final} does not exist: running stage '{previous}' first", flush=True)
    forwarded = [o for o in overrides if o.split("=", 1)[0] in SHARED_KEYS or o.partition(".")[0] in names]
    run_stage(previous, [*_shared_keys_of(config_file), *forwarded, "resume=auto"])


def _shared_keys_of(config_file: str | None) -> list[str]:
    """The file's shared keys (run.root, seed, device, ...) as `key=value` overrides; the file's other keys are
    the requested stage's, not the previous one's. JSON values parse back unchanged as YAML."""
    if config_file is None:
        return []
    content = OmegaConf.to_container(read_user_file(config_file), resolve=False)
    found = []
    for key in SHARED_KEYS:
        node = content
        for part in key.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            found.append(f"{key}={json.dumps(node)}")
    return found


_MISSING = object()


def check_common(cfg: Config) -> None:
    """Checks every stage shares: the device exists, LoRA targets exist in the model."""
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("device=cuda but no GPU is visible to torch; use device=auto or device=cpu")
    if cfg.model.lora.r > 0 and cfg.model.lora.target_modules:
        from posttrain.models.lora import check_targets

        check_targets(cfg.model.path, cfg.model.lora)


def _run_sequence(stage: str, overrides: Sequence[str], config_file: str | None) -> dict:
    """stage=all or a group: each stage in order, chained by final/."""
    plan = stage_plan(stage, overrides, config_file)
    return {name: run_stage(name, own, config_file, strict=strict) for name, own, strict in plan}


def stage_plan(stage: str, overrides: Sequence[str], config_file: str | None) -> list[tuple[str, list[str], bool]]:
    """(stage, its overrides, strict) for each stage `stage` runs, in order: itself, a group's members, or every
    stage for `all`. In a sequence an unscoped key reaches every stage, so one of them must read it (checked
    here); run.dir is per stage; a plain model.path is the sequence's start, so only the first stage takes it;
    and a stage is not strict about keys another stage reads."""
    names = pipeline() if stage == "all" else list(GROUPS.get(stage, [stage]))
    if names == [stage]:
        return [(stage, list(overrides), True)]
    stages = [get_stage(name) for name in names]
    keys = [item.split("=", 1)[0] for item in overrides]
    for key in [*keys, *(user_file_keys(config_file) if config_file is not None else [])]:
        if key.partition(".")[0] in {*stage_names(), *ORDER, *GROUPS} or key == "stage":
            continue
        if all(kit.unread_keys(None, [key]) for kit in stages):
            raise UserError(f"none of the stages {', '.join(names)} reads '{key}'")
    plan = []
    for position, name in enumerate(names):
        dropped = ("run.dir=",) if position == 0 else ("run.dir=", "model.path=")
        plan.append((name, [o for o in overrides if not o.startswith(dropped)], False))
    return plan


def run_pipeline(overrides: Sequence[str], config_file: str | None) -> dict:
    """stage=all: every stage in order, then the stage-by-stage table of held-out scores."""
    from posttrain.pipeline_report import pipeline_report

    names = pipeline()
    summaries = _run_sequence("all", overrides, config_file)
    root = Path(summaries[names[0]]["final"]).parents[1]
    start = str(load_saved(root / names[0] / "config.yaml").model.path)
    summaries["pipeline"] = pipeline_report(root, names, start)
    return summaries


def checked_config(
    stage: str, overrides: Sequence[str], config_file: str | None = None, *, strict: bool = True
) -> tuple[DictConfig, Config, Stage]:
    """(composed config, typed config, stage) after every check that needs no model and no previous stage:
    what `posttrain config show` prints is what `posttrain run` accepts. A stage's own `check` runs separately
    (`run` first skips a finished run)."""
    from_file = user_file_keys(config_file) if config_file is not None else []
    mine = scoped_overrides(stage, overrides)
    raw: DictConfig = compose(stage, mine, user_file=config_file)
    kit = get_stage(stage)
    own = [item.partition(".")[2] for item in overrides if item.partition(".")[0] in (stage, group_of(stage))]
    given = [item.split("=", 1)[0] for item in mine] + from_file if strict else [o.split("=", 1)[0] for o in own]
    error = unread_error(kit, raw, [key for key in given if key != "stage"])
    if error is not None:
        raise error
    return raw, to_object(raw), kit


def run_stage(
    stage: str, overrides: Sequence[str], config_file: str | None = None, *, strict: bool = True
) -> dict:
    """Run one stage (or `all`, in pipeline order) and return its summary. `config_file`: a user's YAML, layered
    between the stage's defaults and `overrides` (for every stage `all` runs). `strict`: a key the stage does not
    read is an error (under stage=all a key only has to be read by some stage)."""
    from posttrain.plugins import load_plugins, plugins_in

    load_plugins(plugins_in(overrides, config_file))  # before the checks: a plugin may register a stage, env or loss
    check_stage_name(stage)
    if stage == "all":
        return run_pipeline(overrides, config_file)
    if stage in GROUPS:
        return _run_sequence(stage, overrides, config_file)
    raw, cfg, kit = checked_config(stage, overrides, config_file, strict=strict)
    build = None
    if cfg.model.path is None:
        cfg.model.path, build = previous_stage_final(stage, kit, cfg)
        raw.model.path = cfg.model.path
    run_dir = Path(cfg.run.dir)
    checkpoints = CheckpointManager(run_dir / "checkpoints", keep=cfg.trainer.keep_checkpoints)
    _check_same_stage(cfg, run_dir)
    finished = _finished(cfg, run_dir)
    if finished is not None:
        print(f"run.dir={str(run_dir)!r} already finished its {finished['steps']} steps; nothing to do", flush=True)
        return finished
    resume_from = _resume_point(cfg, run_dir, checkpoints)
    replace = resume_from is None and run_dir.exists() and any(run_dir.iterdir())
    if replace and not (run_dir / "config.yaml").is_file():
        raise UserError(f"run.dir={str(run_dir)!r} is not empty and is not a posttrain run; refusing to replace it")
    kit.check(cfg)  # the checks that need no model run before the previous stage's work
    if build is not None:
        build_previous(build, cfg.model.path, overrides, config_file)
    for needed, final in kit.needs(cfg):  # e.g. rlhf's reward model
        if not (Path(final) / "config.json").is_file():
            build_previous(needed, final, overrides, config_file)
    check_common(cfg)
    prepared = kit.prepare(cfg)
    if resume_from is not None:
        kit.check_resume(cfg, resume_from)  # the last check that can fail on user input; nothing written yet
    if replace:
        shutil.rmtree(run_dir)
    return _run_claimed(kit, prepared, cfg, raw, run_dir, checkpoints, resume_from)


def _run_claimed(kit, prepared, cfg, raw, run_dir, checkpoints, resume_from) -> dict:
    from posttrain.metrics import MetricsLogger
    from posttrain.run_context import RunContext
    from posttrain.trackers import open_trackers

    save(raw, run_dir / "config.yaml")
    (run_dir / ERROR_LOG).unlink(missing_ok=True)
    resume_step = step_of(resume_from) if resume_from else None
    trackers = open_trackers(cfg.logging.report_to, run_dir, OmegaConf.to_container(raw), resume_step)
    metrics = MetricsLogger(run_dir / "metrics.jsonl", resume_step=resume_step, trackers=trackers)
    progress = progress_enabled(cfg.logging.progress)
    if not progress:
        quiet_library_progress_bars()
    ctx = RunContext(cfg, run_dir, checkpoints, resume_from, progress, metrics)
    try:
        summary = kit.run(prepared, ctx)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        log = run_dir / ERROR_LOG
        log.write_text(traceback.format_exc())
        cause = (str(exc).strip().splitlines() or [""])[0][:300]
        raise StageFailed(f"stage {kit.name} failed: {type(exc).__name__}: {cause} (traceback in {log})") from exc
    finally:
        metrics.close()
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
