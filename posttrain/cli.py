"""The `posttrain` command.

Sub-commands register themselves on the parser; each handler returns an exit code. A `UserError`
anywhere becomes one `error: ...` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import shtab

from posttrain.completion import complete_config_keys
from posttrain.config.cli import CONFIG_HELP, stage_and_overrides
from posttrain.console import progress_enabled, quiet_library_progress_bars
from posttrain.errors import UserError

EXAMPLES = """\
examples:
  posttrain run stage=sft                                  # the embedded default: tiny ZAYA learns addition
  posttrain run stage=sft trainer.max_steps=200 seed=1     # override any config key
  posttrain run stage=sft model.path=./my-base data.path=train.jsonl model.lora.r=8
  posttrain run stage=sft resume=auto                      # continue from the newest checkpoint
  posttrain run --config my.yaml stage=sft seed=1          # keys from a YAML file; key=value still wins
  posttrain config show stage=rlve                         # the resolved config, without running anything
  posttrain run stage=rlve                                 # RL on envs, adaptive difficulty (sft first if needed)
  posttrain run stage=all run.root=runs/exp1               # every stage, in order, chained by final/
  posttrain envs try add --difficulty 2 --seed 0           # one problem, its reference and the oracle's verdict
  posttrain eval model.path=runs/rlve/final envs.names=[add]
  posttrain rsa prompt="What is 12+34?"                    # Markovian RSA inference

Config keys are listed in configs/defaults.yaml and configs/stages/<stage>.yaml; `posttrain config show
stage=<name>` prints them all, resolved.
"""


def _run(args: argparse.Namespace) -> int:
    from posttrain.runner import run_stage

    stage, overrides = stage_and_overrides(args.overrides, args.config)
    run_stage(stage, overrides, config_file=args.config)
    return 0


def add_override_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str,
    epilog: str,
    overrides_help: str = "config overrides",
) -> argparse.ArgumentParser:
    """A sub-command that takes `key=value` arguments; `handler(args)` returns the exit code."""
    parser = subparsers.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    complete_config_keys(parser.add_argument("overrides", nargs="*", metavar="key=value", help=overrides_help))
    parser.set_defaults(func=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posttrain",
        description="RL post-training toolkit: SFT, reasoning warmup, RLVE-Gym RL, math/code RL, RLHF.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    run = add_override_command(
        sub,
        "run",
        _run,
        help="run a stage: posttrain run stage=<sft|rlve|all> [--config FILE] [key=value ...]",
        description="Run a post-training stage with config overrides given as key=value.",
        epilog=EXAMPLES,
        overrides_help="stage=<name> and config overrides",
    )
    run.add_argument("--config", metavar="FILE", help=CONFIG_HELP).complete = shtab.FILE  # type: ignore[attr-defined]
    for module in _subcommand_modules():
        module.register(sub)
    return parser


def _subcommand_modules() -> list:
    """Sub-commands contributed by other parts of posttrain (envs, eval, rsa)."""
    import importlib

    modules = []
    for name in (
        "posttrain.envs.cli",
        "posttrain.rollout.cli",
        "posttrain.eval_cli",
        "posttrain.serve.cli",
        "posttrain.config.cli",
        "posttrain.completion",
    ):
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return modules


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not progress_enabled():
        quiet_library_progress_bars()
    from posttrain.runner import StageFailed

    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StageFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
