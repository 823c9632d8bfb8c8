"""Verifiable environments: problems that are generated from a seed and checked exactly.

    from posttrain.envs import Env, Problem, make_env
    env = make_env("add")
    problem = env.generate(seed=0, difficulty=3)
    env.verify(problem, "<answer>1234</answer>")
"""

from posttrain.envs.api import Env, Malformed, Problem, Verdict, ask
from posttrain.envs.config import CurriculumConfig, EnvsConfig
from posttrain.envs.curricula import Curriculum, make_curriculum
from posttrain.envs.isolation import AllEnvsQuarantined, EnvPool
from posttrain.envs.registry import EnvSpec, env_label, expand_names, list_envs, make_env, register_env

__all__ = [
    "AllEnvsQuarantined",
    "Curriculum",
    "CurriculumConfig",
    "Env",
    "EnvPool",
    "EnvSpec",
    "EnvsConfig",
    "Malformed",
    "Problem",
    "Verdict",
    "ask",
    "env_label",
    "expand_names",
    "list_envs",
    "make_curriculum",
    "make_env",
    "register_env",
]
