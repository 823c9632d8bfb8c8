"""Sequence manipulation and program tracing."""

from __future__ import annotations

from posttrain.envs.api import Env, Problem, ask, parse_int, parse_ints
from posttrain.envs.registry import register_env


@register_env(source="builtin")
class Sort(Env):
    """Sort d + 3 integers below 10·(d + 1) ascending."""

    name = "sort"
    tags = ("lists",)

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        values = [rng.randrange(10 * (difficulty + 1)) for _ in range(difficulty + 3)]
        prompt = ask(f"Sort ascending: {' '.join(map(str, values))}.")
        return self.problem(seed, difficulty, prompt, " ".join(map(str, sorted(values))), values=values)

    def check(self, problem: Problem, answer: str) -> bool:
        return parse_ints(answer) == sorted(problem.params["values"])


def run_stack_program(program: list[list]) -> int:
    """Reference interpreter; the generator only emits programs that never underflow."""
    stack: list[int] = []
    for op, *args in program:
        if op == "push":
            stack.append(args[0])
        elif op == "dup":
            stack.append(stack[-1])
        elif op == "swap":
            stack[-1], stack[-2] = stack[-2], stack[-1]
        elif op == "pop":
            stack.pop()
        else:
            b, a = stack.pop(), stack.pop()
            stack.append({"add": a + b, "sub": a - b, "mul": a * b}[op])
    return stack[-1]


@register_env(source="builtin")
class StackMachine(Env):
    """Trace a stack program of d + 3 instructions (two pushes first, an arithmetic op last when the stack
    allows) and report the top of the stack; d = 0 is e.g. `push 3; push 4; add`."""

    name = "stack_machine"
    tags = ("programs",)

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        program: list[list] = [["push", rng.randrange(10)], ["push", rng.randrange(10)]]
        depth = 2
        for step in range(difficulty + 1):
            arithmetic = ["add", "sub", "mul"] if depth >= 2 else []
            if step == difficulty and arithmetic:
                choices = arithmetic
            else:
                choices = ["push", "dup", *arithmetic, *(["swap", "pop"] if depth >= 2 else [])]
            op = rng.choice(choices)
            program.append(["push", rng.randrange(10)] if op == "push" else [op])
            depth += {"push": 1, "dup": 1, "swap": 0}.get(op, -1)
        text = "; ".join(" ".join(map(str, step)) for step in program)
        prompt = ask(f"Stack program: {text}. Top of stack?")
        return self.problem(seed, difficulty, prompt, str(run_stack_program(program)), program=program)

    def check(self, problem: Problem, answer: str) -> bool:
        return parse_int(answer) == run_stack_program(problem.params["program"])
