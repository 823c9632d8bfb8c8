"""Program synthesis: write a one-line Python function f(x) from a few input/output examples.

The oracle is a chain of integer operations (`x*3+1`, `(x%5)**2`, `x*2 if x%2 else x-3`, ...); difficulty
sets how many operations are chained and which families they come from. The answer is code, and it is
judged by running it in the sandbox (`posttrain.rewards.run_code`) on held tests the prompt does not show.
Each test is a stdin/stdout case compared outside the program: the candidate must print exactly `repr` of
the oracle's value, so returning an object that claims to equal everything earns nothing, and a program
that loops, forks or floods its output just fails its cases.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from posttrain.envs.api import Env, Malformed, Problem, Verdict, ask
from posttrain.envs.registry import register_env

ATOM, POWER, PRODUCT, SUM, CONDITIONAL = 4, 3, 2, 1, 0  # Python precedence levels the renderer needs
MAX_VALUE = 10_000  # outputs stay short, so prompts stay a few hundred characters
HIDDEN_TESTS = 5
# Read one integer per stdin line and print repr(f(x)); the same driver serves one case or all of them.
DRIVER = "\nimport sys as _sys\nfor _line in _sys.stdin.read().split():\n    print(repr(f(int(_line))))\n"
BASIC = ("add", "sub", "mul")
ARITHMETIC = (*BASIC, "rsub", "floordiv", "mod", "square")
ALL_FAMILIES = (*ARITHMETIC, "abs", "max", "min", "cond")
CONSTANTS = {
    "add": (1, 9),
    "sub": (1, 9),
    "rsub": (1, 20),
    "mul": (2, 9),
    "floordiv": (2, 9),
    "mod": (2, 9),
    "max": (-5, 15),
    "min": (-5, 15),
}
_DIVISORS = ("floordiv", "mod")


@dataclass(frozen=True)
class Expr:
    source: str
    precedence: int
    fn: Callable[[int], int]


def _wrap(expr: Expr, at_least: int) -> str:
    return expr.source if expr.precedence >= at_least else f"({expr.source})"


def _apply(op: list, expr: Expr) -> Expr:
    """One operation on top of `expr`; `op` is `[family, constant]` (cond: `["cond", op_odd, op_even]`)."""
    kind, f = op[0], expr.fn
    if kind == "cond":
        odd, even = _apply(op[1], expr), _apply(op[2], expr)
        text = f"{_wrap(odd, SUM)} if x%2 else {_wrap(even, SUM)}"
        return Expr(text, CONDITIONAL, lambda x: odd.fn(x) if x % 2 else even.fn(x))
    c = op[1] if len(op) > 1 else None
    if kind == "add":
        return Expr(f"{_wrap(expr, SUM)}+{c}", SUM, lambda x: f(x) + c)
    if kind == "sub":
        return Expr(f"{_wrap(expr, SUM)}-{c}", SUM, lambda x: f(x) - c)
    if kind == "rsub":
        return Expr(f"{c}-{_wrap(expr, PRODUCT)}", SUM, lambda x: c - f(x))
    if kind == "mul":
        return Expr(f"{_wrap(expr, PRODUCT)}*{c}", PRODUCT, lambda x: f(x) * c)
    if kind == "floordiv":
        return Expr(f"{_wrap(expr, PRODUCT)}//{c}", PRODUCT, lambda x: f(x) // c)
    if kind == "mod":
        return Expr(f"{_wrap(expr, PRODUCT)}%{c}", PRODUCT, lambda x: f(x) % c)
    if kind == "square":
        return Expr(f"{_wrap(expr, ATOM)}**2", POWER, lambda x: f(x) ** 2)
    if kind == "abs":
        return Expr(f"abs({expr.source})", ATOM, lambda x: abs(f(x)))
    if kind == "max":
        return Expr(f"max({expr.source},{c})", ATOM, lambda x: max(f(x), c))
    if kind == "min":
        return Expr(f"min({expr.source},{c})", ATOM, lambda x: min(f(x), c))
    raise ValueError(f"unknown operation {kind!r}")


def build(ops: list[list]) -> Expr:
    expr = Expr("x", ATOM, lambda x: x)
    for op in ops:
        expr = _apply(op, expr)
    return expr


def program_source(ops: list[list]) -> str:
    return f"def f(x): return {build(ops).source}"


def mutants(ops: list[list]) -> list[list[list]]:
    """Every chain with one constant moved by ±1: the near misses the tests must tell apart."""
    out = []

    def variants(op: list) -> list[list]:
        if op[0] == "cond":
            return [["cond", v, op[2]] for v in variants(op[1])] + [["cond", op[1], v] for v in variants(op[2])]
        if len(op) < 2:
            return []
        return [[op[0], op[1] + d] for d in (-1, 1) if op[0] not in _DIVISORS or op[1] + d >= 1]

    for i, op in enumerate(ops):
        out.extend([*ops[:i], v, *ops[i + 1 :]] for v in variants(op))
    return out


def _draw_op(rng: Any, families: tuple[str, ...]) -> list:
    kind = rng.choice(families)
    if kind == "cond":
        odd, even = _draw_op(rng, BASIC), _draw_op(rng, BASIC)
        return ["cond", odd, even] if odd != even else _draw_op(rng, BASIC)
    return [kind, rng.randint(*CONSTANTS[kind])] if kind in CONSTANTS else [kind]


def _group(op: list) -> str:
    return {"sub": "add", "rsub": "add", "min": "max"}.get(op[0], op[0])


def draw_chain(rng: Any, families: tuple[str, ...], length: int) -> list[list]:
    """`length` operations where no two neighbours come from one group (`x*7*6` is just `x*42`), and the
    branch, if any, comes first (it is then written once, not inside every later operation)."""
    ops: list[list] = []
    while len(ops) < length:
        op = _draw_op(rng, families if not ops else tuple(f for f in families if f != "cond"))
        if not ops or _group(op) != _group(ops[-1]):
            ops.append(op)
    return ops


def _outputs(fn: Callable[[int], int], inputs: list[int], *, bounded: bool = True) -> list[int] | None:
    try:
        values = [fn(x) for x in inputs]
    except ZeroDivisionError:
        return None
    return values if not bounded or all(abs(v) <= MAX_VALUE for v in values) else None


def _acceptable(ops: list[list], shown: list[int], hidden: list[int]) -> bool:
    """Bounded, not constant, every operation matters, and both the shown examples and the held tests
    separate the oracle from each one-constant mutant (so the constants can be read off the examples)."""
    every = shown + hidden
    values = _outputs(build(ops).fn, every)
    if values is None or len(set(values[: len(shown)])) < 2:
        return False
    if len(ops) > 1 and any(_outputs(build(ops[:i] + ops[i + 1 :]).fn, every) == values for i in range(len(ops))):
        return False
    cut = len(shown)
    for mutant in mutants(ops):
        other = _outputs(build(mutant).fn, every, bounded=False)
        if other is not None and (other[:cut] == values[:cut] or other[cut:] == values[cut:]):
            return False
    return True


def _defines_f(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "f":
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "f" for t in node.targets):
            return True
    return False


@register_env(source="builtin")
class PyFunc(Env):
    """Write `def f(x)` from examples. d sets the chain length 1 + (d+1)//2 and the families: d <= 1 adds,
    subtracts and multiplies; d >= 2 adds floor division, modulo, squaring and `c - e`; d >= 4 adds abs,
    max/min with a constant, an odd/even branch, and negative inputs.

    Reward: the pass fraction of the held tests (one sandboxed process per test). `correct` means every
    test passed; `PyFuncAllOrNothing` rewards only that."""

    name = "pyfunc"
    tags = ("code", "programs")
    max_difficulty = 8
    all_or_nothing = False
    timeout_s = 1.0  # per test process; a correct one-liner needs milliseconds
    memory_mb = 256

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        d = min(int(difficulty), self.max_difficulty)
        families = BASIC if d <= 1 else ARITHMETIC if d <= 3 else ALL_FAMILIES
        low, high = (-2 * d, 9 + 2 * d) if d >= 4 else (0, 9 + 2 * d)
        shown_count = min(6, 3 + d // 2)
        for _ in range(10_000):
            ops = draw_chain(rng, families, 1 + (d + 1) // 2)
            inputs = rng.sample(range(low, high + 1), shown_count + HIDDEN_TESTS)
            shown, hidden = sorted(inputs[:shown_count]), inputs[shown_count:]
            if _acceptable(ops, shown, hidden):
                break
        else:  # never seen: 300 seeds at each d = 0-8 needed at most 34 draws
            raise RuntimeError(f"pyfunc found no task for seed={seed}, difficulty={difficulty}")
        fn = build(ops).fn
        examples = ", ".join(f"f({x})={fn(x)}" for x in shown)
        prompt = ask(f"Write a one-line Python def f(x) with {examples}.")
        tests = [[x, fn(x)] for x in hidden]
        return self.problem(seed, difficulty, prompt, program_source(ops), ops=ops, shown=shown, tests=tests)

    def cases(self, problem: Problem) -> list[dict[str, str]]:
        """Held tests as stdin/stdout cases (all in one case when `all_or_nothing`)."""
        pairs = [(str(x), repr(y)) for x, y in problem.params["tests"]]
        if self.all_or_nothing:
            return [{"input": "\n".join(i for i, _ in pairs) + "\n", "output": "\n".join(o for _, o in pairs)}]
        return [{"input": i + "\n", "output": o} for i, o in pairs]

    def check(self, problem: Problem, answer: str) -> Verdict:
        from posttrain.rewards.sandbox import run_code  # the sandbox is only needed where answers are judged

        try:
            tree = ast.parse(answer)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise Malformed(f"not Python: {type(exc).__name__}") from None
        if not _defines_f(tree):
            raise Malformed("defines no function f")
        result = run_code(answer + DRIVER, self.cases(problem), timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        correct = result.status == "ok" and result.total > 0 and result.passed == result.total
        reward = float(correct) if self.all_or_nothing else result.fraction
        info = {"passed": result.passed, "total": result.total, "status": result.status}
        return Verdict(reward, correct, True, info)


class PyFuncAllOrNothing(PyFunc):
    """`pyfunc` scored 1 only when every held test passes, all of them checked in one sandboxed process.

    Not registered, so the `builtin` shorthand does not mix the same task in twice; name it as
    `posttrain.envs.builtin.synthesis:PyFuncAllOrNothing`."""

    all_or_nothing = True
