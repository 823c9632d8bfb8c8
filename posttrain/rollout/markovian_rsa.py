"""Markovian RSA: recursive self-aggregation whose prompts carry only the tails of earlier traces.

Round 0 draws N chains per problem under a budget of β new tokens. Each round t = 1..T builds N prompts:
the problem, C tails (the last τ tokens of earlier reasoning) drawn uniformly without replacement, and an
aggregation instruction. The last round's candidates are the answers. Tails travel as the token ids the
model produced and are spliced into the next prompt unchanged, so a prompt never holds more than the
template plus |q| + C·τ tokens, whatever the tokenizer, and the context stays bounded however large T is.

Special cases: T = 0 is plain parallel sampling; C = 1 chains each trace to its own tail (Delethink);
τ = β carries whole traces (RSA without truncation). `full_chain` carries each chain's entire history
instead, which grows with T (the unbounded baseline of bench/rollout.py).

The algorithm only needs a `generate(requests) -> rollouts` callable: the fleet, or a worker in-process.
Round 0 may come from another generator (`candidates=`): an earlier checkpoint's samples, aggregated by
the current policy. The whole tree is kept, so the learner can train on any round's samples.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from posttrain.answers import extract_answer
from posttrain.rollout.chat import Segment, encode_messages, encode_user_segments
from posttrain.rollout.config import RSAConfig
from posttrain.rollout.sampling import sample_seed
from posttrain.rollout.types import Request, Rollout, SamplingParams

GenerateFn = Callable[[Sequence[Request]], list[Rollout]]


@dataclass
class Candidate:
    """One node of the tree: a chain's sample in one round, and the state it passes on."""

    chain: int
    parents: list[int]  # chains of the previous round whose tails are in this prompt
    rollout: Rollout
    carried_ids: list[int]  # tail (or, with full_chain, whole history) handed to the next round, as token ids
    carried: str  # the same, decoded (for people and logs)
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
        """JSON-ready tree; `tokens` adds prompt/completion ids, log-probs and MoE routing (training data)."""

        def node(c: Candidate) -> dict[str, Any]:
            record = {"chain": c.chain, "parents": c.parents, "answer": c.answer, "carried": c.carried}
            rollout = asdict(c.rollout)
            routing = rollout.pop("routing")
            if tokens:
                rollout["routing"] = routing.tolist() if routing is not None else None
            else:
                rollout = {k: v for k, v in rollout.items() if k not in ("prompt_ids", "completion_ids", "logprobs")}
            return record | rollout

        return {
            "problem": self.problem,
            "answers": self.answers,
            "majority": self.majority,
            "votes": self.votes,
            "rounds": [[node(c) for c in round_] for round_ in self.rounds],
        }


def _prefix_reaching(ids: Sequence[int], tokenizer: Any, pattern: str) -> int | None:
    """Fewest leading tokens whose text contains `pattern` (binary search: containment grows with the prefix)."""

    def contains(count: int) -> bool:
        return pattern in tokenizer.decode(ids[:count], skip_special_tokens=True)

    if not ids or not contains(len(ids)):
        return None
    low, high = 1, len(ids)
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if contains(middle) else (middle + 1, high)
    return low


def _prefix_within(ids: Sequence[int], tokenizer: Any, chars: int) -> int:
    """Most leading tokens whose text is at most `chars` characters long."""
    low, high = 0, len(ids)
    while low < high:
        middle = (low + high + 1) // 2
        fits = len(tokenizer.decode(ids[:middle], skip_special_tokens=True)) <= chars
        low, high = (middle, high) if fits else (low, middle - 1)
    return low


def trace_ids(ids: Sequence[int], tokenizer: Any) -> list[int]:
    """The reasoning tokens of a completion: those before `</think>` (all when there is none), after any
    `<think>`, without special tokens, so model output can never smuggle chat markup into the next prompt."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in ids if i not in special]
    closing = _prefix_reaching(ids, tokenizer, "</think>")
    if closing is not None:
        text = tokenizer.decode(ids[:closing], skip_special_tokens=True)
        ids = ids[: _prefix_within(ids[:closing], tokenizer, text.find("</think>"))]
    opening = _prefix_reaching(ids, tokenizer, "<think>")
    return ids[opening:] if opening is not None else ids


def tail_text(completion: str, tau: int, tokenizer: Any) -> str:
    """The tail RSA would carry for a completion of this text (its last τ reasoning tokens), as text: what
    SFT's aggregation examples put in their prompts."""
    ids = tokenizer(completion, add_special_tokens=False, verbose=False)["input_ids"]
    return tokenizer.decode(trace_ids(ids, tokenizer)[-tau:], skip_special_tokens=True)


def _fill(template: str, values: dict[str, str]) -> str:
    """Substitute `{name}` fields in one pass, so braces inside the values (model text) stay literal."""
    return re.sub(r"\{(" + "|".join(values) + r")\}", lambda m: values[m.group(1)], template)


def aggregation_segments(problem: str, tails: Sequence[Segment], cfg: RSAConfig) -> list[Segment]:
    """The round-t prompt's user content as text pieces around the tails (text or token ids)."""
    head, _, rest = cfg.aggregation_template.partition("{candidates}")
    before_tail, _, after_tail = cfg.candidate_template.partition("{tail}")
    segments: list[Segment] = [_fill(head, {"problem": problem, "count": str(len(tails))})]
    for index, tail in enumerate(tails, start=1):
        segments += [_fill(before_tail, {"index": str(index)}), tail, _fill(after_tail, {"index": str(index)})]
    segments.append(_fill(rest, {"problem": problem, "count": str(len(tails))}))
    return [segment for segment in segments if len(segment)]


def aggregation_prompt(problem: str, tails: Sequence[str], cfg: RSAConfig) -> str:
    """The aggregation prompt as text (SFT examples, display); RSA itself splices token ids."""
    return "".join(aggregation_segments(problem, tails, cfg))


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
    candidates: GenerateFn | None = None,
) -> list[RSATree]:
    """Run T + 1 rounds for every problem; each round is a single `generate` call over all chains.

    Chain c of problem p in round t samples from the stream seeded by (seed, p, t, c). `candidates`, when
    given, generates round 0 instead of `generate` (checkpoint aggregation)."""
    rngs = [random.Random(f"rsa:{seed}:{p}") for p in range(len(problems))]
    trees = [RSATree(problem) for problem in problems]
    for t in range(cfg.T + 1):
        params = round_params(t, cfg, sampling)
        requests, parents = [], []
        for p, tree in enumerate(trees):
            for chain in range(cfg.N):
                chosen = [] if t == 0 else choose_parents(rngs[p], chain, cfg)
                if chosen:
                    tails = [tree.rounds[-1][j].carried_ids for j in chosen]
                    prompt = encode_user_segments(tokenizer, aggregation_segments(tree.problem, tails, cfg))
                else:
                    prompt = encode_messages(tokenizer, [{"role": "user", "content": tree.problem}])
                requests.append(
                    Request(
                        id=f"p{p}.t{t}.c{chain}",
                        params=params,
                        prompt_ids=tuple(prompt),
                        group=p,
                        seed=sample_seed("rsa", seed, p, t, chain),
                    )
                )
                parents.append(chosen)
        rollouts = iter((candidates or generate)(requests) if t == 0 else generate(requests))
        chosen_parents = iter(parents)
        for tree in trees:
            previous = tree.rounds[-1] if tree.rounds else None
            layer = []
            for chain in range(cfg.N):
                rollout, chosen = next(rollouts), next(chosen_parents)
                trace = trace_ids(rollout.completion_ids, tokenizer)
                if cfg.full_chain:
                    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
                    carried = [*previous[chain].carried_ids, *newline, *trace] if previous else trace
                else:
                    carried = trace[-cfg.tau :]
                text = tokenizer.decode(carried, skip_special_tokens=True)
                layer.append(Candidate(chain, chosen, rollout, carried, text, extract_answer(rollout.text)))
            tree.rounds.append(layer)
        if on_round is not None:
            on_round(t)
    return trees


def max_prompt_tokens(problem: str, tokenizer: Any, cfg: RSAConfig) -> int:
    """Longest prompt any round can build for `problem`; exact for every tokenizer, since tails are spliced
    in as at most τ token ids each. With `full_chain` a carried history holds up to T traces of β tokens."""
    plain = len(encode_messages(tokenizer, [{"role": "user", "content": problem}]))
    if cfg.T == 0:
        return plain
    frame = len(encode_user_segments(tokenizer, aggregation_segments(problem, [[]] * cfg.C, cfg)))
    newline = len(tokenizer("\n", add_special_tokens=False)["input_ids"])
    carried = cfg.T * cfg.beta + (cfg.T - 1) * newline if cfg.full_chain else cfg.tau
    return max(plain, frame + cfg.C * carried)
