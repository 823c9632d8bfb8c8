"""Run env generation and verification in killable worker processes, and drop envs that keep failing.

Everything an env does runs in `posttrain.procpool.ProcessPool` workers with a hard per-call timeout, so
an env that hangs, crashes its process, raises or returns garbage costs one failed item, never the run:
generation yields `None` for that request, verification a reward-0 `Verdict` with the error in `info`.
After `quarantine_after` such failures an env is quarantined (logged by name) and skipped from then on;
a request whose envs are all quarantined raises `AllEnvsQuarantined` rather than returning only Nones.
Model output is never an env failure: empty, huge or binary completions are format failures.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from posttrain.envs.api import Env, Problem, Verdict
from posttrain.envs.config import EnvsConfig
from posttrain.envs.registry import add_registrations, make_env, runtime_registrations
from posttrain.procpool import CallResult, ProcessPool

log = logging.getLogger("posttrain.envs")

_ENVS: dict[str, Env] = {}  # per worker process


class AllEnvsQuarantined(RuntimeError):
    """Every env a request asked for has failed `quarantine_after` times: nothing can be generated."""


def _env(name: str) -> Env:
    if name not in _ENVS:
        _ENVS[name] = make_env(name)
    return _ENVS[name]


def _prepare_worker(registrations: dict[str, tuple[type[Env], str]], warm: list[str]) -> None:
    """Worker initializer: the caller's registered envs, then heavy adapter imports outside any deadline.

    A name that fails to build here fails again, and is counted, on its first real call.
    """
    add_registrations(registrations)
    for name in warm:
        with contextlib.suppress(Exception):
            _env(name)


def _generate(name: str, seed: int, difficulty: int) -> dict[str, Any]:
    return _env(name).generate(seed, difficulty).to_dict()


def _verify(problem: dict[str, Any], completion: str) -> dict[str, Any]:
    return _env(problem["env"]).verify(Problem.from_dict(problem), completion).to_dict()


def _solve(problem: dict[str, Any]) -> str | None:
    return _env(problem["env"]).solve(Problem.from_dict(problem))


def _as_problem(result: CallResult, name: str, seed: int, difficulty: int) -> Problem:
    """The worker's reply, checked: a generator returning the wrong thing is an env failure."""
    if not result.ok:
        raise ValueError(result.error)
    problem = Problem.from_dict(result.value)
    if (problem.env, problem.seed, problem.difficulty) != (name, seed, difficulty) or not isinstance(
        problem.prompt, str
    ):
        raise ValueError(f"generator returned a problem for {problem.env}/{problem.seed}/{problem.difficulty}")
    return problem


def _as_verdict(result: CallResult) -> Verdict:
    if not result.ok:
        raise ValueError(result.error)
    verdict = Verdict(**result.value)
    if not verdict.is_valid():
        raise ValueError(f"invalid verdict {result.value!r}")
    return verdict


class EnvPool:
    """Batch front end the RL loop calls: `generate_many`, `verify_many`, `solve_many`."""

    def __init__(self, config: EnvsConfig | None = None, *, warm: Sequence[str] = ()) -> None:
        self.config = config or EnvsConfig()
        prepare = functools.partial(_prepare_worker, runtime_registrations(), list(warm))
        self.pool = ProcessPool(self.config.workers, timeout_s=self.config.verify_timeout_s, initializer=prepare)
        self.failures: Counter[str] = Counter()
        self.last_error: dict[str, str] = {}  # env name -> its latest failure (one line)
        self.quarantined: dict[str, str] = {}  # env name -> the error that tipped it over

    def generate_many(self, requests: Sequence[tuple[str, int, int]]) -> list[Problem | None]:
        """One `Problem` per (env, seed, difficulty), or None where the env failed or is quarantined."""
        todo = [i for i, (name, _, _) in enumerate(requests) if name not in self.quarantined]
        results = self.pool.map(
            _generate, [tuple(requests[i]) for i in todo], timeout_s=self.config.generate_timeout_s
        )
        out: list[Problem | None] = [None] * len(requests)
        for i, result in zip(todo, results, strict=True):
            name, seed, difficulty = requests[i]
            try:
                out[i] = _as_problem(result, name, seed, difficulty)
            except Exception as exc:
                self._fail(name, f"generate(seed={seed}, difficulty={difficulty}): {exc}", result.traceback)
        names = {name for name, _, _ in requests}
        if names and names <= self.quarantined.keys() and not any(out):
            reasons = "; ".join(f"{name} ({self.quarantined[name]})" for name in sorted(names))
            raise AllEnvsQuarantined(f"every requested env is quarantined: {reasons}")
        return out

    def verify_many(self, pairs: Sequence[tuple[Problem, Any]]) -> list[Verdict]:
        """A `Verdict` for every (problem, completion); never raises, whatever either side holds."""
        out: list[Verdict | None] = [None] * len(pairs)
        texts = [_text(completion) for _, completion in pairs]
        todo: list[int] = []
        for i, ((problem, _), text) in enumerate(zip(pairs, texts, strict=True)):
            if not isinstance(problem, Problem):
                out[i] = Verdict.error(f"not a Problem: {type(problem).__name__}")
            elif problem.env in self.quarantined:
                out[i] = Verdict.error(f"env {problem.env} is quarantined")
            elif not isinstance(text, str):
                out[i] = Verdict.format_failure(f"completion is {type(text).__name__}, not text")
            elif len(text) > self.config.max_completion_chars:
                out[i] = Verdict.format_failure(f"completion longer than {self.config.max_completion_chars} chars")
            else:
                todo.append(i)
        # A group of samples often repeats an answer: each distinct (problem, completion) is verified once.
        keys = {i: json.dumps([pairs[i][0].to_dict(), texts[i]], sort_keys=True, default=str) for i in todo}
        first: dict[str, int] = {}
        for i in todo:
            first.setdefault(keys[i], i)
        unique = list(first.values())
        items = [(pairs[i][0].to_dict(), texts[i]) for i in unique]
        results = self.pool.map(_verify, items, timeout_s=self.config.verify_timeout_s)
        for i, result in zip(unique, results, strict=True):
            try:
                out[i] = _as_verdict(result)
                if "error" in out[i].info:  # the env's own verifier reported a bug
                    self._fail(pairs[i][0].env, f"verify: {out[i].info['error']}")
            except Exception as exc:
                self._fail(pairs[i][0].env, f"verify: {exc}", result.traceback)
                out[i] = Verdict.error(str(exc))
        for i in todo:
            if out[i] is None:
                out[i] = copy.deepcopy(out[first[keys[i]]])
        return [v if v is not None else Verdict.error("not verified") for v in out]

    def solve_many(self, problems: Sequence[Problem]) -> list[str | None]:
        """Oracle answers (for SFT data), None where an env has no cheap oracle or failed."""
        results = self.pool.map(_solve, [(p.to_dict(),) for p in problems], timeout_s=self.config.generate_timeout_s)
        return [r.value if r.ok and isinstance(r.value, str) else None for r in results]

    def _fail(self, name: str, message: str, trace: str | None = None) -> None:
        self.failures[name] += 1
        self.last_error[name] = message
        if name not in self.quarantined and self.failures[name] >= self.config.quarantine_after:
            self.quarantined[name] = message
            detail = f"\n{trace}" if trace else ""
            log.warning("env %s quarantined after %d failures; last: %s%s", name, self.failures[name], message, detail)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _text(completion: Any) -> str:
    return completion.decode("utf-8", errors="replace") if isinstance(completion, bytes) else completion
