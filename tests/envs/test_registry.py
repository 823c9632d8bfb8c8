"""Names resolve to envs: builtin, decorator, module:Class, file.py:Class, entry points; typos get suggestions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from posttrain.envs import Env, Problem, expand_names, list_envs, make_env, register_env, registry
from posttrain.errors import UserError
from tests.conftest import cli_env, run_cli

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
    with pytest.raises(UserError, match="no such file"):
        make_env("no/such/file.py:Env")
    with pytest.raises(UserError, match="no module named 'no_such_module_xyz'"):
        make_env("no_such_module_xyz:Env")


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch):
    """Registrations made by a test vanish with it instead of leaking into every later test's registry."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._registered()))


def test_register_env_decorator(scratch_registry):
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
    everything = list_envs()
    assert len({s.name for s in everything}) == len(everything)
    assert {s.source for s in everything} == {"builtin", "rlve", "rg"}
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


def test_cli_lists_every_source_by_default_with_counts(tmp_path: Path):
    cache = {"XDG_CACHE_HOME": str(tmp_path)}
    as_json = run_cli("envs", "list", "--json", env=cache)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    names = [row["name"] for row in rows]
    rlve = [n for n in names if n.startswith("rlve:")]
    rg = [n for n in names if n.startswith("rg:")]
    builtin = [row["name"] for row in rows if row["source"] == "builtin"]
    assert len(names) == len(set(names)) and len(rlve) == 400 and 100 <= len(rg) <= 120 and len(builtin) == 17
    assert {"add", "rlve:TwoSAT", "rg:leg_counting"} <= set(names)
    assert next(r for r in rows if r["name"] == "rg:leg_counting")["max_difficulty"] == 35  # see test_adapters
    assert next(r for r in rows if r["name"] == "rlve:PolyaModel")["broken"]  # the broken list is applied
    table = run_cli("envs", "list", env=cache)
    lines = table.stdout.splitlines()
    assert lines[-1] == f"{len(names)} envs: 17 builtin, 400 rlve, {len(rg)} rg"
    assert [line.split("\t")[0] for line in lines[:-1]] == names
    only_rg = run_cli("envs", "list", "--source", "rg", "--json", env=cache)
    assert [row["name"] for row in json.loads(only_rg.stdout)] == rg


def test_adapter_listing_is_cached_per_version_and_survives_a_corrupt_cache(tmp_path: Path):
    """With the cache warm, listing every env imports neither gym; a corrupt cache is simply recomputed."""
    probe = (
        "import json, sys\n"
        "from posttrain.envs import list_envs\n"
        "specs = list_envs()\n"
        "print(json.dumps([len(specs), 'Gym' in sys.modules, 'reasoning_gym' in sys.modules]))\n"
    )

    def listing() -> list:
        env = {**cli_env(), "XDG_CACHE_HOME": str(tmp_path)}
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    cold = listing()
    assert cold[1:] == [True, True]  # computed by importing the gyms
    files = sorted((tmp_path / "posttrain" / "env-specs").glob("*.json"))
    assert [f.name.split("-")[0] for f in files] == ["rg", "rlve"]
    assert listing() == [cold[0], False, False]
    files[0].write_text("{not json")
    assert listing() == [cold[0], False, True]  # rg recomputed, rlve still cached


def test_try_notes_a_clamped_difficulty_on_stderr():
    result = run_cli("envs", "try", "knights_knaves", "--difficulty", "40", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "note: knights_knaves goes up to difficulty 20; --difficulty 40 gives a difficulty-20 problem\n"
    )
    reference = next(line for line in result.stdout.splitlines() if line.startswith("reference:")).split()[-1]
    assert len(reference) == 2 + 20 // 2 and "correct=True" in result.stdout
    within = run_cli("envs", "try", "knights_knaves", "--difficulty", "20", "--seed", "1")
    assert within.returncode == 0 and within.stderr == ""


def test_try_reports_an_upstream_failure_on_one_line():
    result = run_cli("envs", "try", "rg:composite")  # listed as broken: fails to generate at level 0
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: rg:composite failed: generate(seed=0, difficulty=0): AssertionError")
