"""`posttrain config show`: the config a run would use, composed and checked, without running anything."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import shtab

from posttrain.completion import complete_config_keys
from posttrain.errors import UserError

CONFIG_HELP = "a YAML file of config keys, layered between the stage's defaults and the key=value arguments"


def stage_and_overrides(arguments: Sequence[str], config_file: str | None) -> tuple[str, list[str]]:
    """The stage (the last `stage=`, else the config file's `stage:`) and the other `key=value` arguments."""
    from posttrain.config.load import read_user_file

    named = [a.split("=", 1)[1] for a in arguments if a.startswith("stage=")]
    rest = [a for a in arguments if not a.startswith("stage=")]
    if named:
        return named[-1], rest
    from_file = read_user_file(config_file).get("stage") if config_file is not None else None
    if from_file is not None:
        return str(from_file), rest
    raise UserError("missing stage=<name>, e.g. `posttrain run stage=sft`")


def _show(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from posttrain.plugins import load_plugins, plugins_in
    from posttrain.runner import checked_config, stage_plan
    from posttrain.stagekit import check_stage_name

    stage, overrides = stage_and_overrides(args.overrides, args.config)
    load_plugins(plugins_in(overrides, args.config))  # a plugin's stage, env or loss must be known to the checks
    check_stage_name(stage)
    shown = []
    for name, own, strict in stage_plan(stage, overrides, args.config):  # stage=all, groups: a document each
        raw, cfg, kit = checked_config(name, own, args.config, strict=strict)
        kit.check(cfg)  # run's checks before any work: what `config show` prints, `run` accepts
        shown.append(OmegaConf.to_yaml(raw))
    print("---\n".join(shown), end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="show the resolved config of a stage", description=__doc__)
    actions = parser.add_subparsers(dest="config_command", metavar="action", required=True)
    show = actions.add_parser(
        "show",
        help="print the resolved config: posttrain config show stage=<name> [--config FILE] [key=value ...]",
        description="Print the config `posttrain run` would use with the same arguments, as YAML, and exit "
        "(stage=all or a group: one YAML document per stage, in run order).",
    )
    show.add_argument("--config", metavar="FILE", help=CONFIG_HELP).complete = shtab.FILE  # type: ignore[attr-defined]
    complete_config_keys(
        show.add_argument("overrides", nargs="*", metavar="key=value", help="stage=<name> and overrides")
    )
    show.set_defaults(func=_show)
