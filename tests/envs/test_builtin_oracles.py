"""Builtin envs against independent oracles: each prompt is parsed as the model sees it and solved by brute
force (or an outside library) written here, never with the env's own solver or params.

For each env, at small difficulties, the reference must be what the brute force finds, and `verify` must
accept exactly the answers the brute force calls right: every candidate where the space is small enough
to enumerate, otherwise the right ones plus near misses.
"""

from __future__ import annotations

import itertools
import math
import re
from fractions import Fraction

import pytest
import sympy

from posttrain.envs import Problem, make_env

SEEDS = range(3)
SMALL = range(4)


def _problems(name: str, difficulties=SMALL, seeds=SEEDS) -> list[Problem]:
    env = make_env(name)
    return [env.generate(seed, d) for d in difficulties for seed in seeds]


def _accepts(problem: Problem, answer: str) -> bool:
    return make_env(problem.env).verify(problem, f"<answer>{answer}</answer>").correct


def cases(name: str, difficulties=SMALL, seeds=SEEDS) -> list:
    return [pytest.param(p, id=f"d{p.difficulty}-s{p.seed}") for p in _problems(name, difficulties, seeds)]


def _field(pattern: str, prompt: str) -> re.Match:
    match = re.search(pattern, prompt)
    assert match, f"prompt format changed: {prompt!r}"
    return match


@pytest.mark.parametrize("problem", cases("shortest_path", range(7), range(8)))
def test_shortest_path_against_every_simple_path(problem: Problem) -> None:
    edges = [tuple(map(int, e)) for e in re.findall(r"(\d+)-(\d+):(\d+)", problem.prompt)]
    target = int(_field(r"Shortest distance 0 to (\d+)\?", problem.prompt).group(1))
    weight = {}
    for u, v, w in edges:  # undirected, as "u-v" reads
        weight[u, v] = weight[v, u] = w
    best = math.inf

    def walk(node: int, seen: frozenset, length: int) -> None:
        nonlocal best
        if node == target:
            best = min(best, length)
            return
        for (a, b), w in weight.items():
            if a == node and b not in seen:
                walk(b, seen | {b}, length + w)

    walk(0, frozenset({0}), 0)
    assert best < math.inf and problem.reference == str(best)
    assert [_accepts(problem, str(best + delta)) for delta in (-1, 0, 1)] == [False, True, False]


def _run_stack(text: str) -> int:
    stack: list[int] = []
    for instruction in text.split("; "):
        op, *arg = instruction.split()
        if op == "push":
            stack.append(int(arg[0]))
        elif op == "dup":
            stack.append(stack[-1])
        elif op == "pop":
            del stack[-1]
        elif op == "swap":
            stack[-2:] = stack[-2:][::-1]
        else:  # binary: the second from the top is the left operand
            right, left = stack.pop(), stack.pop()
            stack.append({"add": left + right, "sub": left - right, "mul": left * right}[op])
    return stack[-1]


@pytest.mark.parametrize("problem", cases("stack_machine", range(7)))
def test_stack_machine_against_a_separate_interpreter(problem: Problem) -> None:
    top = _run_stack(_field(r"Stack program: (.*)\. Top of stack\?", problem.prompt).group(1))
    assert problem.reference == str(top)
    assert [_accepts(problem, str(top + delta)) for delta in (-1, 0, 1)] == [False, True, False]


@pytest.mark.parametrize("problem", cases("knapsack", range(5)))
def test_knapsack_accepts_exactly_the_optimal_subsets(problem: Problem) -> None:
    capacity = int(_field(r"Knapsack cap (\d+),", problem.prompt).group(1))
    items = {int(i): (int(w), int(v)) for i, w, v in re.findall(r"(\d+):w(\d+)v(\d+)", problem.prompt)}
    subsets = [s for r in range(1, len(items) + 1) for s in itertools.combinations(sorted(items), r)]
    weight = {s: sum(items[i][0] for i in s) for s in subsets}
    value = {s: sum(items[i][1] for i in s) for s in subsets}
    best = max(value[s] for s in subsets if weight[s] <= capacity)
    for subset in subsets:
        assert _accepts(problem, " ".join(map(str, subset))) == (weight[subset] <= capacity and value[subset] == best)
    chosen = tuple(map(int, problem.reference.split()))
    assert weight[chosen] <= capacity and value[chosen] == best
    assert _accepts(problem, " ".join(map(str, reversed(chosen))))  # item order is not part of the answer


_STEP = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}


@pytest.mark.parametrize("problem", cases("maze"))
def test_maze_accepts_exactly_the_shortest_of_all_simple_paths(problem: Problem) -> None:
    grid = _field(r"Maze (\S+) \(# wall\)", problem.prompt).group(1).split("/")
    cells = {(r, c): ch for r, row in enumerate(grid) for c, ch in enumerate(row)}
    start = next(p for p, ch in cells.items() if ch == "S")
    paths: list[str] = []  # every self-avoiding walk from S that ends on G

    def walk(here: tuple[int, int], seen: set, moves: str) -> None:
        if cells[here] == "G":
            paths.append(moves)
            return
        for move, (dr, dc) in _STEP.items():
            there = (here[0] + dr, here[1] + dc)
            if cells.get(there, "#") != "#" and there not in seen:
                walk(there, seen | {there}, moves + move)

    walk(start, {start}, "")
    shortest = min(map(len, paths))
    assert len(problem.reference) == shortest and problem.reference in paths
    for path in sorted(paths, key=len)[:60]:
        assert _accepts(problem, path) == (len(path) == shortest), path
    first = problem.reference[0]
    back = {"U": "D", "D": "U", "L": "R", "R": "L"}[first]
    assert not _accepts(problem, first + back + problem.reference)  # reaches G, two moves too many


@pytest.mark.parametrize("problem", cases("toposort"))
def test_toposort_accepts_exactly_the_valid_orders(problem: Problem) -> None:
    n = int(_field(r"Order 0\.\.(\d+) so that", problem.prompt).group(1)) + 1
    before = [tuple(map(int, pair)) for pair in re.findall(r"(\d+)<(\d+)", problem.prompt)]
    valid = 0
    for order in itertools.permutations(range(n)):
        position = {v: i for i, v in enumerate(order)}
        ok = all(position[a] < position[b] for a, b in before)
        valid += ok
        assert _accepts(problem, " ".join(map(str, order))) == ok
    assert valid >= 1


def _linear_equations(prompt: str) -> tuple[list[sympy.Symbol], list[sympy.Eq]]:
    names = _field(r"Give ([a-z ]+)\.", prompt).group(1).split()
    symbols = sympy.symbols(names)
    equations = []
    for left, right in re.findall(r"([-+\d a-z]+)=(-?\d+)", _field(r"Solve (.*?)\. Give", prompt).group(1)):
        expression = sum(
            (int(sign + (digits or "1")) * symbols[names.index(var)] for sign, digits, var in
             re.findall(r"([-+]?)(\d*)([a-z])", left.replace(" ", ""))),
            sympy.Integer(0),
        )
        equations.append(sympy.Eq(expression, int(right)))
    return symbols, equations


@pytest.mark.parametrize("problem", cases("linear_system", range(7)))
def test_linear_system_against_sympy(problem: Problem) -> None:
    symbols, equations = _linear_equations(problem.prompt)
    (solution,) = sympy.linsolve(equations, symbols)  # unique
    values = [int(v) for v in solution if v.is_integer]
    assert len(values) == len(symbols) and problem.reference == " ".join(map(str, values))
    assert _accepts(problem, " ".join(map(str, values)))
    for i in range(len(values)):
        nudged = [v + (j == i) for j, v in enumerate(values)]
        assert not _accepts(problem, " ".join(map(str, nudged)))


@pytest.mark.parametrize("problem", cases("crt", range(7)))
def test_crt_against_counting_up(problem: Problem) -> None:
    conditions = [tuple(map(int, c)) for c in re.findall(r"x%(\d+)=(\d+)", problem.prompt)]
    smallest = next(x for x in itertools.count() if all(x % m == r for m, r in conditions))
    assert problem.reference == str(smallest)
    period = math.lcm(*(m for m, _ in conditions))
    assert [_accepts(problem, str(x)) for x in (smallest, smallest + 1, smallest + period)] == [True, False, False]


def _statement_truth(text: str, knights: dict[str, bool]) -> bool:
    patterns = [
        (r"^([A-Z]) is a knight$", lambda a: knights[a]),
        (r"^([A-Z]) is a knave$", lambda a: not knights[a]),
        (r"^([A-Z]) and ([A-Z]) are knights$", lambda a, b: knights[a] and knights[b]),
        (r"^([A-Z]) or ([A-Z]) is a knight$", lambda a, b: knights[a] or knights[b]),
        (r"^([A-Z]) and ([A-Z]) are the same$", lambda a, b: knights[a] == knights[b]),
    ]
    for pattern, truth in patterns:
        match = re.match(pattern, text)
        if match:
            return truth(*match.groups())
    raise AssertionError(f"unknown statement {text!r}")


@pytest.mark.parametrize("problem", cases("knights_knaves", range(7)))
def test_knights_knaves_accepts_exactly_the_consistent_assignment(problem: Problem) -> None:
    said = dict(re.findall(r"([A-Z]): ([^;.]+)", _field(r"lie\. (.*)\. Give", problem.prompt).group(1)))
    people = _field(r"Give K/N for ([A-Z]+)\.", problem.prompt).group(1)
    consistent = []
    for letters in itertools.product("KN", repeat=len(people)):
        knights = {p: letter == "K" for p, letter in zip(people, letters, strict=True)}
        ok = all(_statement_truth(said[p], knights) == knights[p] for p in people)
        consistent += ["".join(letters)] if ok else []
        assert _accepts(problem, "".join(letters)) == ok
    assert consistent == [problem.reference]  # the puzzle promises exactly one


@pytest.mark.parametrize("problem", cases("latin_square", range(5)))
def test_latin_square_accepts_exactly_the_valid_completions(problem: Problem) -> None:
    rows = _field(r"Fill the Latin square (\S+) \(\. blank\)", problem.prompt).group(1).split("/")
    n = len(rows)
    symbols = "123456789"[:n]  # n <= 9 at these difficulties
    blanks = [(r, c) for r in range(n) for c in range(n) if rows[r][c] == "."]
    valid = 0
    for fill in itertools.product(symbols, repeat=len(blanks)):
        grid = [list(row) for row in rows]
        for (r, c), symbol in zip(blanks, fill, strict=True):
            grid[r][c] = symbol
        lines = ["".join(row) for row in grid] + ["".join(col) for col in zip(*grid, strict=True)]
        ok = all(sorted(line) == sorted(symbols) for line in lines)
        valid += ok
        assert _accepts(problem, "/".join("".join(row) for row in grid)) == ok
    assert valid >= 1


def _reachable(numbers: list[int]) -> dict[Fraction, str]:
    """Every value an expression over a sub-multiset of `numbers` can take, with one expression for it."""
    found: dict[Fraction, str] = {}
    for size in range(1, len(numbers) + 1):
        for chosen in itertools.permutations(numbers, size):
            for value, text in _combine([(Fraction(x), str(x)) for x in chosen]):
                found.setdefault(value, text)
    return found


def _combine(terms: list[tuple[Fraction, str]]) -> list[tuple[Fraction, str]]:
    if len(terms) == 1:
        return terms
    out = []
    for split in range(1, len(terms)):
        for left, left_text in _combine(terms[:split]):
            for right, right_text in _combine(terms[split:]):
                out += [(left + right, f"({left_text}+{right_text})"), (left - right, f"({left_text}-{right_text})")]
                out.append((left * right, f"({left_text}*{right_text})"))
                if right:
                    out.append((left / right, f"({left_text}/{right_text})"))
    return out


@pytest.mark.parametrize("problem", cases("countdown", range(6)))
def test_countdown_against_exhaustive_search(problem: Problem) -> None:
    match = _field(r"Use ([\d ]+) \(each at most once\) with \+-\*/ to make (\d+)\.", problem.prompt)
    numbers, target = list(map(int, match.group(1).split())), int(match.group(2))
    reachable = _reachable(numbers)
    assert target in reachable
    assert _accepts(problem, reachable[target])  # an expression found here, not the env's
    reference_value = eval(re.sub(r"(\d+)", r"Fraction(\1)", problem.reference), {"Fraction": Fraction})
    used = sorted(map(int, re.findall(r"\d+", problem.reference)))
    assert reference_value == target and all(used.count(x) <= numbers.count(x) for x in used)
    for miss in (target - 1, target + 1):
        if miss in reachable:
            assert not _accepts(problem, reachable[miss])
    assert _accepts(problem, str(target)) == (target in numbers)
    assert not _accepts(problem, f"{reachable[target]}+0")  # 0 is never one of the given numbers
