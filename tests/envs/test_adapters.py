"""rlve-gym and reasoning-gym adapters: generation in the pool, references verify, RNGs untouched, strict rg."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from posttrain.envs import EnvPool, EnvsConfig, list_envs, make_env
from posttrain.envs.adapters.common import broken_upstream
from tests.conftest import cli_env


@pytest.fixture(scope="module")
def pool():
    with EnvPool(EnvsConfig(workers=2, generate_timeout_s=30, verify_timeout_s=30, quarantine_after=10**6)) as p:
        yield p


def _check_sample(pool: EnvPool, names: list[str], source: str) -> int:
    """Every sampled env generates at d=0 (seeds 0 and 1, as the sweep does); references verify exactly
    where the env is not listed as broken. Returns how many references were checked."""
    broken = {f"{source}:{name}" for name in broken_upstream(source)}
    requests = [(name, seed, 0) for name in names for seed in (0, 1)]
    problems = pool.generate_many(requests)
    failed = {r[0] for r, p in zip(requests, problems, strict=True) if p is None} - broken
    assert not failed, {n: pool.last_error.get(n) for n in failed}
    with_reference = [p for p in problems if p is not None and p.reference is not None]
    verdicts = pool.verify_many([(p, f"<answer>{p.reference}</answer>") for p in with_reference])
    wrong = {p.env for p, v in zip(with_reference, verdicts, strict=True) if not v.correct}
    assert wrong <= broken  # every failing reference is listed; the converse is the test below
    return len(with_reference)


def test_rlve_sample_generates_and_references_verify(pool: EnvPool):
    names = [spec.name for spec in list_envs("rlve")]
    assert len(names) == 400
    sample = [*names[::4], "rlve:PolyaModel"]  # 101 envs, including the one listed as broken
    assert _check_sample(pool, sample, "rlve") >= 60


def test_rg_sample_generates_and_references_verify(pool: EnvPool):
    names = [spec.name for spec in list_envs("rg")]
    assert _check_sample(pool, [*names[::5], "rg:polynomial_multiplication"], "rg") >= 15


def test_rlve_difficulty_is_controller_updates():
    env = make_env("rlve:AdditionTable")
    for d in range(4):  # AdditionTable's controller starts at N=3 and adds one per update
        assert env.generate(0, d).params["controller"] == {"N": 3 + d}


def test_adapters_leave_global_rngs_untouched():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    for name in ("rlve:AdditionTable", "rlve:TwoSAT", "rg:leg_counting"):
        env = make_env(name)
        problem = env.generate(99, 2)
        env.verify(problem, f"<answer>{problem.reference}</answer>")
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_adapter_generation_matches_across_processes(pool: EnvPool):
    requests = [("rlve:TwoSAT", 5, 3), ("rlve:Sudoku", 1, 1), ("rg:leg_counting", 4, 6), ("rg:basic_arithmetic", 2, 1)]
    remote = pool.generate_many(requests)
    assert remote == [make_env(name).generate(seed, d) for name, seed, d in requests]


def test_rlve_regenerates_to_verify_and_detects_tampering():
    env = make_env("rlve:AdditionTable")
    problem = env.generate(3, 1)
    problem.prompt = "tampered"
    verdict = env.verify(problem, "<answer>1</answer>")
    assert "error" in verdict.info and verdict.reward == 0.0


def test_rg_strict_mode_pays_nothing_for_padding():
    strict, lenient = make_env("rg:leg_counting"), make_env("rg:leg_counting:lenient")
    problem = strict.generate(0, 3)
    oracle = problem.reference
    padded = f"<answer>it is {oracle} or {int(oracle) + 2} or {int(oracle) + 4}</answer>"
    assert strict.verify(problem, padded).reward == 0.0
    assert lenient.verify(lenient.generate(0, 3), padded).reward > 0.0  # upstream's partial credit
    assert strict.verify(problem, f"<answer>{oracle}</answer>").reward == 1.0
    assert strict.verify(problem, "no answer").format_ok is False


def test_rg_difficulty_is_curriculum_level():
    env = make_env("rg:leg_counting")
    assert env.max_difficulty == 35
    assert env.generate(0, 500).params["level"] == 35
    counts = [len(env.generate(seed, d).prompt) for d in (0, 20) for seed in range(5)]
    assert sum(counts[5:]) > sum(counts[:5])  # more animals at higher levels


PROMPTS = """
import json, sys
from posttrain.envs import make_env
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = [make_env(name).generate(seed, 0).prompt for seed in range(3)]
    except Exception as exc:
        out[name] = type(exc).__name__
print(json.dumps(out))
"""


def _prompts_under_hash_seed(names: list[str], hash_seed: int) -> dict:
    env = {**cli_env(), "PYTHONHASHSEED": str(hash_seed)}
    done = subprocess.run([sys.executable, "-c", PROMPTS, *names], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_listed_broken_env_really_fails():
    """The converse of the sample checks above: a listed env must fail the way the sweep defines it (it does
    not generate at d=0, its reference fails its own verifier, or its problem depends on the process)."""
    listed = [f"{source}:{name}" for source in ("rlve", "rg") for name in broken_upstream(source)]
    assert listed, "the broken list is empty"
    first, second = _prompts_under_hash_seed(listed, 1), _prompts_under_hash_seed(listed, 2)
    reasons = {}
    for name in listed:
        if isinstance(first[name], str):
            reasons[name] = "does not generate"
        elif first[name] != second[name]:
            reasons[name] = "depends on the process"
        else:
            env = make_env(name)
            problems = [env.generate(seed, 0) for seed in range(2)]
            if any(not env.verify(p, f"<answer>{p.reference}</answer>").correct for p in problems if p.reference):
                reasons[name] = "reference fails"
    assert sorted(reasons) == sorted(listed), f"listed but working: {sorted(set(listed) - set(reasons))}"


def test_rg_verify_reports_a_regenerated_prompt_that_differs():
    env = make_env("rg:leg_counting")
    problem = env.generate(3, 1)
    problem.prompt = problem.prompt.replace("how many legs", "how few legs")
    verdict = env.verify(problem, f"<answer>{problem.reference}</answer>")
    assert verdict.reward == 0.0 and "not deterministic" in verdict.info["error"]


def test_upstream_programs_write_into_a_scratch_directory_not_the_callers(tmp_path, monkeypatch):
    """reasoning-gym's codeio item builder `exec`s dataset programs in-process, and some write files: this one
    writes `planet.com` into the working directory. Under the quarantine nothing lands in the caller's."""
    import gzip

    from reasoning_gym.code.codeio import CodeIODataset
    from reasoning_gym.data import get_data_file_path

    from posttrain.envs.adapters.common import quarantine_upstream

    with gzip.open(get_data_file_path("codeio.jsonl.gz"), "rt", encoding="utf-8") as f:
        entry = next(e for e in map(json.loads, f) if "class planetcom" in e["code_sample"])
    run = CodeIODataset._generate_io_pair  # the upstream builder; it never touches `self`

    monkeypatch.chdir(tmp_path)
    run(None, entry["code_sample"], entry["input_generator"], random.Random(0))
    assert (tmp_path / "planet.com").is_file()  # the hazard is real without the quarantine
    (tmp_path / "planet.com").unlink()

    with quarantine_upstream():
        run(None, entry["code_sample"], entry["input_generator"], random.Random(0))
    assert list(tmp_path.iterdir()) == []
    assert Path.cwd() == tmp_path
