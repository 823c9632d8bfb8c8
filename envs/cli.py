"""`posttrain envs list` and `posttrain envs try`: browse envs and check one problem by hand.

`try` goes through the same `EnvPool` training uses: one worker process, killed when a call overruns
`--timeout`, so a hanging or crashing env prints what went wrong instead of hanging the shell.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from posttrain.envs.config import EnvsConfig
from posttrain.envs.isolation import EnvPool
from posttrain.envs.registry import SOURCES, EnvSpec, list_envs, make_env
from posttrain.errors import UserError


def register(subparsers: Any) -> None:
    envs = subparsers.add_parser("envs", help="list environments or try one problem")
    commands = envs.add_subparsers(dest="envs_command", metavar="{list,try}", required=True)

    listing = commands.add_parser("list", help="name, source, tags and difficulty range of every env")
    listing.add_argument("--source", choices=SOURCES, help="only envs of this source (default: all of them)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=list_command)

    attempt = commands.add_parser("try", help="generate one problem and verify the oracle's (or your) answer")
    attempt.add_argument("name", help="env name, rlve:<Id>, rg:<dataset>, module:Class or file.py:Class")
    attempt.add_argument("--difficulty", type=int, default=0)
    attempt.add_argument("--seed", type=int, default=0)
    attempt.add_argument("--answer", help="text to verify (wrapped in <answer></answer> unless it has tags)")
    attempt.add_argument("--json", action="store_true", help="print JSON")
    attempt.add_argument("--timeout", type=float, default=30.0, help="seconds per generate / solve / verify call")
    attempt.set_defaults(func=try_command)


def _difficulty_range(spec: EnvSpec) -> str:
    return f"{spec.min_difficulty}..{'inf' if spec.max_difficulty is None else spec.max_difficulty}"


def _counts(specs: list[EnvSpec]) -> str:
    per_source = Counter(spec.source for spec in specs)
    counts = [f"{per_source[source]} {source}" for source in SOURCES if per_source[source]]
    return f"{len(specs)} envs: {', '.join(counts)}"


def list_command(args: argparse.Namespace) -> int:
    specs = list_envs(args.source)
    if args.json:
        print(json.dumps([spec.to_dict() for spec in specs], indent=1))
        return 0
    rows = [
        (s.name, s.source, ",".join(s.tags), _difficulty_range(s), f"broken: {s.broken}" if s.broken else "")
        for s in specs
    ]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table("name", "source", "tags", "difficulty", "note", caption=_counts(specs))
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:
        for row in rows:
            print("\t".join(row).rstrip())
        print(_counts(specs))
    return 0


def try_command(args: argparse.Namespace) -> int:
    if args.difficulty < 0:
        raise UserError("--difficulty must be >= 0")
    if args.timeout <= 0:
        raise UserError("--timeout must be > 0")
    top = make_env(args.name).max_difficulty  # an unknown name fails here, with a suggestion
    if top is not None and args.difficulty > top:
        print(f"note: {args.name} goes up to difficulty {top}; --difficulty {args.difficulty} gives a difficulty-{top} "
              "problem", file=sys.stderr)
    config = EnvsConfig([args.name], workers=1, generate_timeout_s=args.timeout, verify_timeout_s=args.timeout)
    with EnvPool(config) as pool:
        (problem,) = pool.generate_many([(args.name, args.seed, args.difficulty)])
        if problem is None:
            raise UserError(f"{args.name} failed: {pool.last_error[args.name]}")
        if args.answer is None:
            (answer,) = pool.solve_many([problem])
            if answer is None:
                raise UserError(f"{args.name} gave no oracle answer (none, or its solver failed); pass --answer TEXT")
            completion, source = f"<answer>{answer}</answer>", "oracle"
        else:
            has_tags = "<answer>" in args.answer or "\\boxed{" in args.answer
            completion, source = (args.answer if has_tags else f"<answer>{args.answer}</answer>"), "given"
        (verdict,) = pool.verify_many([(problem, completion)])
        if args.name in pool.last_error:  # generation succeeded, so this is the verifier's failure
            raise UserError(f"{args.name} failed: {pool.last_error[args.name]}")
    if args.json:
        print(json.dumps({"problem": problem.to_dict(), "completion": completion, "verdict": verdict.to_dict()}))
    else:
        print(f"{'prompt:':<15} {problem.prompt}")
        print(f"{'reference:':<15} {problem.reference}")
        print(f"{source + ' answer:':<15} {completion}")
        print(f"{'verdict:':<15} reward={verdict.reward:g} correct={verdict.correct} format_ok={verdict.format_ok}")
        if verdict.info:
            print(f"{'info:':<15} {json.dumps(verdict.info)}")
    return 0
