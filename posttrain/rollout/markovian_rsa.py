"""Markovian RSA: recursive self-aggregation whose prompts carry only the tails of earlier traces.

Round 0 draws N chains per problem under a budget of β new tokens. Each round t = 1..T builds N prompts:
the problem, C tails (the last τ tokens of earlier reasoning) drawn uniformly without replacement, and an
aggregation instruction. The last round's candidates are the answers. A prompt therefore never holds
more than |q| + C·τ tokens plus the template, so the context stays bounded however large T is.

Special cases: T = 0 is plain parallel sampling; C = 1 chains each trace to its own tail (Delethink);
τ = β carries whole traces (RSA without truncation). `full_chain` carries each chain's entire history
instead, which grows with T (the unbounded baseline of bench/rollout.py).

The algorithm only needs a `generate(requests) -> rollouts` callable: the fleet, or a worker in-process.
The whole tree is kept, so the learner can train on round-0 samples and round-1 aggregation samples.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from posttrain.answers import extract_answer
from posttrain.rollout.config import RSAConfig
from posttrain.rollout.types import Request, Rollout, SamplingParams
from posttrain.rollout.worker import encode_messages

GenerateFn = Callable[[Sequence[Request]], list[Rollout]]


@dataclass
class Candidate:
    """One node of the tree: a chain's sample in one round, and the state it passes on."""

    chain: int
    parents: list[int]  # chains of the previous round whose tails are in this prompt
    rollout: Rollout
    carried: str  # tail (or, with full_chain, whole history) handed to the next round
    answer: str | None


@dataclass
class RSATree:
    problem: str
    rounds: list[list[Candidate]] = field(default_factory=list)

    @property
    def final(self) -> list[Candidate]:
        return self.rounds[-1]

    @property
    def answers(self) -> list[str | None]:
        return [c.answer for c in self.final]

    @property
    def votes(self) -> dict[str, int]:
        return dict(Counter(a for a in self.answers if a is not None).most_common())

    @property
    def majority(self) -> str | None:
        """Most frequent extracted answer; ties go to the answer seen first."""
        return next(iter(self.votes), None)

    def to_dict(self, *, tokens: bool = False) -> dict[str, Any]:
        """JSON-ready tree; `tokens` adds prompt/completion ids and log-probs (training data)."""

        def node(c: Candidate) -> dict[str, Any]:
            record = {"chain": c.chain, "parents": c.parents, "answer": c.answer, "carried": c.carried}
            rollout = asdict(c.rollout)
            if not tokens:
                rollout = {k: v for k, v in rollout.items() if k not in ("prompt_ids", "completion_ids", "logprobs")}
            return record | rollout

        return {
            "problem": self.problem,
            "answers": self.answers,
            "majority": self.majority,
            "votes": self.votes,
            "rounds": [[node(c) for c in round_] for round_ in self.rounds],
        }


def strip_special(text: str, tokenizer: Any) -> str:
    """Model text must not smuggle chat markup (e.g. an end-of-turn token) into the next prompt."""
    for token in tokenizer.all_special_tokens:
        text = text.replace(token, "")
    return text


def reasoning(text: str) -> str:
    """The trace: text before the first `</think>` (all of it when there is none), after any `<think>`."""
    end = text.find("</think>")
    trace = text if end < 0 else text[:end]
    start = trace.find("<think>")
    return trace if start < 0 else trace[start + len("<think>") :]


def last_tokens(text: str, count: int, tokenizer: Any) -> str:
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return tokenizer.decode(ids[-count:], skip_special_tokens=True) if ids else ""


def aggregation_prompt(problem: str, tails: Sequence[str], cfg: RSAConfig) -> str:
    """The round-t prompt text; `str.replace`, not `format`, so braces in model text are harmless."""
    candidates = "".join(
        cfg.candidate_template.replace("{index}", str(i + 1)).replace("{tail}", tail) for i, tail in enumerate(tails)
    )
    return (
        cfg.aggregation_template.replace("{count}", str(len(tails)))
        .replace("{problem}", problem)
        .replace("{candidates}", candidates)
    )


def choose_parents(rng: random.Random, chain: int, cfg: RSAConfig) -> list[int]:
    if cfg.C == 1:
        return [chain]  # Delethink: each chain continues from its own tail
    return rng.sample(range(cfg.N), cfg.C)


def round_params(t: int, cfg: RSAConfig, sampling: SamplingParams) -> SamplingParams:
    final = t == cfg.T
    return SamplingParams(
        max_new_tokens=cfg.beta,
        temperature=cfg.final_temperature if final else sampling.temperature,
        top_p=cfg.final_top_p if final else sampling.top_p,
        top_k=cfg.final_top_k if final and cfg.final_top_k is not None else sampling.top_k,
        stop=sampling.stop,
        seed=sampling.seed,
    )


def run_markovian_rsa(
    problems: Sequence[str],
    generate: GenerateFn,
    tokenizer: Any,
    cfg: RSAConfig,
    sampling: SamplingParams,
    *,
    seed: int = 0,
    on_round: Callable[[int], None] | None = None,
) -> list[RSATree]:
    """Run T + 1 rounds for every problem; each round is a single `generate` call over all chains."""
    rngs = [random.Random(f"rsa:{seed}:{p}") for p in range(len(problems))]
    trees = [RSATree(problem) for problem in problems]
    for t in range(cfg.T + 1):
        params = round_params(t, cfg, sampling)
        requests, parents = [], []
        for p, tree in enumerate(trees):
            for chain in range(cfg.N):
                chosen = [] if t == 0 else choose_parents(rngs[p], chain, cfg)
                text = tree.problem
                if chosen:
                    text = aggregation_prompt(tree.problem, [tree.rounds[-1][j].carried for j in chosen], cfg)
                prompt = encode_messages(tokenizer, [{"role": "user", "content": text}])
                requests.append(Request(id=f"p{p}.t{t}.c{chain}", params=params, prompt_ids=tuple(prompt), group=p))
                parents.append(chosen)
        rollouts = iter(generate(requests))
        chosen_parents = iter(parents)
        for tree in trees:
            previous = tree.rounds[-1] if tree.rounds else None
            layer = []
            for chain in range(cfg.N):
                rollout, chosen = next(rollouts), next(chosen_parents)
                trace = strip_special(reasoning(rollout.text), tokenizer)
                if cfg.full_chain:
                    carried = (previous[chain].carried + "\n" if previous else "") + trace
                else:
                    carried = last_tokens(trace, cfg.tau, tokenizer)
                layer.append(Candidate(chain, chosen, rollout, carried, extract_answer(rollout.text)))
            tree.rounds.append(layer)
        if on_round is not None:
            on_round(t)
    return trees


def max_prompt_tokens(problem: str, tokenizer: Any, cfg: RSAConfig) -> int:
    """Longest prompt any round can build for `problem` (exact for one-token-per-character tokenizers).

    Markovian: |q| + template + C·τ. With `full_chain` a carried history holds up to T traces of β tokens.
    """
    plain = len(encode_messages(tokenizer, [{"role": "user", "content": problem}]))
    if cfg.T == 0:
        return plain
    frame = len(
        encode_messages(tokenizer, [{"role": "user", "content": aggregation_prompt(problem, [""] * cfg.C, cfg)}])
    )
    carried = cfg.T * cfg.beta + cfg.T - 1 if cfg.full_chain else cfg.tau
    return max(plain, frame + cfg.C * carried)
