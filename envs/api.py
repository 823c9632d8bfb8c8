"""The environment contract: a `Problem` goes out, a completion comes back, a `Verdict` scores it.

Rewards follow one convention across every env (builtin and adapters):

* correct answer → reward 1.0, `correct=True`;
* a parsable answer that is wrong → reward 0.0, `format_ok=True`;
* no `<answer>` (or `\\boxed{}`), or an answer that cannot be parsed → reward 0.0, `format_ok=False`.

A format failure earns 0.0 rather than a negative reward on purpose: the MaxRL advantage
(r − r̄)/r̄ assumes non-negative rewards. Format shaping belongs in `posttrain.rewards`, where it can be
weighted; `format_ok` tells it what happened.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from posttrain.answers import extract_answer

ANSWER_REQUEST = "Answer in <answer></answer>."


@dataclass
class Problem:
    """One generated task. Plain JSON types only, so it can cross process boundaries and be logged."""

    env: str
    seed: int
    difficulty: int
    prompt: str
    reference: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        return cls(**data)


@dataclass
class Verdict:
    """How a completion scored. `correct` (binary) drives curricula; `reward` feeds the learner."""

    reward: float
    correct: bool
    format_ok: bool
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def format_failure(cls, reason: str) -> Verdict:
        return cls(0.0, False, False, {"reason": reason})

    @classmethod
    def error(cls, message: str) -> Verdict:
        """The env itself failed (crash, hang, garbage): never the model's fault, never rewarded."""
        return cls(0.0, False, False, {"error": message})

    @classmethod
    def graded(cls, correct: bool, **info: Any) -> Verdict:
        return cls(1.0 if correct else 0.0, bool(correct), True, dict(info))

    def is_valid(self) -> bool:
        """A verdict coming back from foreign code is checked before anyone trusts it."""
        return (
            isinstance(self.reward, int | float)
            and math.isfinite(self.reward)
            and -1.0 <= self.reward <= 1.0
            and isinstance(self.correct, bool)
            and isinstance(self.format_ok, bool)
            and isinstance(self.info, dict)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Malformed(Exception):
    """Raised by `Env.check` when the answer cannot be parsed; becomes a `format_ok=False` verdict."""


class Env:
    """Base class. Subclasses set `name`, implement `generate` and `check`, and usually `solve`.

    `generate` must draw every random choice from `self.rng(seed, difficulty)`, never from the global
    RNG, so a (seed, difficulty) pair names the same problem in every process. `verify` is final: it
    extracts the answer once, here, and turns anything a subclass raises into a verdict.
    """

    name: ClassVar[str] = ""
    tags: ClassVar[tuple[str, ...]] = ()
    max_difficulty: ClassVar[int | None] = None  # None: unbounded
    min_reward: ClassVar[float] = 0.0  # lowest reward `verify` can give; set it when yours can go negative

    def rng(self, seed: int, difficulty: int) -> random.Random:
        # str seeds hash with SHA-512, independent of PYTHONHASHSEED, so this is stable across processes.
        return random.Random(f"{self.name}:{seed}:{difficulty}")

    def problem(self, seed: int, difficulty: int, prompt: str, reference: str | None, **params: Any) -> Problem:
        return Problem(self.name, int(seed), int(difficulty), prompt, reference, params)

    def generate(self, seed: int, difficulty: int) -> Problem:
        raise NotImplementedError

    def check(self, problem: Problem, answer: str) -> bool | Verdict:
        """Default: the answer equals the reference up to whitespace."""
        return " ".join(answer.split()) == " ".join((problem.reference or "").split())

    def solve(self, problem: Problem) -> str | None:
        """The exact text that `verify` accepts inside `<answer></answer>`; None when no oracle is cheap."""
        return problem.reference

    def verify(self, problem: Problem, completion: Any) -> Verdict:
        if isinstance(completion, bytes):
            completion = completion.decode("utf-8", errors="replace")
        if not isinstance(completion, str):
            return Verdict.format_failure(f"completion is {type(completion).__name__}, not text")
        answer = extract_answer(completion)
        if answer is None:
            return Verdict.format_failure("no <answer>...</answer> or \\boxed{} found")
        try:
            result = self.check(problem, answer)
        except Malformed as exc:
            return Verdict.format_failure(f"unparsable answer: {exc}")
        except Exception as exc:  # a verifier bug must not take the run down
            return Verdict.error(f"{type(exc).__name__} in {self.name}.check: {exc}")
        return result if isinstance(result, Verdict) else Verdict.graded(bool(result))


def ask(text: str) -> str:
    """Every builtin prompt ends the same way, so a tiny model learns one answer format."""
    return f"{text} {ANSWER_REQUEST}"


_INT = re.compile(r"[+-]?\d+")


def parse_int(answer: str, *, max_digits: int = 4000) -> int:
    text = answer.strip().replace(",", "")
    if len(text) > max_digits + 1 or not _INT.fullmatch(text):
        raise Malformed(f"not an integer: {answer[:40]!r}")
    return int(text)


def parse_ints(answer: str, *, max_items: int = 10_000) -> list[int]:
    """Integers separated by spaces and/or commas."""
    parts = answer.replace(",", " ").split()
    if not parts or len(parts) > max_items:
        raise Malformed("expected a list of integers")
    return [parse_int(part, max_digits=100) for part in parts]
