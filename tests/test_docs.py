"""Docs that cannot rot: every ```python block in README.md and docs/*.md runs, and the cheap shell
commands they show (`posttrain --help`, `envs list`, `envs try`, `config show`, `completion`) succeed.

Each snippet runs as a plain script (no `__main__` guard, as a reader pastes it) in a subprocess, offline,
from a scratch directory that holds the repository's examples/. A block right after
`<!-- no-test: <reason> -->` is skipped with that reason; keep such markers few (a trained model, minutes).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import cli_env

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*no-test:(.*?)-->")
SHELL_LANGUAGES = ("bash", "sh", "shell", "console", "")
SHELL_OPERATORS = {">", ">>", "2>", "|", "&&", "||", ";", "<"}
# posttrain sub-commands cheap and side-effect free enough to run from the docs
CHEAP = (("--help",), ("envs", "list"), ("envs", "try"), ("config", "show"), ("completion",))


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    language: str
    code: str
    skip: str | None  # the no-test reason

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip().splitlines()
            marker = MARKER.fullmatch(before[-1].strip()) if before else None
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(doc, line, match.group(1), match.group(2), marker.group(1).strip() if marker else None))
    return found


def shell_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `posttrain`) for every cheap `posttrain ...` line of a shell block, once each."""
    commands: dict[str, tuple[str, list[str]]] = {}
    for block in blocks():
        if block.language not in SHELL_LANGUAGES or block.skip:
            continue
        for offset, raw in enumerate(block.code.replace("\\\n", " ").splitlines(), start=1):  # join `\` lines
            line = raw.strip().removeprefix("$ ")
            if not line.startswith("posttrain "):
                continue
            words = shlex.split(line, comments=True)
            cut = next((i for i, w in enumerate(words) if w in SHELL_OPERATORS), len(words))
            argv = words[1:cut]  # the command itself; a redirection or pipe after it is the reader's business
            if any(tuple(argv[: len(cheap)]) == cheap for cheap in CHEAP):
                commands.setdefault(" ".join(argv), (f"{block.where}+{offset}", argv))
    return list(commands.values())


PYTHON = [b for b in blocks() if b.language == "python"]


def run_in_own_group(argv: list[str], cwd: Path, timeout_s: float = 300) -> tuple[int, str]:
    """(exit code, stderr); on timeout the whole process group goes (pool workers, Ray) and the test fails."""
    env = {**cli_env(), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        pytest.fail(f"still running after {timeout_s:.0f} s; stderr ends: {stderr[-2000:]}")
    return process.returncode, stderr


@pytest.fixture
def scratch(tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_python_snippet_runs_as_a_plain_script(block, scratch):
    if block.skip:
        pytest.skip(block.skip)
    script = scratch / "snippet.py"
    script.write_text(block.code)
    returncode, stderr = run_in_own_group([sys.executable, str(script)], scratch)
    assert returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]  # a crash the script survived is still a crash


COMMANDS = shell_commands()


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_shell_command_succeeds(where, argv, scratch):
    returncode, stderr = run_in_own_group([sys.executable, "-m", "posttrain.cli", *argv], scratch)
    assert returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]


def test_the_harness_sees_the_docs_and_every_marker_has_a_reason():
    assert len(PYTHON) >= 5 and any(argv == ["--help"] for _, argv in COMMANDS)
    assert all(block.skip for block in blocks() if block.skip is not None)  # `<!-- no-test: -->` needs a reason
    for doc in DOCS:  # a marker must sit right before a fenced block, or it skips nothing
        lines = doc.read_text().splitlines()
        for index, line in enumerate(lines):
            if MARKER.fullmatch(line.strip()):  # a marker is a line of its own
                following = next((n for n in lines[index + 1 :] if n.strip()), "")
                assert following.startswith("```"), f"{doc.name}:{index + 1}: no-test marker not before a block"
