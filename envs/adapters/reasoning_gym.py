"""`rg:<dataset>`: reasoning-gym's procedural datasets, difficulty d = curriculum level d.

Level d sets every curriculum attribute to its level-d band (`UPPER_BOUND` mode, so each level is its own
difficulty, not a mix of all easier ones); datasets without a curriculum have only difficulty 0.

`verify` regenerates the item from (seed, level), so a prompt that comes back different (an upstream
generator that depends on the process, e.g. on PYTHONHASHSEED) is reported as an env error.

Scoring is strict by default. reasoning-gym's default `score_answer` pays len(oracle)/len(answer) to an
answer that merely contains the oracle, so "5 or 6 or 7" earns credit for "6". Strict mode (`rg:NAME`)
counts an answer correct only when the dataset scores it 1.0 and it is not the oracle padded with other
text; the reward is binary. `rg:NAME:lenient` passes the dataset's own score through as the reward.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from posttrain.envs.adapters.common import broken_upstream, cached_listing, quarantine_upstream
from posttrain.envs.api import ANSWER_REQUEST, Env, Problem, Verdict
from posttrain.envs.registry import EnvSpec, suggest_adapter_name

EPS = 1e-9


@cache
def _factory() -> Any:
    with quarantine_upstream():  # importing reasoning-gym draws from (and reseeds) the global RNGs
        import reasoning_gym.factory as factory

    return factory


def names() -> list[str]:
    return sorted(_factory().DATASETS)


def max_level(name: str) -> int:
    factory = _factory()
    if not factory.has_curriculum(name):
        return 0
    return max((len(a.levels) - 1 for a in factory.create_curriculum(name).attributes.values()), default=0)


def make(spec: str) -> Env:
    name, _, mode = spec.partition(":")
    if name not in _factory().DATASETS:
        raise suggest_adapter_name("rg", name, names())
    if mode not in ("", "lenient"):
        raise suggest_adapter_name("rg", spec, [f"{name}:lenient"])
    if name == "codeio" and mode == "":
        from posttrain.envs.adapters.codeio import CodeIOEnv  # strict CodeI/O grading runs programs

        return CodeIOEnv()
    return ReasoningGymEnv(name, strict=mode != "lenient")


def specs() -> list[EnvSpec]:
    broken = broken_upstream("rg")
    listed = cached_listing("rg", "reasoning-gym", lambda: [[n, max_level(n)] for n in names()])
    return [EnvSpec(f"rg:{n}", "rg", ("reasoning-gym",), 0, top, broken.get(n)) for n, top in listed]


@lru_cache(maxsize=256)
def _entry(name: str, seed: int, difficulty: int) -> tuple[Any, dict]:
    """(dataset, item) for this seed and level; the dataset object carries the scorer."""
    factory = _factory()
    dataset_cls, config_cls = factory.DATASETS[name]
    with quarantine_upstream():
        if factory.has_curriculum(name):
            from reasoning_gym.coaching.base_curriculum import DefaultCurriculumContext, RangeAttributeMode

            curriculum = factory.create_curriculum(name)
            curriculum.set_global_level(difficulty)
            context = DefaultCurriculumContext(mode=RangeAttributeMode.UPPER_BOUND)
            config = curriculum.generate_configuration({"seed": seed, "size": 1}, context=context)
        else:
            config = config_cls(seed=seed, size=1)
        dataset = dataset_cls(config=config)
        return dataset, dataset[0]


class ReasoningGymEnv(Env):
    tags = ("reasoning-gym",)

    def __init__(self, dataset: str, *, strict: bool = True) -> None:
        self.dataset, self.strict = dataset, strict
        self.name = f"rg:{dataset}" if strict else f"rg:{dataset}:lenient"
        self.min_reward = 0.0 if strict else -1.0  # lenient passes the dataset's own score through, clipped to [-1, 1]
        self.max_difficulty = max_level(dataset)

    def generate(self, seed: int, difficulty: int) -> Problem:
        level = min(int(difficulty), self.max_difficulty)
        _, item = _entry(self.dataset, int(seed), level)
        prompt = f"{item['question'].rstrip()}\n{ANSWER_REQUEST}"
        reference = None if item["answer"] is None else str(item["answer"])  # None: many answers are right
        return self.problem(seed, difficulty, prompt, reference, level=level)

    def verify(self, problem: Problem, completion: Any) -> Verdict:
        try:
            _, item = _entry(self.dataset, int(problem.seed), int(problem.params["level"]))
        except Exception as exc:
            return Verdict.error(f"regeneration failed: {type(exc).__name__}: {exc}")
        if f"{item['question'].rstrip()}\n{ANSWER_REQUEST}" != problem.prompt:
            return Verdict.error("regenerated prompt differs: upstream generator is not deterministic")
        return super().verify(problem, completion)

    def check(self, problem: Problem, answer: str) -> Verdict:
        dataset, item = _entry(self.dataset, int(problem.seed), int(problem.params["level"]))
        with quarantine_upstream():
            score = float(dataset.score_answer(answer, item))
        oracle = None if item["answer"] is None else str(item["answer"]).strip()
        padded = oracle is not None and oracle != answer.strip() and oracle in answer
        correct = score >= 1.0 - EPS and not (self.strict and padded)
        reward = (1.0 if correct else 0.0) if self.strict else max(-1.0, min(1.0, score))
        return Verdict(reward, correct, True, {"upstream_score": score, "padded": padded})
