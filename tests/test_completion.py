"""`posttrain completion bash|zsh`: the generated scripts, run by the real shells, complete sub-commands,
options, config keys and the values of `stage=` and boolean keys.

Bash is driven through its completion variables (COMP_WORDS split at `=` as bash splits them); zsh through
a pseudo-terminal, typing the line and a TAB, with `compadd` recording what zsh would offer.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from posttrain.cli import main
from posttrain.completion import script

BASH_HARNESS = r"""
source "$1"
COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}; shift 2
COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_posttrain_complete posttrain "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""
# Types the line and a TAB into an interactive zsh; `compadd` appends every candidate it receives to $3.
# The rest is typed once candidates arrived (zsh cuts completion short when keys are already waiting),
# and writes $3.done when the shell runs it.
ZSH_HARNESS = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "autoload -Uz compinit; compinit -u -D; eval \"\$(<$1)\""
zpty -w z "compadd () { local -a hits; builtin compadd -O hits \"\$@\"; print -l -- \$hits >> $3 }"
zpty -w -n z "$2"$'\t'
repeat 600 { [[ -f $3 ]] && break; sleep 0.1 }
zpty -w -n z $'\C-u'"print done > $3.done"$'\n'
repeat 600 { [[ -f $3.done ]] && break; sleep 0.1 }
zpty -d z
"""
COMMANDS = ["completion", "config", "envs", "eval", "rsa", "run", "serve"]


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("completion") / "posttrain.bash"
    path.write_text(script("bash"))
    return path


@pytest.mark.parametrize(
    ("line", "words", "expected"),
    [
        ("posttrain ", ["posttrain", ""], COMMANDS),
        ("posttrain run trainer.max_st", ["posttrain", "run", "trainer.max_st"], ["trainer.max_steps="]),
        ("posttrain run model.lora.", ["posttrain", "run", "model.lora."],
         ["model.lora.alpha=", "model.lora.dropout=", "model.lora.r=", "model.lora.target_modules="]),
        ("posttrain run stage=r", ["posttrain", "run", "stage", "=", "r"], ["rlhf", "rlve", "rm"]),
        ("posttrain run stage=", ["posttrain", "run", "stage", "="],
         ["all", "mathcode", "mathcode_phase1", "mathcode_phase2", "rlhf", "rlve", "rm", "sft", "warmup"]),
        ("posttrain run run.overwrite=", ["posttrain", "run", "run.overwrite", "="], ["false", "true"]),
        ("posttrain run seed=", ["posttrain", "run", "seed", "="], []),  # no known values: nothing invented
        ("posttrain config sh", ["posttrain", "config", "sh"], ["show"]),
        ("posttrain config show logging.rep", ["posttrain", "config", "show", "logging.rep"], ["logging.report_to="]),
        ("posttrain eval eval.temp", ["posttrain", "eval", "eval.temp"], ["eval.temperature=", "eval.temperatures="]),
        ("posttrain run --con", ["posttrain", "run", "--con"], ["--config"]),
        ("posttrain completion ", ["posttrain", "completion", ""], ["bash", "zsh"]),
    ],
)  # fmt: skip
def test_bash_completes_commands_keys_and_values(bash_script, line, words, expected):
    result = subprocess.run(
        ["bash", "-c", BASH_HARNESS, "harness", str(bash_script), line, *words],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(filter(None, result.stdout.splitlines())) == expected


def test_bash_completes_files_for_config(bash_script, tmp_path):
    (tmp_path / "my.yaml").write_text("seed: 1\n")
    words = ["posttrain", "run", "--config", "my"]
    result = subprocess.run(
        ["bash", "-c", BASH_HARNESS, "harness", str(bash_script), "posttrain run --config my", *words],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.stdout.split() == ["my.yaml"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("posttrain ru", ["run"]),
        ("posttrain run trainer.max_st", ["trainer.max_steps="]),
        ("posttrain run stage=r", ["rlhf", "rlve", "rm"]),
        ("posttrain config show run.overwrite=", ["false", "true"]),
    ],
)
def test_zsh_completes_commands_keys_and_values(tmp_path, line, expected):
    completion = tmp_path / "_posttrain"
    completion.write_text(script("zsh"))
    found = tmp_path / "candidates"
    result = subprocess.run(
        ["zsh", "-f", "-c", ZSH_HARNESS, "harness", str(completion), line, str(found)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (tmp_path / "candidates.done").is_file(), result.stderr
    assert sorted(set(found.read_text().split())) == expected


def test_an_unknown_shell_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["completion", "fish"])
    assert exit_.value.code == 2 and "invalid choice: 'fish'" in capsys.readouterr().err
