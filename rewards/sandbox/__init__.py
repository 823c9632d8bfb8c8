"""Run untrusted code against tests in an isolated, resource-limited, network-less sandbox."""

from posttrain.rewards.sandbox.datasets import CodeProblem, load_code_jsonl, load_humaneval, parse_problem
from posttrain.rewards.sandbox.isolation import available_levels, isolation_level
from posttrain.rewards.sandbox.runner import CodeResult, run_code, run_code_many, set_max_parallel

__all__ = [
    "CodeProblem",
    "CodeResult",
    "available_levels",
    "isolation_level",
    "load_code_jsonl",
    "load_humaneval",
    "parse_problem",
    "run_code",
    "run_code_many",
    "set_max_parallel",
]
