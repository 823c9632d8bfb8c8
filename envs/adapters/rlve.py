"""`rlve:<Identifier>`: the 400 rlve-gym environments (arXiv 2511.07317).

Difficulty d is d calls of the env's `ParameterController.update()`; when the controller then offers
several parameter sets, the seed picks one. Upstream seeds the global random/numpy/torch RNGs and wraps
generation in a thread timeout that cannot stop a runaway loop, so:

* generation runs upstream's `_generate` directly inside `quarantine_upstream()`;
* the hard timeout comes from `EnvPool`, which runs adapter calls in killable worker processes.

`verify` regenerates the problem from (seed, difficulty) (cached per process), so a `Problem` carries only
plain JSON and the prompt doubles as a determinism check. Upstream scores in [-1, 1] with partial credit;
the reward here is binary (1.0 when upstream calls it fully correct), with upstream's score in `info`.
"""

from __future__ import annotations

import copy
import random
from functools import cache, lru_cache
from typing import Any

from posttrain.envs.adapters.common import broken_upstream, cached_listing, jsonable, quarantine_upstream
from posttrain.envs.api import ANSWER_REQUEST, Env, Problem, Verdict
from posttrain.envs.registry import EnvSpec, suggest_adapter_name

EPS = 1e-6


@cache
def _tables() -> tuple[dict[str, type], dict[str, type]]:
    from Gym.environments import identifier2environment
    from Gym.parameter_controllers import identifier2controller

    return identifier2environment, identifier2controller


def identifiers() -> list[str]:
    return sorted(_tables()[0])


def make(identifier: str) -> Env:
    if identifier not in _tables()[0]:
        raise suggest_adapter_name("rlve", identifier, identifiers())
    return RlveEnv(identifier)


def specs() -> list[EnvSpec]:
    broken = broken_upstream("rlve")
    listed = cached_listing("rlve", "rlve-gym", identifiers)
    return [EnvSpec(f"rlve:{i}", "rlve", ("rlve-gym",), 0, None, broken.get(i)) for i in listed]


@lru_cache(maxsize=256)
def _upstream(identifier: str, seed: int, difficulty: int) -> tuple[Any, dict]:
    """The generated upstream env object and the controller parameters that produced it."""
    environments, controllers = _tables()
    controller = controllers[identifier]()
    for _ in range(difficulty):
        controller.update()
    options = controller.get_parameter_list()
    parameter = options[random.Random(f"rlve:{seed}:{difficulty}").randrange(len(options))]
    env = environments[identifier]()
    with quarantine_upstream():
        from Gym.environment import manual_seed

        env.seed, env.parameter = seed, copy.deepcopy(parameter)
        manual_seed(seed)
        env._generate()
        if env.parameter is None:
            raise RuntimeError(f"rlve:{identifier} generator gave up at difficulty {difficulty}")
        env.prompt = env.prompt_generator()
    return env, parameter


class RlveEnv(Env):
    tags = ("rlve-gym",)

    def __init__(self, identifier: str) -> None:
        self.identifier = identifier
        self.name = f"rlve:{identifier}"

    def generate(self, seed: int, difficulty: int) -> Problem:
        env, parameter = _upstream(self.identifier, int(seed) % 2**32, int(difficulty))
        reference = env.parameter.get("reference_answer")
        prompt = f"{env.prompt.rstrip()}\n{ANSWER_REQUEST}"
        return self.problem(
            seed, difficulty, prompt, None if reference is None else str(reference), controller=jsonable(parameter)
        )

    def verify(self, problem: Problem, completion: Any) -> Verdict:
        try:
            env, _ = _upstream(self.identifier, int(problem.seed) % 2**32, int(problem.difficulty))
        except Exception as exc:
            return Verdict.error(f"regeneration failed: {type(exc).__name__}: {exc}")
        if f"{env.prompt.rstrip()}\n{ANSWER_REQUEST}" != problem.prompt:
            return Verdict.error("regenerated prompt differs: upstream generator is not deterministic")
        return super().verify(problem, completion)

    def check(self, problem: Problem, answer: str) -> Verdict:
        env, _ = _upstream(self.identifier, int(problem.seed) % 2**32, int(problem.difficulty))
        with quarantine_upstream():
            try:
                score = float(env.scorer(f"<answer>{answer}</answer>"))
            except Exception as exc:  # upstream's own wrapper counts any scorer exception as a format error
                return Verdict.format_failure(f"upstream scorer raised {type(exc).__name__}: {exc}")
        correct = score >= env.passing_reward_threshold - EPS
        return Verdict(1.0 if correct else 0.0, correct, score > -1.0 + EPS, {"upstream_reward": score})
