"""`rg:codeio`: reasoning-gym's CodeI/O (predict a program's output, or an input that gives an output),
graded strictly.

What reasoning-gym's own scorer gets wrong, and what this grader does instead:

* it pays partial credit by JSON tree-edit similarity, and its equality says `true == 1`; here the answer
  must be one JSON value, equal to the oracle under `same_json` (booleans, strings and null kept apart
  from numbers, floats to 1e-9 relative);
* input prediction has many right answers (any input that yields the output), but it is scored by
  similarity to the one input it generated; here an answer other than that input is run through the
  program in the sandbox (`posttrain.rewards.run_code`) and is right when it yields the output;
* about 6% of the programs are not deterministic (they call `random` without seeding it, or depend on
  set order), so their "expected" output is one draw, and some fail to run and come back as `{}`. An
  item is used only if its recorded output comes back when the program runs again in the sandbox;
  others are redrawn. The check also drops programs whose imports the sandbox's interpreter lacks.

Everything needed to grade travels in `Problem.params`, so `verify` never regenerates the item.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from posttrain.envs.adapters.reasoning_gym import ReasoningGymEnv, _entry
from posttrain.envs.api import ANSWER_REQUEST, Env, Malformed, Problem, Verdict

REDRAWS = 20  # a broken or non-deterministic item is replaced by the next draw for the same (seed, level)
_REDRAW_STRIDE = 2**40  # attempt k draws upstream seed `seed + k * stride`, away from every plain seed


def same_json(a: Any, b: Any, rel_tol: float = 1e-9) -> bool:
    """JSON equality that keeps types apart (`true` is not `1`, `"1"` is not `1`) and compares floats to a
    relative 1e-9, so the same number printed with other digits still matches. Self-contained (needs
    only `math` and `Any`): its source also runs inside the sandbox."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        try:
            if math.isnan(a) or math.isnan(b):
                return math.isnan(a) and math.isnan(b)
            return a == b or math.isclose(a, b, rel_tol=rel_tol, abs_tol=0.0)
        except OverflowError:  # an integer beyond any float is close to none
            return False
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y, rel_tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k], rel_tol) for k in a)
    return False


@dataclass
class CodeIOTask:
    direction: str  # "output": predict main_solution's output; "input": predict an input giving `output`
    code: str
    input: str  # JSON text of the generated keyword arguments
    output: str  # JSON text of main_solution(**input)


def _code_marker() -> str:
    """The sentence that precedes the program in both upstream prompt templates."""
    from reasoning_gym.code.codeio import OUTPUT_PREDICTION_PROMPT_TEMPLATE as template

    return template[template.index("Tip:") : template.index("{3}")]


def parse_item(item: dict[str, Any]) -> CodeIOTask | None:
    """The task behind an upstream item, or None when upstream failed to run the program (input `{}`)."""
    question, metadata = item["question"], item["metadata"]
    if not metadata.get("input_data"):
        return None
    marker = _code_marker()
    if marker not in question:
        return None
    code = question.rsplit(marker, 1)[1].removesuffix("\n")
    direction = "output" if "Can you predict the output" in question else "input"
    return CodeIOTask(direction, code, json.dumps(metadata["input_data"]), json.dumps(metadata["output_data"]))


def _comparison_tests(candidate: str, expected: str) -> str:
    """Assert-style test run after the program: the candidate input must give the expected output."""
    return (
        f"import json as _json\nimport math\nfrom typing import Any\n{inspect.getsource(same_json)}\n"
        f"_got = _json.loads(_json.dumps(main_solution(**_json.loads({candidate!r}))))\n"
        f"assert same_json(_got, _json.loads({expected!r}))\n"
    )


def gives_output(task: CodeIOTask, candidate_input: str, *, timeout_s: float, memory_mb: int) -> tuple[bool, str]:
    """(whether main_solution(**candidate_input) equals the task's output, the sandbox status)."""
    from posttrain.rewards.sandbox import run_code  # imported where programs run, not by every rg env

    tests = _comparison_tests(candidate_input, task.output)
    result = run_code(task.code, tests, timeout_s=timeout_s, memory_mb=memory_mb)
    return result.status == "ok" and result.total > 0 and result.passed == result.total, result.status


class CodeIOEnv(ReasoningGymEnv):
    """`rg:codeio` with the strict grader above; `rg:codeio:lenient` keeps reasoning-gym's scorer."""

    _limits: ClassVar[dict[str, float]] = {"timeout_s": 4.0, "memory_mb": 1024}  # under envs.verify_timeout_s

    # Grading needs only what `generate` stored in Problem.params (the item may come from a redraw, not from
    # (seed, level)), so there is no regeneration check: the base Env's verify.
    verify = Env.verify

    def __init__(self) -> None:
        super().__init__("codeio", strict=True)

    def generate(self, seed: int, difficulty: int) -> Problem:
        level = min(int(difficulty), self.max_difficulty)
        for attempt in range(REDRAWS):
            try:  # upstream runs the item's program here, which may print; that is not ours to show
                with contextlib.redirect_stdout(io.StringIO()):
                    _, item = _entry(self.dataset, int(seed) + attempt * _REDRAW_STRIDE, level)
            except Exception:  # upstream's item builder fails on outputs it cannot serialise
                continue
            task = parse_item(item)
            # The recorded output must come back in a fresh sandboxed process (other RNG and hash seeds, only
            # the packages the sandbox has): then the output is well defined and inputs can be checked.
            if task is not None and gives_output(task, task.input, **self._limits)[0]:
                prompt = f"{item['question'].rstrip()}\n{ANSWER_REQUEST}"
                reference = task.output if task.direction == "output" else task.input
                params = {"level": level, "attempt": attempt, **task.__dict__}
                return self.problem(seed, difficulty, prompt, reference, **params)
        raise RuntimeError(f"rg:codeio: no usable item in {REDRAWS} draws for seed={seed}, level={level}")

    def check(self, problem: Problem, answer: str) -> Verdict:
        try:
            candidate = json.loads(answer)
        except (ValueError, RecursionError):
            raise Malformed("not one JSON value") from None
        task = CodeIOTask(**{k: problem.params[k] for k in ("direction", "code", "input", "output")})
        try:
            if task.direction == "output":
                return Verdict.graded(same_json(candidate, json.loads(task.output)))
            if not isinstance(candidate, dict):
                return Verdict.graded(False, reason="an input must be a JSON object of keyword arguments")
            if same_json(candidate, json.loads(task.input)):
                return Verdict.graded(True, ran=False)
        except RecursionError:
            return Verdict.graded(False, reason="answer nested too deeply")
        correct, status = gives_output(task, json.dumps(candidate), **self._limits)
        return Verdict.graded(correct, ran=True, status=status)
