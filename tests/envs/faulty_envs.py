"""Envs that misbehave on purpose, loaded by path (`tests/envs/faulty_envs.py:Hang`) in pool workers."""

from __future__ import annotations

import os

from posttrain.envs import Env, Problem, Verdict


class Hang(Env):
    def generate(self, seed: int, difficulty: int) -> Problem:
        while True:
            pass


class Crash(Env):
    def generate(self, seed: int, difficulty: int) -> Problem:
        os._exit(3)


class WrongProblem(Env):
    """Returns a problem for another seed: garbage the pool must not hand to the trainer."""

    def generate(self, seed: int, difficulty: int) -> Problem:
        return self.problem(seed + 1, difficulty, "?", "1")


class BadVerifier(Env):
    """Generates fine; verification hangs, crashes or returns an out-of-range verdict, by seed."""

    def generate(self, seed: int, difficulty: int) -> Problem:
        return self.problem(seed, difficulty, "Say 1.", "1")

    def verify(self, problem: Problem, completion: object) -> Verdict:
        if problem.seed == 0:
            while True:
                pass
        if problem.seed == 1:
            os._exit(4)
        return Verdict(float("nan"), True, True)


class Broken(Env):
    """Generates fine; its checker raises (a verifier bug): every verdict is an env error."""

    name = "broken_checker"

    def generate(self, seed: int, difficulty: int) -> Problem:
        return self.problem(seed, difficulty, "Say 1.", "1")

    def check(self, problem: Problem, answer: str) -> bool:
        raise RuntimeError("checker bug")


class Counting(Env):
    """Appends a line to $POSTTRAIN_TEST_COUNT_FILE for every answer it checks (pool workers inherit it)."""

    name = "counting"

    def generate(self, seed: int, difficulty: int) -> Problem:
        return self.problem(seed, difficulty, "Say 1.", "1")

    def check(self, problem: Problem, answer: str) -> bool:
        with open(os.environ["POSTTRAIN_TEST_COUNT_FILE"], "a") as log:
            log.write(f"{problem.seed}:{answer}\n")
        return answer == "1"
