"""`posttrain completion bash|zsh`: a shell completion script for sub-commands, options and config keys.

shtab writes the script from the argparse parser, so it follows every sub-command and option. The config
keys (`trainer.max_steps=` ...) and the values of `stage=` and boolean keys are embedded when the script is
generated: completing never starts Python. Regenerate after upgrading posttrain.
"""

from __future__ import annotations

import argparse
import sys

KEYS_FUNCTION = "_posttrain_config_keys"
SHELLS = ("bash", "zsh")

# Completes `key=` from the keys, and after `key=` the values known for that key. Bash splits words at
# `=`, so the token is taken from the command line itself; the reply then replaces the text after `=`.
_BASH = """
%(function)s() {
  local line="${COMP_LINE:0:COMP_POINT}"
  local token="${line##*[[:space:]]}"
  if [[ "$token" == *=* ]]; then
    case "${token%%%%=*}" in
%(cases)s
    esac
  else
    compgen -W "%(keys)s" -- "$token"
  fi
}
"""
# After shtab's function: no space after a single completed `key=`, so the value can be typed straight away
# (shtab runs the key function in a subshell, where `compopt` cannot reach the completion).
_BASH_NOSPACE = """
_posttrain_complete() {
  _shtab_posttrain "$@"
  if [[ ${#COMPREPLY[@]} -gt 0 && "${COMPREPLY[*]}" == *= && "${COMPREPLY[*]}" != *"= "* ]]; then
    compopt -o nospace 2>/dev/null || :
  fi
}
complete -o bashdefault -F _posttrain_complete posttrain
"""
_ZSH = """
%(function)s() {
  if [[ $PREFIX == *=* ]]; then
    local key=${PREFIX%%%%=*}
    compset -P '*='
    case $key in
%(cases)s
    esac
  else
    compadd -S '' -- %(keys)s
  fi
}
"""


def _keys_and_values() -> tuple[list[str], dict[str, list[str]]]:
    from posttrain.config.load import schema_fields
    from posttrain.stagekit import GROUPS, stage_names

    typed = list(schema_fields())
    sections = {key.rsplit(".", 1)[0] for key, _ in typed if "." in key}
    keys = [f"{key}=" for key, _ in typed if key not in sections]
    values = {"stage": [*stage_names(), *GROUPS, "all"]}
    values.update({key: ["true", "false"] for key, kind in typed if kind is bool})
    return keys, values


def preamble(shell: str) -> str:
    """The shell function that completes config keys and their known values."""
    keys, values = _keys_and_values()
    if shell == "bash":
        cases = "\n".join(f'      {key}) compgen -W "{" ".join(v)}" -- "${{token#*=}}" ;;' for key, v in values.items())
        return _BASH % {"function": KEYS_FUNCTION, "cases": cases, "keys": " ".join(keys)}
    cases = "\n".join(f"      {key}) compadd -- {' '.join(v)} ;;" for key, v in values.items())
    return _ZSH % {"function": KEYS_FUNCTION, "cases": cases, "keys": " ".join(keys)}


def complete_config_keys(action: argparse.Action) -> None:
    """Mark a `key=value` positional so the completion script offers config keys for it."""
    action.complete = {"bash": KEYS_FUNCTION, "zsh": KEYS_FUNCTION}  # type: ignore[attr-defined]


def script(shell: str) -> str:
    import shtab

    from posttrain.cli import build_parser

    text = shtab.complete(build_parser(), shell=shell, preamble={shell: preamble(shell)})
    return text + _BASH_NOSPACE if shell == "bash" else text


def _print(args: argparse.Namespace) -> int:
    sys.stdout.write(script(args.shell))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "completion",
        help="print a shell completion script: posttrain completion bash|zsh",
        description="Print a completion script for sub-commands, options and config keys. Bash: "
        "`posttrain completion bash > ~/.local/share/bash-completion/completions/posttrain`; zsh: "
        '`posttrain completion zsh > "${fpath[1]}/_posttrain"`.',
    )
    parser.add_argument("shell", choices=SHELLS)
    parser.set_defaults(func=_print)
