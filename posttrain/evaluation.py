"""Held-out evaluation as a library: `posttrain eval` and every stage's before/after report use it.

An eval set is a list of problems plus the scorer that grades them (env verdicts for env problems, a reward
for dataset rows). Completions come from the same engine interface as every other generation path. For each
temperature of a sweep it reports pass@1 (the mean over `samples` answers per prompt; greedy: one answer) and
pass@k (the unbiased estimator of Chen et al. 2021), per prompt as well, so two models are compared pairwise
on the same prompts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from posttrain.envs import Problem, env_label
from posttrain.rl.scoring import Scorer
from posttrain.rl.sources import problem_messages
from posttrain.rollout.chat import encode_messages
from posttrain.rollout.engine import Engine
from posttrain.rollout.sampling import sample_seed
from posttrain.rollout.types import SamplingParams


@dataclass
class EvalSet:
    name: str
    problems: list[Problem]
    scorer: Scorer
    describe: str = ""  # e.g. "difficulty 1"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n, c of them correct,
    is correct (the unbiased estimator of Chen et al. 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def generate_answers(
    engine: Engine,
    problems: Sequence[Problem],
    *,
    temperature: float,
    samples: int,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
) -> list[list[str]]:
    """`samples` completions per problem (1 when greedy); sample j of problem i draws from stream (seed, i, j)."""
    if temperature <= 0 and samples != 1:
        raise ValueError("greedy decoding gives one completion per prompt; sample with temperature > 0")
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature)
    prompts = [encode_messages(engine.tokenizer, problem_messages(p)) for p in problems]
    jobs = [(i, j) for i in range(len(problems)) for j in range(samples)]
    texts: list[list[str]] = [[] for _ in problems]
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        seeds = [sample_seed("eval", seed, i, j) for i, j in chunk]
        completions = engine.generate([prompts[i] for i, _ in chunk], params, seeds)
        for (i, _), completion in zip(chunk, completions, strict=True):
            texts[i].append(completion.text)
    return texts


def score_set(eval_set: EvalSet, answers: list[list[str]], k: int) -> dict[str, Any]:
    """pass@1 and pass@k of one set's answers, overall and per problem."""
    flat_problems = [p for p, group in zip(eval_set.problems, answers, strict=True) for _ in group]
    scores, _ = eval_set.scorer.score(flat_problems, [a for group in answers for a in group], step=0, max_steps=0)
    per_problem, per_problem_k, position = [], [], 0
    for group in answers:
        correct = [s.correct for s in scores[position : position + len(group)]]
        position += len(group)
        per_problem.append(sum(correct) / len(correct))
        per_problem_k.append(pass_at_k(len(correct), sum(correct), min(k, len(correct))))
    n = max(len(per_problem), 1)
    sampled = bool(answers) and len(answers[0]) > 1
    result = {
        "pass@1": sum(per_problem) / n if per_problem else None,
        f"pass@{k}": sum(per_problem_k) / n if per_problem and sampled else None,
        "format_ok": sum(s.format_ok for s in scores) / max(len(scores), 1) if scores else None,
        "reward": sum(s.reward for s in scores) / len(scores) if scores else None,
        "length": sum(len(a) for group in answers for a in group) / len(scores) if scores else None,  # characters
        "n": len(per_problem),
        "per_problem": per_problem,
    }
    if k == 1:  # pass@1 is the mean over the samples, whatever their number
        result["pass@1"] = sum(per_problem) / n if per_problem else None
    return result


def evaluate_sets(
    engine: Engine,
    sets: Sequence[EvalSet],
    temperatures: Sequence[float],
    *,
    samples: int,
    k: int,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
) -> dict[str, dict[str, dict[str, Any]]]:
    """{set: {temperature label ("greedy" or "T=0.7"): score_set(...)}} for every temperature of the sweep."""
    report: dict[str, dict[str, dict[str, Any]]] = {}
    for eval_set in sets:
        if not eval_set.problems:
            continue  # nothing held out (eval.num_samples=0): no row rather than a row of n/a
        report[eval_set.name] = {}
        for temperature in temperatures:
            count = samples if temperature > 0 else 1
            answers = generate_answers(
                engine,
                eval_set.problems,
                temperature=temperature,
                samples=count,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                seed=seed,
            )
            report[eval_set.name][temperature_label(temperature)] = score_set(eval_set, answers, k)
    return report


def temperature_label(temperature: float) -> str:
    return "greedy" if temperature <= 0 else f"T={temperature:g}"


def best(row: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The temperature with the highest pass@1 (the strongest simple baseline of a model)."""
    scored = [(label, cell) for label, cell in row.items() if cell["pass@1"] is not None]
    return max(scored, key=lambda item: item[1]["pass@1"])


# Two-sided 95% quantiles of Student's t by degrees of freedom; beyond the table the normal 1.96 is within 3%.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% half-width (Student's t, so a handful of seeds gets an honest, wide interval)."""
    n = len(values)
    if n < 2:
        return (values[0] if values else 0.0), float("nan")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = T95[max(k for k in T95 if k <= n - 1)] if n - 1 <= 30 else 1.96
    return mean, t * sd / math.sqrt(n)


def paired_gain(before: Sequence[float], after: Sequence[float]) -> tuple[float, float]:
    """Mean per-prompt difference and its 95% half-width."""
    return mean_interval([a - b for a, b in zip(after, before, strict=True)])


def comparison(before: dict, after: dict, train_label: str) -> dict[str, dict[str, Any]]:
    """Per set: best temperature of each model, pass@1 at the training temperature, greedy, and the gain of the
    trained model's best over the starting model's best, with its 95% interval."""
    out = {}
    for name in before:
        best_before, cell_before = best(before[name])
        best_after, cell_after = best(after[name])
        gain, half_width = paired_gain(cell_before["per_problem"], cell_after["per_problem"])
        out[name] = {
            "best_before": {"temperature": best_before, "pass@1": cell_before["pass@1"]},
            "best_after": {"temperature": best_after, "pass@1": cell_after["pass@1"]},
            "train_temperature": {
                "label": train_label,
                "before": _get(before, name, train_label),
                "after": _get(after, name, train_label),
            },
            "gain_over_best_baseline": gain,
            "gain_ci95": half_width,
            "prompts": len(cell_before["per_problem"]),
            **{key: _sides(before, after, name, train_label, key) for key in ("reward", "length")},
        }
    return out


def _sides(before: dict, after: dict, name: str, label: str, key: str) -> dict[str, float | None]:
    return {"before": _get(before, name, label, key), "after": _get(after, name, label, key)}


def _get(report: dict, name: str, label: str, key: str = "pass@1") -> float | None:
    cell = report[name].get(label)
    return None if cell is None else cell.get(key)


def report_table(before: dict, after: dict, k: int, train_label: str) -> str:
    """The honest before/after table: every temperature of the sweep, pass@k beside pass@1, and the gain over
    the starting model at its own best temperature."""
    lines = []
    summary = comparison(before, after, train_label)
    for name in before:
        lines.append(f"{name}")
        lines.append(f"  {'':<10}{'before':>18}{'after':>18}")
        lines.append(f"  {'':<10}" + f"{'pass@1':>9}{f'pass@{k}':>9}" * 2)
        for label in before[name]:
            cells = [before[name][label], after[name].get(label, {})]
            row = "".join(f"{_pct(c.get('pass@1')):>9}{_pct(c.get(f'pass@{k}')):>9}" for c in cells)
            marker = "  <- RL samples here" if label == train_label else ""
            lines.append(f"  {label:<10}{row}{marker}")
        s = summary[name]
        lines.append(
            f"  best pass@1: before {_pct(s['best_before']['pass@1'])} ({s['best_before']['temperature']}), "
            f"after {_pct(s['best_after']['pass@1'])} ({s['best_after']['temperature']}); "
            f"gain over the best baseline {100 * s['gain_over_best_baseline']:+.1f} points "
            + (f"(95% CI ±{100 * s['gain_ci95']:.1f}, {s['prompts']} prompts)" if s["prompts"] >= 2
               else f"({s['prompts']} held-out prompt: no interval)")
        )
        reward, length = s["reward"], s["length"]
        if reward["before"] is not None and length["before"] is not None:
            lines.append(
                f"  at {train_label}: mean reward {reward['before']:.3g} -> {reward['after']:.3g}, "
                f"mean length {length['before']:.0f} -> {length['after']:.0f} characters"
            )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def env_eval_sets(names: Sequence[str], difficulty: int, count: int, seed: int, pool: Any) -> list[EvalSet]:
    """One set per env: `count` held-out problems (the prompts every training stage skips) at `difficulty`."""
    from posttrain.data.from_envs import heldout_problems
    from posttrain.rl.scoring import EnvScorer

    scorer = EnvScorer(pool)
    sets = []
    for name in names:
        problems = [p for p, _ in heldout_problems(name, difficulty, count, seed, pool)] if count else []
        sets.append(EvalSet(env_label(name), problems, scorer, f"difficulty {difficulty}"))
    return sets
