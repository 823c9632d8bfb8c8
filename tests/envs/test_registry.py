"""Names resolve to envs: builtin, decorator, module:Class, file.py:Class, entry points; typos get suggestions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from posttrain.envs import Env, Problem, expand_names, list_envs, make_env, register_env
from posttrain.errors import UserError
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "custom_env.py"

PLUGIN = """
from posttrain.envs import Env


class Echo(Env):
    name = "echo"

    def generate(self, seed, difficulty):
        return self.problem(seed, difficulty, "Say {}.".format(seed), str(seed))
"""


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UserError, match="did you mean 'countdown'"):
        make_env("contdown")
    with pytest.raises(UserError, match="did you mean 'rlve:AdditionTable'"):
        make_env("rlve:AdditonTable")
    with pytest.raises(UserError, match="did you mean 'rg:leg_counting'"):
        make_env("rg:leg_countin")
    with pytest.raises(UserError, match="not found"):
        make_env("no/such/file.py:Env")
    with pytest.raises(UserError, match="cannot import"):
        make_env("no_such_module_xyz:Env")


def test_register_env_decorator():
    @register_env(name="test_twice")
    class Twice(Env):
        def generate(self, seed: int, difficulty: int) -> Problem:
            return self.problem(seed, difficulty, f"2*{seed}?", str(2 * seed))

    env = make_env("test_twice")
    assert env.name == "test_twice"
    assert env.verify(env.generate(4, 0), "<answer>8</answer>").correct
    assert "test_twice" in [spec.name for spec in list_envs("plugin")]
    with pytest.raises(ValueError, match="may not contain"):
        register_env(Twice, name="bad:name")


def test_file_path_env_is_the_documented_example():
    name = f"{EXAMPLE.relative_to(REPO)}:ReverseWord"
    env = make_env(str(EXAMPLE) + ":ReverseWord")
    problem = env.generate(7, 2)
    assert problem.env.endswith("custom_env.py:ReverseWord")  # the name resolves again in any worker
    assert env.verify(problem, f"<answer>{env.solve(problem)}</answer>").correct
    assert env.verify(problem, "<answer>zz</answer>").reward == 0.0
    assert len(EXAMPLE.read_text().splitlines()) <= 35
    result = run_cli("envs", "try", name, "--difficulty", "2", "--seed", "7", "--json", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"]["correct"] is True


def test_module_class_and_entry_point(tmp_path: Path):
    """A pip-installed package is a module plus a dist-info with entry_points.txt on sys.path."""
    (tmp_path / "echo_envs.py").write_text(PLUGIN)
    dist = tmp_path / "echo_envs-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-envs\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[posttrain.envs]\necho = echo_envs:Echo\nbroken = echo_envs:Missing\n")
    script = textwrap.dedent("""
        import json
        from posttrain.envs import list_envs, make_env
        specs = {s.name: s.source for s in list_envs()}
        env = make_env("echo")
        by_module = make_env("echo_envs:Echo")
        problem = by_module.generate(3, 0)
        print(json.dumps([specs.get("echo"), env.verify(env.generate(5, 0), "<answer>5</answer>").correct,
                          problem.env, "broken" in specs]))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], env={"PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["plugin", True, "echo_envs:Echo", False]
    assert "skipping env entry point 'broken'" in out.stderr


def test_list_envs_sources_and_shorthands():
    builtin = list_envs("builtin")
    assert {s.source for s in builtin} == {"builtin"} and len(builtin) >= 16
    rlve = list_envs("rlve")
    assert len(rlve) == 400 and all(s.name.startswith("rlve:") for s in rlve)
    broken = {s.name for s in rlve if s.broken}
    names = expand_names(["rlve", "add"])
    assert len(names) == 400 - len(broken) + 1 and not broken & set(names)
    rg = list_envs("rg")
    assert len(rg) >= 100 and any(s.max_difficulty and s.max_difficulty > 0 for s in rg)
    with pytest.raises(UserError, match="unknown env source"):
        list_envs("gym")


def test_cli_list_and_errors():
    result = run_cli("envs", "list", "--source", "builtin", "--json")
    assert result.returncode == 0, result.stderr
    assert {row["name"] for row in json.loads(result.stdout)} == {s.name for s in list_envs("builtin")}
    bad = run_cli("envs", "try", "contdown")
    assert bad.returncode == 2 and "did you mean 'countdown'" in bad.stderr
    wrong = run_cli("envs", "try", "add", "--difficulty", "1", "--seed", "2", "--answer", "-1")
    assert wrong.returncode == 0 and "correct=False" in wrong.stdout


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ("Hang", ["--timeout", "2"], "generate(seed=0, difficulty=0): timeout after 2s"),
        ("Crash", [], "worker crashed (exit code 3)"),
        ("BadVerifier", ["--seed", "0", "--answer", "1", "--timeout", "2"], "verify: timeout after 2s"),
    ],
)
def test_try_survives_envs_that_hang_or_crash(env, args, message):
    """`envs try` runs the env in a killable worker, as training does: one error line, exit 2, no hang."""
    result = run_cli("envs", "try", f"tests/envs/faulty_envs.py:{env}", *args, cwd=REPO)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
