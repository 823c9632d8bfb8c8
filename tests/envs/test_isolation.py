"""EnvPool contains envs that hang, crash or return garbage, and scores hostile completions <= 0."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import pytest

from posttrain.envs import AllEnvsQuarantined, EnvPool, EnvsConfig, Problem, make_env
from tests.conftest import run_python

FAULTY = str(Path(__file__).with_name("faulty_envs.py"))
DOCS = Path(__file__).resolve().parents[2] / "docs" / "envs.md"


@pytest.fixture(scope="module")
def pool():
    config = EnvsConfig(
        workers=2, generate_timeout_s=3, verify_timeout_s=3, quarantine_after=2, max_completion_chars=20_000_000
    )
    with EnvPool(config, warm=["rg:leg_counting"]) as env_pool:  # the adapter's import is not a generate call
        yield env_pool


def test_hanging_crashing_and_garbage_envs_are_contained_and_quarantined(pool: EnvPool, caplog):
    names = [f"{FAULTY}:Hang", f"{FAULTY}:Crash", f"{FAULTY}:WrongProblem"]
    requests = [("add", 1, 2), *[(name, 0, 0) for name in names], ("sort", 2, 1)]
    with caplog.at_level(logging.WARNING, logger="posttrain.envs"):
        first = pool.generate_many(requests)
        assert first[0] == make_env("add").generate(1, 2) and first[-1] == make_env("sort").generate(2, 1)
        assert first[1:4] == [None, None, None]
        assert not pool.quarantined
        second = pool.generate_many(requests)
    assert second[1:4] == [None, None, None] and second[0] is not None
    assert set(pool.quarantined) == set(names)
    for name in names:
        assert any(name in record.getMessage() and "quarantined" in record.getMessage() for record in caplog.records)
    assert "timeout" in pool.quarantined[names[0]] and "crashed" in pool.quarantined[names[1]]
    kills = pool.pool.kills
    assert pool.generate_many(requests)[1:4] == [None, None, None]  # skipped: no more time spent on them
    assert pool.pool.kills == kills


def test_bad_verifiers_give_error_verdicts(pool: EnvPool):
    env = f"{FAULTY}:BadVerifier"
    problems = pool.generate_many([(env, seed, 0) for seed in range(3)])
    assert all(problems)
    add = pool.generate_many([("add", 0, 0)])[0]
    pairs = [(p, "<answer>1</answer>") for p in problems] + [(add, f"<answer>{add.reference}</answer>")]
    verdicts = pool.verify_many(pairs)
    for verdict in verdicts[:3]:
        assert verdict.reward == 0.0 and not verdict.correct and "error" in verdict.info
    assert "timeout" in verdicts[0].info["error"] and "crashed" in verdicts[1].info["error"]
    assert "invalid verdict" in verdicts[2].info["error"]
    assert verdicts[3].correct
    assert env in pool.quarantined


def test_hostile_completions_score_at_most_zero(pool: EnvPool):
    problems = pool.generate_many([(name, 3, 2) for name in ("add", "countdown", "maze", "rg:leg_counting")])
    assert all(isinstance(p, Problem) for p in problems), pool.last_error  # else the checks below are vacuous
    rng = random.Random(0)
    hostile = [
        "",
        "<answer>",
        "</answer><answer>",
        "<answer>" + "(" * 5000 + "</answer>",
        "\\boxed{" * 10_000,
        "x" * 10_000_000 + "<answer>1</answer>",
        bytes(rng.randrange(256) for _ in range(4096)),
        bytes(rng.randrange(256) for _ in range(100)).decode("latin-1") + "<answer>\x00</answer>",
        None,
        12345,
        "<answer>" + "9" * 100_000 + "</answer>",
    ]
    pairs = [(p, c) for p in problems for c in hostile] + [("not a problem", "x")]
    verdicts = pool.verify_many(pairs)
    assert len(verdicts) == len(pairs)
    assert all(v.reward <= 0.0 and not v.correct for v in verdicts)
    assert all("error" not in v.info for v in verdicts[:-1])  # judged as answers, not lost to an env error
    assert not pool.quarantined.keys() & {"add", "countdown", "maze", "rg:leg_counting"}  # model junk is no env fault


def test_oversized_completion_is_not_shipped():
    with EnvPool(EnvsConfig(workers=1, max_completion_chars=100)) as small:
        problem = make_env("add").generate(0, 0)
        verdict = small.verify_many([(problem, "y" * 101 + f"<answer>{problem.reference}</answer>")])[0]
    assert not verdict.format_ok and "longer than" in verdict.info["reason"]


def test_solve_many_matches_oracle(pool: EnvPool):
    problems = [make_env(name).generate(4, 3) for name in ("add", "toposort", "maze")]
    answers = pool.solve_many(problems)
    assert answers == [make_env(p.env).solve(p) for p in problems]
    pairs = [(p, f"<answer>{a}</answer>") for p, a in zip(problems, answers, strict=True)]
    assert all(v.correct for v in pool.verify_many(pairs))


def test_problem_json_round_trip_crosses_the_pool(pool: EnvPool):
    problem = Problem.from_dict(make_env("knapsack").generate(9, 4).to_dict())
    assert pool.verify_many([(problem, f"<answer>{problem.reference}</answer>")])[0].correct


def test_every_requested_env_quarantined_raises_instead_of_returning_nones():
    crash, wrong = f"{FAULTY}:Crash", f"{FAULTY}:WrongProblem"
    with EnvPool(EnvsConfig(workers=1, quarantine_after=2)) as pool:
        assert pool.generate_many([(crash, 0, 0), ("add", 0, 0)])[0] is None  # one failure: not yet quarantined
        mixed = pool.generate_many([(crash, 1, 0), ("add", 1, 0)])  # crash is now quarantined, add is healthy
        assert mixed[0] is None and mixed[1] == make_env("add").generate(1, 0)
        with pytest.raises(AllEnvsQuarantined, match=r"every requested env is quarantined: .*Crash \(generate"):
            pool.generate_many([(crash, 2, 0)])
        with pytest.raises(AllEnvsQuarantined, match="WrongProblem"):
            pool.generate_many([(wrong, seed, 0) for seed in range(2)])  # both failures in one call


def _docs_snippet(heading: str) -> str:
    section = DOCS.read_text().split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_docs_envpool_snippet_runs_as_a_plain_script(tmp_path: Path):
    """The snippet has no `__main__` guard: workers must not re-import it (that used to crash every worker)."""
    done = run_python(_docs_snippet("## Isolation: `EnvPool`"), tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stdout == "128 of 128 correct; quarantined: []\n"


def test_a_script_whose_envs_all_fail_exits_non_zero(tmp_path: Path):
    code = (
        "from posttrain.envs import EnvPool, EnvsConfig\n"
        f"with EnvPool(EnvsConfig(workers=1, quarantine_after=2)) as pool:\n"
        f"    print(pool.generate_many([({FAULTY + ':Crash'!r}, seed, 0) for seed in range(4)]))\n"
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("posttrain.envs.isolation.AllEnvsQuarantined: every requested env is quarantined: ")
    assert "worker crashed (exit code 3)" in last


def test_an_env_registered_in_the_users_script_reaches_the_workers(tmp_path: Path):
    """Workers never import the script, so the pool hands them the class (by value, as it lives in __main__)."""
    code = (
        "from posttrain.envs import Env, EnvPool, EnvsConfig, register_env\n"
        "@register_env\n"
        "class Echo(Env):\n"
        "    name = 'script_echo'\n"
        "    def generate(self, seed, difficulty):\n"
        "        return self.problem(seed, difficulty, f'Say {seed}.', str(seed))\n"
        "with EnvPool(EnvsConfig(workers=1)) as pool:\n"
        "    (problem,) = pool.generate_many([('script_echo', 7, 0)])\n"
        "    right, wrong = pool.verify_many([(problem, '<answer>7</answer>'), (problem, '<answer>8</answer>')])\n"
        "print(problem.prompt, right.correct, wrong.correct)\n"
    )
    done = run_python(code, tmp_path, how="-c")
    assert (done.returncode, done.stdout) == (0, "Say 7. True False\n"), done.stderr[-3000:]


def test_repeated_answers_are_verified_once_and_every_pair_gets_its_verdict(tmp_path, monkeypatch):
    log = tmp_path / "checked.txt"
    monkeypatch.setenv("POSTTRAIN_TEST_COUNT_FILE", str(log))
    env = "tests/envs/faulty_envs.py:Counting"
    with EnvPool(EnvsConfig(workers=2)) as pool:
        problems = [p for p in pool.generate_many([(env, seed, 0) for seed in (0, 1)]) if p is not None]
        answers = ["<answer>1</answer>"] * 5 + ["<answer>2</answer>"] * 3
        pairs = [(problems[0], a) for a in answers] + [(problems[1], "<answer>1</answer>")]
        verdicts = pool.verify_many(pairs)
    assert [v.correct for v in verdicts] == [True] * 5 + [False] * 3 + [True]
    assert sorted(log.read_text().split()) == ["0:1", "0:2", "1:1"]  # three distinct pairs, three checks
